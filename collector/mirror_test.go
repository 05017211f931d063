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
	if err := m.Take(ev); err != nil {
		t.Fatal(err)
	}
	got, ok := store.Latest("host/web-1")
	if !ok || got.Metrics.Value("cpu.percent") != 42.5 || !got.Time.Equal(at) || got.Labels["role"] != "web" {
		t.Fatalf("ring has %+v (%v)", got, ok)
	}
	own := stream.NewEvent(8, stream.TypeSample, "host/me", at, []byte(`{"metrics":{"cpu.percent":1}}`))
	if err := m.Take(own); !errors.Is(err, ErrOwnSource) {
		t.Fatalf("a sample under this replica's own source name: %v, want ErrOwnSource", err)
	}
	if _, ok := store.Latest("host/me"); ok {
		t.Fatal("the other replica's sample of host/me went into the ring")
	}
	m.Follows = func(source string) bool { return source == "host/agent-1" } // this replica's own upstream sends it
	followed := stream.NewEvent(10, stream.TypeSample, "host/agent-1", at, []byte(`{"metrics":{"cpu.percent":1}}`))
	if err := m.Take(followed); !errors.Is(err, ErrFollowedSource) {
		t.Fatalf("a sample of a source this replica follows: %v, want ErrFollowedSource", err)
	}
	alert := stream.NewEvent(9, stream.TypeAlert, "host/web-1", at, []byte(`{"transition":"firing"}`))
	if err := m.Take(alert); err != nil {
		t.Fatalf("an alert event: %v, want it left alone", err)
	}
}
