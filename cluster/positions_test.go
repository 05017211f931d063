package cluster

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"vigil/collector"
	"vigil/internal/vigiltest"
)

// The positions and the upstreams' status go through the bucket; a
// status the follower has not saved again for a while is shown as not
// connected, saying why.
func TestSharedPositionsAndStatus(t *testing.T) {
	n := vigiltest.StartNATS(t)
	p := NewPositions(jetStream(t, n), 1)
	if pos, err := p.Load(); err != nil || pos != nil {
		t.Fatalf("before any save: %v, %v", pos, err)
	}
	if err := p.Save(map[string]uint64{"http://a:1": 42}); err != nil {
		t.Fatal(err)
	}
	other := NewPositions(jetStream(t, n), 1) // another replica
	if pos, err := other.Load(); err != nil || pos["http://a:1"] != 42 {
		t.Fatalf("the other replica reads %v, %v", pos, err)
	}
	if err := p.SaveStatus([]collector.UpstreamStatus{{Name: "a", Connected: true}}); err != nil {
		t.Fatal(err)
	}
	if st := other.Status(); len(st) != 1 || !st[0].Connected {
		t.Fatalf("a fresh status: %+v", st)
	}
	// As the follower saved it 10 s ago.
	kv, err := p.b.open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(sharedStatus{At: time.Now().Add(-10 * time.Second), Upstreams: []collector.UpstreamStatus{{Name: "a", Connected: true}}})
	if _, err := kv.Put(context.Background(), statusKey, old); err != nil {
		t.Fatal(err)
	}
	late := NewPositions(jetStream(t, n), 1) // no second-long cache of the fresh one
	if st := late.Status(); len(st) != 1 || st[0].Connected || !strings.Contains(st[0].Error, "has said nothing for") {
		t.Fatalf("a stale status: %+v", st)
	}
}
