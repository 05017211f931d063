package cluster

import (
	"context"
	"testing"
	"time"
)

// An agent is up while it pushed within Idle, and down after, saying
// since when.
func TestAgentSourceUpAndDown(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	a := &Agents{Idle: 10 * time.Second, Now: func() time.Time { return now }}
	a.Saw("edge-1", now.Add(-time.Hour)) // a replica reading an old event: the agent is down
	if m, err := a.Sources()[0].Collect(context.Background()); err == nil || m["upstream.up"] != 0 {
		t.Fatalf("an agent whose newest event is an hour old: %v, %v; want down", m, err)
	}
	a.Saw("edge-1", now.Add(time.Hour)) // a clock ahead counts as now
	srcs := a.Sources()
	if len(srcs) != 1 || srcs[0].Name() != "upstream/edge-1" {
		t.Fatalf("sources %v", srcs)
	}
	now = now.Add(4 * time.Second)
	m, err := srcs[0].Collect(context.Background())
	if err != nil || m["upstream.up"] != 1 || m["upstream.lag_seconds"] != 4 {
		t.Fatalf("4 s after its last event: %v, %v", m, err)
	}
	now = now.Add(7 * time.Second)
	m, err = srcs[0].Collect(context.Background())
	if err == nil || m["upstream.up"] != 0 || m["upstream.down_seconds"] != 11 {
		t.Fatalf("11 s after its last event: %v, %v; want down, with an error", m, err)
	}
	a.Saw("edge-1", now)
	if m, err := srcs[0].Collect(context.Background()); err != nil || m["upstream.up"] != 1 {
		t.Fatalf("after it pushed again: %v, %v", m, err)
	}
}
