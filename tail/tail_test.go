package tail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// lines collects what Tail writes, a line at a time.
type lines struct {
	mu   sync.Mutex
	part []byte
	c    chan string
}

func newLines() *lines { return &lines{c: make(chan string, 1000)} }

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.c <- string(l.part[:i])
		l.part = l.part[i+1:]
	}
}

func (l *lines) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.c:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no line from tail")
		return ""
	}
}

// vigil is vigil's HTTP surface — a hub and the dashboard's handler — on
// loopback, for tail to follow.
type vigil struct {
	hub *stream.Hub
	srv *httptest.Server
}

func newVigil(t *testing.T) *vigil {
	v := &vigil{hub: stream.NewHub(stream.HubOptions{FirstID: 1})}
	v.srv = httptest.NewUnstartedServer(dashboard.New(dashboard.Options{Hub: v.hub, Store: collector.NewStore(time.Minute, time.Second)}))
	v.srv.Config.RegisterOnShutdown(v.hub.Close)
	v.srv.Start()
	t.Cleanup(func() { v.hub.Close(); v.srv.Close() })
	return v
}

// publish publishes a sample of one metric, v.
func (v *vigil) publish(t *testing.T, source string, x float64) {
	t.Helper()
	if _, err := v.hub.Publish(stream.Message{Type: stream.TypeSample, Source: source, Key: "sample/" + source,
		Body: map[string]any{"metrics": map[string]float64{"v": x}}}); err != nil {
		t.Fatal(err)
	}
}

// waitSubscribers waits until the hub has n subscribers.
func waitSubscribers(t *testing.T, h *stream.Hub, n int) {
	t.Helper()
	vigiltest.Eventually(t, 10*time.Second, fmt.Sprintf("%d subscribers", n), func() bool { return h.Subscribers() == n })
}

func startTail(t *testing.T, o Options) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return done, cancel
}

