package collector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"vigil/stream"
)

// A hub that closes while an upstream takes a sample: the sample is not
// published, and the upstream's position stays before it, so the next
// run (or the next lease holder) takes it again rather than skip it.
func TestClosedHubLeavesThePosition(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	f := &Fleet{Store: NewStore(10*time.Minute, time.Second), Hub: hub, Scheduler: &Scheduler{}}
	f.init()
	f.ctx = context.Background()
	u := &upstream{opts: UpstreamOptions{URL: "http://a:1"}, key: "http://a:1", name: "a", suffix: bodySuffix("a", nil), names: &nameCache{}, fleet: f}
	f.ups[u.key] = &runningUpstream{u: u, cancel: func() {}, hosts: map[string]bool{}, cut: map[string]bool{}}
	sample := func(seq int) []byte {
		return fmt.Appendf(nil, `{"seq":%d,"type":"sample","ts":"2026-12-02T10:00:0%dZ","source":"host/a","metrics":{"v":1}}`, seq, seq)
	}
	if err := u.take(stream.TypeSample, sample(1)); err != nil {
		t.Fatal(err)
	}
	hub.Close()
	if err := u.take(stream.TypeSample, sample(2)); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("a sample taken after the hub closed: %v, want ErrClosed", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seq != 1 {
		t.Fatalf("position %d after the hub closed, want 1 (the sample not published is taken again)", u.seq)
	}
}

// A hub replica that takes over following an agent reads again samples
// it mirrored from the replica before it: a Shared fleet takes none at or
// before the Store's newest of the source, neither into the ring nor onto
// the stream.
func TestSharedFleetSkipsSamplesItHas(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	store := NewStore(10*time.Minute, time.Second)
	f := &Fleet{Store: store, Hub: hub, Scheduler: &Scheduler{}, Shared: true}
	f.init()
	f.ctx = context.Background()
	u := &upstream{opts: UpstreamOptions{URL: "http://a:1"}, key: "http://a:1", name: "a", suffix: bodySuffix("a", nil), names: &nameCache{}, fleet: f}
	f.ups[u.key] = &runningUpstream{u: u, cancel: func() {}, hosts: map[string]bool{}, cut: map[string]bool{}}
	at := time.Date(2026, 12, 2, 10, 0, 5, 0, time.UTC)
	store.Append(Sample{Source: "host/a", Time: at, Metrics: MetricsOf(map[string]float64{"v": 5})}) // mirrored before
	sample := func(seq, sec int) []byte {
		return fmt.Appendf(nil, `{"seq":%d,"type":"sample","ts":"2026-12-02T10:00:0%dZ","source":"host/a","metrics":{"v":%d}}`, seq, sec, sec)
	}
	for seq, sec := range []int{4, 5, 6} {
		if err := u.take(stream.TypeSample, sample(seq+1, sec)); err != nil {
			t.Fatal(err)
		}
	}
	pts, _ := store.AppendRange(nil, "host/a", "v", at.Add(-time.Minute))
	if len(pts) != 2 || pts[1].V != 6 {
		t.Fatalf("ring %v: want the mirrored 5 and the new 6 only", pts)
	}
	if got := hub.LastID(); got != 1 {
		t.Fatalf("%d events published, want only the new sample", got)
	}
}

// TestUpstreamsShareClients: upstreams with the same TLS settings share
// one client (and transport), those with their own get their own.
func TestUpstreamsShareClients(t *testing.T) {
	f := &Fleet{}
	own := &tls.Config{ServerName: "db-1.internal"}
	a := f.clientLocked(UpstreamOptions{URL: "http://web-1:8080"})
	b := f.clientLocked(UpstreamOptions{URL: "http://web-2:8080"})
	c := f.clientLocked(UpstreamOptions{URL: "https://db-1:8443", TLS: own})
	if a != b || a == c || len(f.clients) != 2 {
		t.Fatalf("clients: web-1 %p, web-2 %p, db-1 %p; %d kept, want web-1's and web-2's the same, db-1's its own", a, b, c, len(f.clients))
	}
	if got := c.Transport.(*http.Transport).TLSClientConfig; got != own {
		t.Fatalf("db-1's transport has TLS settings %v, want its own", got)
	}
}
