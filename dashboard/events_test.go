package dashboard

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	sse "github.com/tmaxmax/go-sse"

	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

type testApp struct {
	hub   *stream.Hub
	store *collector.Store
	set   *metrics.Set
	srv   *httptest.Server
}

func newTestApp(t *testing.T, hopts stream.HubOptions, opts Options) *testApp {
	t.Helper()
	a := &testApp{set: metrics.NewSet()}
	if hopts.FirstID == 0 {
		hopts.FirstID = 1
	}
	hopts.Metrics = a.set
	a.hub = stream.NewHub(hopts)
	a.store = collector.NewStore(10*time.Minute, time.Second)
	opts.Hub, opts.Store, opts.Metrics, opts.Interval = a.hub, a.store, a.set, time.Second
	if opts.Jitter == nil {
		opts.Jitter = func(time.Duration) time.Duration { return 250 * time.Millisecond }
	}
	a.srv = httptest.NewUnstartedServer(New(opts))
	a.srv.Config.Protocols = Protocols()
	a.srv.Config.RegisterOnShutdown(a.hub.Close)
	a.srv.Start()
	t.Cleanup(func() { a.hub.Close(); a.srv.Close() })
	return a
}

func (a *testApp) publish(t *testing.T, source string, v float64) *stream.Event {
	t.Helper()
	ev, err := a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: source, Key: "sample/" + source,
		Body: map[string]any{"metrics": map[string]float64{"v": v}}})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestEventsHeadersBeforeFirstEvent(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{Retry: time.Second})
	resp, err := http.Get(a.srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Nothing has been published: the headers and the retry hint must
	// still arrive at once.
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "retry: 1250\n" {
		t.Fatalf("first line %q (%v), want the jittered retry hint", line, err)
	}
}

func TestEventsJitteredRetry(t *testing.T) {
	// The real jitter spreads reconnects over [retry, 2*retry).
	seen := map[string]bool{}
	a := newTestApp(t, stream.HubOptions{}, Options{Retry: time.Second, Jitter: randomJitter})
	for range 8 {
		resp, err := http.Get(a.srv.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		ms, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "retry: ")))
		if err != nil || ms < 1000 || ms >= 2000 {
			t.Fatalf("retry line %q", line)
		}
		seen[line] = true
	}
	if len(seen) < 2 {
		t.Fatal("eight connections got the same retry hint: no jitter")
	}
}

func TestEventsLiveAndResume(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Replay: 100}, Options{})
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events", nil)
	waitSubscribers(t, a.hub, 1)
	var last string
	for i := range 5 {
		want := a.publish(t, "host/a", float64(i))
		got := next(t, ch)
		if got.Type != "sample" || got.LastEventID != strconv.FormatUint(want.ID, 10) || got.Data != string(want.JSON()) {
			t.Fatalf("got %+v, want id %d data %s", got, want.ID, want.JSON())
		}
		if i == 1 {
			last = got.LastEventID
		}
	}

	// Resume from the second event, by header and by query.
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
	}{
		{"header", "/events", http.Header{"Last-Event-Id": {last}}},
		{"query", "/events?lastEventId=" + last, nil},
		{"header wins over a stale query", "/events?lastEventId=1", http.Header{"Last-Event-Id": {last}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ch := vigiltest.SSE(t, a.srv.URL+tc.url, tc.header)
			from, _ := strconv.ParseUint(last, 10, 64)
			for want := from + 1; want <= a.hub.LastID(); want++ {
				if got := next(t, ch); got.LastEventID != strconv.FormatUint(want, 10) {
					t.Fatalf("replayed id %s, want %d", got.LastEventID, want)
				}
			}
		})
	}
}

func TestEventsResetForUnknownID(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 500}, Options{})
	a.publish(t, "host/a", 1)
	a.publish(t, "host/b", 2)
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events?source=host/b", http.Header{"Last-Event-Id": {"17"}})
	ev := next(t, ch)
	var body struct {
		Reason string
		Events []struct{ Source string }
	}
	if err := json.Unmarshal([]byte(ev.Data), &body); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "reset" || ev.LastEventID != "501" || body.Reason != stream.ResetOtherRun ||
		len(body.Events) != 1 || body.Events[0].Source != "host/b" {
		t.Fatalf("got %+v", ev)
	}
}