// TestTailLinesAndResume: tail prints one readable line per event; when
// the connection drops it reconnects with Last-Event-ID, so the events
// published meanwhile appear once and nothing repeats.
func TestTailLinesAndResume(t *testing.T) {
	a := newVigil(t)
	out, status := newLines(), newLines()
	waits, proceed := make(chan time.Duration, 10), make(chan struct{})
	startTail(t, Options{URL: a.srv.URL, Sources: []string{"host/*"}, Out: out, Status: status,
		Wait: func(ctx context.Context, d time.Duration) error {
			waits <- d
			select {
			case <-proceed:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	waitSubscribers(t, a.hub, 1)

	a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Key: "sample/host/a",
		Body: map[string]any{"metrics": map[string]float64{"cpu.percent": 12.345, "mem.used_percent": 50, "net.rx_bytes_per_sec": 2048}}})
	a.publish(t, "service/x", 1) // filtered out
	a.hub.Publish(stream.Message{Type: stream.TypeSource, Source: "host/b", Body: collector.SourceState{State: "failed", Error: "timeout"}})
	l := out.next(t)
	if !strings.Contains(l, " sample ") || !strings.Contains(l, "host/a") ||
		!strings.Contains(l, "cpu.percent=12.3% mem.used_percent=50% net.rx_bytes_per_sec=2 KiB/s") {
		t.Errorf("sample line %q", l)
	}
	if l := out.next(t); !strings.Contains(l, "host/b") || !strings.Contains(l, "failed: timeout") {
		t.Errorf("source line %q", l)
	}

	a.srv.CloseClientConnections()
	<-waits
	waitSubscribers(t, a.hub, 0)
	for i := 3; i <= 5; i++ {
		a.publish(t, "host/c", float64(i)) // while tail is away
	}
	close(proceed)
	for i := 3; i <= 5; i++ {
		if l := out.next(t); !strings.Contains(l, "host/c") || !strings.Contains(l, "v=") {
			t.Fatalf("after reconnect: %q", l)
		}
	}
	if s := status.next(t); !strings.Contains(s, "reconnecting") {
		t.Errorf("status %q", s)
	}
	if s := status.next(t); !strings.Contains(s, "connected again, resuming after event") {
		t.Errorf("status %q", s)
	}
	a.publish(t, "host/d", 6)
	if l := out.next(t); !strings.Contains(l, "host/d") {
		t.Fatalf("a repeat or a gap: %q", l)
	}
}

// TestTailJSONAndAlerts: --json prints each event's JSON as the server
// sent it; alert and reset events get lines of their own.
func TestTailJSONAndAlerts(t *testing.T) {
	a := newVigil(t)
	raw, human := newLines(), newLines()
	startTail(t, Options{URL: a.srv.URL + "/events", JSON: true, Out: raw})
	startTail(t, Options{URL: strings.TrimPrefix(a.srv.URL, "http://"), Out: human, Color: true})
	waitSubscribers(t, a.hub, 2)
	ev, err := a.hub.Publish(stream.Message{Type: stream.TypeAlert, Source: "service/api", Key: "alert/x", Body: map[string]any{
		"transition": "firing", "rule": "HighErrors", "metric": "http.error_percent", "value": 12.5, "threshold": 5, "op": ">",
		"severity": "critical", "annotations": map[string]string{"summary": "api errors at 12.5%"}}})
	if err != nil {
		t.Fatal(err)
	}
	if l := raw.next(t); l != string(ev.JSON()) {
		t.Errorf("--json line %q, want %q", l, ev.JSON())
	}
	l := human.next(t)
	for _, want := range []string{"\x1b[", "FIRING", "critical", "HighErrors", "http.error_percent=12.5% (> 5%)", "api errors at 12.5%"} {
		if !strings.Contains(l, want) {
			t.Errorf("alert line %q lacks %q", l, want)
		}
	}

	// From an id the server has not reached: a reset, then the latest event
	// of each key, each on its own line.
	reset := newLines()
	startTail(t, Options{URL: a.srv.URL, From: "999999", Out: reset})
	if l := reset.next(t); !strings.Contains(l, "stream reset") || !strings.Contains(l, "current state follows (1 events)") {
		t.Errorf("reset line %q", l)
	}
	if l := reset.next(t); !strings.Contains(l, "HighErrors") {
		t.Errorf("snapshot line %q", l)
	}
}

// TestTailRefused: an answer that retrying cannot fix ends tail with the
// server's reason.
func TestTailRefused(t *testing.T) {
	a := newVigil(t)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>"))
	}))
	defer html.Close()
	selfSigned := httptest.NewTLSServer(a.srv.Config.Handler)
	defer selfSigned.Close()
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{URL: a.srv.URL, Types: []string{"bogus"}}, `unknown event type "bogus"`},
		{Options{URL: a.srv.URL + "/nope"}, "404"},
		{Options{URL: html.URL}, "is not an event stream"},
		{Options{URL: "ftp://x"}, "bad URL"},
		{Options{URL: selfSigned.URL}, "certificate signed by unknown authority"},
	} {
		tc.o.Out = newLines()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := Follow(ctx, tc.o)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.o.URL, err, tc.want)
		}
		if tc.want != "bad URL" && !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v is not ErrRefused", tc.o.URL, err)
		}
	}
}

// TestTailBackoff: failed connections wait longer each time, up to the
// cap, with jitter; a connection that delivered events starts over.
func TestTailBackoff(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	var waits []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	status := newLines()
	err := Follow(ctx, Options{URL: down.URL, Out: newLines(), Status: status, MaxRetry: 8 * time.Second,
		Jitter: func(n time.Duration) time.Duration { return n - 1 },
		Wait: func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			if len(waits) == 6 {
				cancel()
				return ctx.Err()
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	b, _ := json.Marshal(waits)
	if len(waits) != len(want) {
		t.Fatalf("waits %s", b)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %s, want %v", b, want)
		}
	}
	if l := status.next(t); !strings.HasSuffix(l, "answered 503 Service Unavailable; reconnecting in 1s") {
		t.Fatalf("status line %q", l)
	}
}

// TestTailShowsNamesAsTheyAre: a source name with a right-to-left override
// or a terminal escape sequence is printed with them replaced.
func TestTailShowsNamesAsTheyAre(t *testing.T) {
	v := newVigil(t)
	out := newLines()
	startTail(t, Options{URL: v.srv.URL, Out: out})
	waitSubscribers(t, v.hub, 1)
	v.publish(t, "host/web\u202egnp.exe\x1b[2J", 1)
	l := out.next(t)
	if strings.ContainsAny(l, "\u202e\x1b") || !strings.Contains(l, "host/web\ufffdgnp.exe\ufffd[2J") {
		t.Fatalf("line %q", l)
	}
}
