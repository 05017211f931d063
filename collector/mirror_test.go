package collector

import (
	"errors"
	"testing"
	"time"

	"vigil/stream"
)

// Another replica's samples go into the ring, with their labels; a sample
// of a source this replica samples itself is refused, not interleaved
// with its own.
func TestMirrorTakesOthersSamples(t *testing.T) {
	store := NewStore(time.Minute, time.Second)
	m := &Mirror{Store: store, Own: map[string]bool{"host/me": true}}
	at := time.Now().Truncate(time.Second)
	ev := stream.NewEvent(7, stream.TypeSample, "host/web-1", at, []byte(`{"metrics":{"cpu.percent":42.5},"labels":{"role":"web"}}`))
	if err := m.Take(ev, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, ok := store.Latest("host/web-1")
	if !ok || got.Metrics.Value("cpu.percent") != 42.5 || !got.Time.Equal(at) || got.Labels["role"] != "web" {
		t.Fatalf("ring has %+v (%v)", got, ok)
	}
	own := stream.NewEvent(8, stream.TypeSample, "host/me", at, []byte(`{"metrics":{"cpu.percent":1}}`))
	if err := m.Take(own, time.Time{}); !errors.Is(err, ErrOwnSource) {
		t.Fatalf("a sample under this replica's own source name: %v, want ErrOwnSource", err)
	}
	if _, ok := store.Latest("host/me"); ok {
		t.Fatal("the other replica's sample of host/me went into the ring")
	}
	m.Follows = func(source string) bool { return source == "host/agent-1" } // this replica's own upstream sends it
	followed := stream.NewEvent(10, stream.TypeSample, "host/agent-1", at, []byte(`{"metrics":{"cpu.percent":1}}`))
	if err := m.Take(followed, time.Time{}); !errors.Is(err, ErrFollowedSource) {
		t.Fatalf("a sample of a source this replica follows: %v, want ErrFollowedSource", err)
	}
	alert := stream.NewEvent(9, stream.TypeAlert, "host/web-1", at, []byte(`{"transition":"firing"}`))
	if err := m.Take(alert, time.Time{}); err != nil {
		t.Fatalf("an alert event: %v, want it left alone", err)
	}
}

// TestMirrorTakesWhenTheStreamStoredIt: a sample another replica
// published a minute and a half before this one read it (a backlog read
// after a restart or a lost connection) is as old as that in Arrival, so
// that this replica's rules, should it take the alert lease, know how long
// its source has been silent. A stored time ahead of this replica's clock
// (another machine's) is now.
func TestMirrorTakesWhenTheStreamStoredIt(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	store := NewStore(10*time.Minute, time.Second).WithClock(func() time.Time { return now })
	m := &Mirror{Store: store}
	sample := func(id uint64, source string) *stream.Event {
		return stream.NewEvent(id, stream.TypeSample, source, now.Add(-90*time.Second), []byte(`{"metrics":{"cpu.percent":1}}`))
	}
	if err := m.Take(sample(1, "host/quiet"), now.Add(-90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if age, live := store.Arrival("host/quiet"); !live || age != 90*time.Second {
		t.Errorf("a sample stored 90 s ago: Arrival %s, live %v; want 1m30s, live", age, live)
	}
	if err := m.Take(sample(2, "host/ahead"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if age, live := store.Arrival("host/ahead"); !live || age != 0 {
		t.Errorf("a stored time ahead of now: Arrival %s, live %v; want 0, live", age, live)
	}
}
