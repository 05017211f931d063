package collector_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// runFleet runs a fleet following the upstreams until the test ends.
func runFleet(t *testing.T, f *collector.Fleet) {
	t.Helper()
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	store := collector.NewStore(time.Minute, time.Second)
	f.Store, f.Hub = store, hub
	f.Scheduler = &collector.Scheduler{Store: store, Hub: hub, Interval: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { f.Scheduler.Run(ctx); done <- struct{}{} }()
	go func() { f.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; hub.Close() })
}

// TestUpstreamSilentStreamIsDead: an agent whose stream goes silent —
// not even a heartbeat, as when its host vanishes without closing the
// connection — is taken for unreachable after the idle timeout, and
// said so.
func TestUpstreamSilentStreamIsDead(t *testing.T) {
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 5\n\n"))
		w.(http.Flusher).Flush()
		select { // a host gone: nothing more, and no end
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(release)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: silent.URL, Name: "gone"}}, IdleTimeout: 300 * time.Millisecond}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the silent agent taken for unreachable", func() bool {
		st := f.Status()
		return len(st) == 1 && !st[0].Connected && strings.Contains(st[0].Error, "nothing from the agent for 300ms")
	})
}

// TestFleetConnectsAFewAtATime: after a hub starts, its agents are
// connected to a few at a time (MaxDials), not all in the same instant.
func TestFleetConnectsAFewAtATime(t *testing.T) {
	var mu sync.Mutex
	opening, most, served := 0, 0, 0
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		opening++
		most = max(most, opening)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // answering takes a while
		mu.Lock()
		opening--
		served++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 1\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close) // after the fleet's, which ends the streams
	var ups []collector.UpstreamOptions
	for i := range 12 {
		ups = append(ups, collector.UpstreamOptions{URL: fmt.Sprintf("%s/agents/%d", agent.URL, i)})
	}
	f := &collector.Fleet{Upstreams: ups, MaxDials: 3}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "all twelve connected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return served == 12
	})
	mu.Lock()
	defer mu.Unlock()
	if most > 3 {
		t.Fatalf("%d connections opening at once, more than MaxDials 3", most)
	}
}