func TestEventsFilters(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events?source=host/*&type=sample", nil)
	waitSubscribers(t, a.hub, 1)
	a.publish(t, "service/api", 1)
	a.hub.Publish(stream.Message{Type: stream.TypeSource, Source: "host/a"})
	want := a.publish(t, "host/a", 2)
	if got := next(t, ch); got.LastEventID != strconv.FormatUint(want.ID, 10) {
		t.Fatalf("first event through the filter is %+v, want id %d", got, want.ID)
	}
}

func TestEventsBadFilterIsJSON400(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	for _, q := range []string{"type=nope", "source=", "source=" + strings.Repeat("x", 300)} {
		resp, err := http.Get(a.srv.URL + "/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.HasPrefix(body.Error, "bad filter: ") || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: status %d, error %q", q, resp.StatusCode, body.Error)
		}
	}
}

// TestSlowClientDoesNotDelayOthers connects a client that never reads and
// one that does, over real TCP. The stalled one is dropped once its queue
// overflows and its connection closed by the write deadline; the other
// receives every event in order.
func TestSlowClientDoesNotDelayOthers(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Queue: 4, Replay: 512}, Options{WriteTimeout: 300 * time.Millisecond})
	addr := strings.TrimPrefix(a.srv.URL, "http://")
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events", nil)
	waitSubscribers(t, a.hub, 2)

	big := strings.Repeat("x", 64<<10)
	const n = 300 // ~19 MiB: more than loopback socket buffers hold
	for i := range n {
		start := time.Now()
		a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"pad": big, "i": i}})
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("publish %d took %s: it waited for a reader", i, d)
		}
		var got struct{ I int }
		if err := json.Unmarshal([]byte(next(t, ch).Data), &got); err != nil || got.I != i {
			t.Fatalf("reader got event %d (%v), want %d", got.I, err, i)
		}
	}
	if d := a.set.GetOrCreateCounter(`vigil_subscribers_dropped_total{reason="slow"}`).Get(); d != 1 {
		t.Fatalf("dropped counter = %d, want 1", d)
	}
	// The stalled connection is closed by the server: reading it to the
	// end finishes instead of hanging.
	slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil {
		t.Fatalf("stalled connection not closed by the server: %v", err)
	}
}

// TestEveryStreamGivesAPositionOnOpen: a client whose filter matches
// nothing yet still learns where it stands when it connects, so that a
// reconnect resumes from there rather than from "now" (which would lose
// whatever happened while it was away).
func TestEveryStreamGivesAPositionOnOpen(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100}, Options{})
	for i := range 3 {
		a.publish(t, "host/a", float64(i)) // 100, 101, 102
	}
	// SSE: an "id:" line alone, after the stream's opening.
	resp, err := http.Get(a.srv.URL + "/events?type=alert")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() && len(lines) < 5 {
		lines = append(lines, sc.Text())
		if sc.Text() == "id: 102" {
			break
		}
	}
	resp.Body.Close()
	if lines[len(lines)-1] != "id: 102" {
		t.Fatalf("SSE opening %q: want an id: line with the newest id", lines)
	}
	// A resuming SSE client: the replay, then its position.
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events?lastEventId=100", nil)
	if ev := next(t, ch); ev.LastEventID != "101" {
		t.Fatalf("replay %+v", ev)
	}

	// NDJSON: where the stream starts, in the answer's header.
	resp, err = http.Get(a.srv.URL + "/api/v1/stream?type=alert")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Last-Event-ID"); got != "102" {
		t.Fatalf("NDJSON Last-Event-ID %q, want 102", got)
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/api/v1/stream?type=alert", nil)
	req.Header.Set("Last-Event-ID", "101")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Last-Event-ID"); got != "101" {
		t.Fatalf("resuming NDJSON Last-Event-ID %q, want its own 101", got)
	}

	// WebSocket: a position message first.
	c := dialWS(t, a.srv.URL+"/ws?type=alert", nil)
	if m := readWSAny(t, c); m.Type != "position" || m.Seq != 102 {
		t.Fatalf("first WebSocket message %+v, want the position 102", m)
	}

	// Long polling: a filtered poll that times out moves its cursor on.
	if r := poll(t, a.srv.URL+"/api/v1/poll?type=alert&after=100&timeout=0s"); r.ans.Next != "102" || len(r.ans.Events) != 0 {
		t.Fatalf("filtered poll: %+v, want next 102", r)
	}
}

// waitSubscribers waits until the hub has n subscribers.
func waitSubscribers(t *testing.T, h *stream.Hub, n int) {
	t.Helper()
	vigiltest.Eventually(t, 10*time.Second, fmt.Sprintf("%d subscribers", n), func() bool { return h.Subscribers() == n })
}

// next is the next event of a stream.
func next(t *testing.T, ch <-chan sse.Event) sse.Event {
	t.Helper()
	return vigiltest.Next(t, ch, "", 10*time.Second)
}
