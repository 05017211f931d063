package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vigil/alerts"
	"vigil/stream"
)

// wsMsg is any message from /ws: an event or a reply.
type wsMsg struct {
	Seq    uint64
	Type   string
	Source string
	Op     string
	Ref    string
	OK     bool
	Error  string
	Alert  *alerts.Alert
	Reason string
	I      int
}

func dialWS(t *testing.T, url string, h http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readWS reads the next event or reply, passing over position messages.
func readWS(t *testing.T, c *websocket.Conn) wsMsg {
	t.Helper()
	for {
		if m := readWSAny(t, c); m.Type != "position" {
			return m
		}
	}
}

func readWSAny(t *testing.T, c *websocket.Conn) wsMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v", typ)
	}
	var m wsMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func sendWS(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if s, ok := v.(string); ok {
		b = []byte(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// TestWebSocketEventsAndResume: events arrive as JSON messages with the
// stream's ids, filtered like /events, and a reconnect with lastEventId
// gets exactly what it missed.
func TestWebSocketEventsAndResume(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	c := dialWS(t, a.srv.URL+"/ws?source=host/*", nil)
	waitSubscribers(t, a.hub, 1)
	e1 := a.publish(t, "host/a", 1)
	a.publish(t, "service/x", 2)
	e3 := a.publish(t, "host/b", 3)
	for _, want := range []*stream.Event{e1, e3} {
		if m := readWS(t, c); m.Seq != want.ID || m.Source != want.Source || m.Type != "sample" {
			t.Fatalf("got %+v, want event %d from %s", m, want.ID, want.Source)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitSubscribers(t, a.hub, 0)
	e4 := a.publish(t, "host/c", 4)
	c2 := dialWS(t, a.srv.URL+"/ws?source=host/*&lastEventId="+strconv.FormatUint(e1.ID, 10), nil)
	for _, want := range []*stream.Event{e3, e4} {
		if m := readWS(t, c2); m.Seq != want.ID {
			t.Fatalf("resume got %+v, want %d", m, want.ID)
		}
	}
	// The Last-Event-ID header works too, and an id from another run
	// gets a reset.
	c3 := dialWS(t, a.srv.URL+"/ws", http.Header{"Last-Event-ID": {"999999999999"}})
	if m := readWS(t, c3); m.Type != "reset" || m.Seq != e4.ID {
		t.Fatalf("unknown id: %+v", m)
	}
}

// TestWebSocketChangeFilter: a subscribe request changes the filter over
// the same connection; the stream carries on from the last event sent, so
// events published meanwhile that match the new filter are not lost.
func TestWebSocketChangeFilter(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	c := dialWS(t, a.srv.URL+"/ws?source=host/a", nil)
	waitSubscribers(t, a.hub, 1)
	e1 := a.publish(t, "host/a", 1)
	if m := readWS(t, c); m.Seq != e1.ID {
		t.Fatalf("%+v", m)
	}
	e2 := a.publish(t, "host/b", 2) // not wanted yet
	e3 := a.publish(t, "host/a", 3)
	if m := readWS(t, c); m.Seq != e3.ID {
		t.Fatalf("%+v", m)
	}
	sendWS(t, c, map[string]any{"op": "subscribe", "ref": "r1", "source": []string{"host/b", "service/*"}})
	if m := readWS(t, c); m.Type != "reply" || m.Op != "subscribe" || m.Ref != "r1" || !m.OK {
		t.Fatalf("reply %+v", m)
	}
	e4 := a.publish(t, "host/a", 4) // no longer wanted
	e5 := a.publish(t, "service/x", 5)
	if m := readWS(t, c); m.Seq != e5.ID {
		t.Fatalf("after the change got %+v, want %d (not %d, nor %d from before the last sent)", m, e5.ID, e4.ID, e2.ID)
	}
	if n := a.hub.Subscribers(); n != 1 {
		t.Fatalf("%d subscriptions after a filter change, want 1", n)
	}

	// A bad filter is refused and the old one stays.
	sendWS(t, c, `{"op":"subscribe","type":"nope"}`)
	if m := readWS(t, c); m.OK || !strings.Contains(m.Error, "nope") {
		t.Fatalf("bad filter reply %+v", m)
	}
	e6 := a.publish(t, "service/y", 6)
	if m := readWS(t, c); m.Seq != e6.ID {
		t.Fatalf("%+v", m)
	}
}

// TestWebSocketBadRequests: every malformed request gets an error reply
// and the connection carries on; a bad filter in the URL is a 400 before
// any upgrade.
func TestWebSocketBadRequests(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	c := dialWS(t, a.srv.URL+"/ws", nil)
	for _, tc := range []struct{ req, want string }{
		{`{"op":`, "bad JSON"},
		{`{"op":"subscribe","colour":"red"}`, "unknown field"},
		{`{"op":"dance"}`, "unknown op"},
		{`{"op":"ack","fingerprint":"nope"}`, "no pending, firing or nodata alert"},
		{`{"op":"subscribe","source":7}`, "string or an array"},
	} {
		sendWS(t, c, tc.req)
		if m := readWS(t, c); m.Type != "reply" || m.OK || !strings.Contains(m.Error, tc.want) {
			t.Errorf("%s: %+v, want an error with %q", tc.req, m, tc.want)
		}
	}
	sendWS(t, c, `{"op":"ping","ref":"p"}`)
	if m := readWS(t, c); !m.OK || m.Ref != "p" {
		t.Fatalf("ping %+v", m)
	}
	// A refused request's reply still carries its op and ref, so the
	// client can tell which request it answers.
	sendWS(t, c, `{"op":"ping","ref":"5","extra":1}`)
	if m := readWS(t, c); m.OK || m.Op != "ping" || m.Ref != "5" || !strings.Contains(m.Error, `unknown field "extra"`) {
		t.Fatalf("a request with an unknown field: %+v", m)
	}

	resp, err := http.Get(a.srv.URL + "/ws?type=bogus")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad filter: %d", resp.StatusCode)
	}
	resp, err = http.Get(a.srv.URL + "/ws?lastEventId=1") // not a WebSocket request
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired && resp.StatusCode != 400 {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
}

// TestWebSocketAck: an alert is acknowledged over the connection; with
// auth.tokens set it needs a token, from the upgrade request or in the
// message.
func TestWebSocketAck(t *testing.T) {
	fa := fakeAlerts{active: []alerts.Alert{{Fingerprint: "f1", Rule: "Hot", State: alerts.StateFiring}}}
	a := newTestApp(t, stream.HubOptions{}, Options{Alerts: fa, Tokens: []string{"s3cret"}})
	c := dialWS(t, a.srv.URL+"/ws", nil)
	sendWS(t, c, `{"op":"ack","fingerprint":"f1","by":"alice"}`)
	if m := readWS(t, c); m.OK || !strings.Contains(m.Error, "token") {
		t.Fatalf("ack without a token: %+v", m)
	}
	sendWS(t, c, `{"op":"ack","fingerprint":"f1","by":"alice","token":"wrong"}`)
	if m := readWS(t, c); m.OK {
		t.Fatalf("ack with a wrong token: %+v", m)
	}
	sendWS(t, c, `{"op":"ack","fingerprint":"f1","by":"alice","token":"s3cret","ref":"a1"}`)
	if m := readWS(t, c); !m.OK || m.Ref != "a1" || m.Alert == nil || m.Alert.AckedBy != "alice" {
		t.Fatalf("ack: %+v", m)
	}
	c2 := dialWS(t, a.srv.URL+"/ws", http.Header{"Authorization": {"Bearer s3cret"}})
	sendWS(t, c2, `{"op":"ack","fingerprint":"f1","by":"bob"}`)
	if m := readWS(t, c2); !m.OK || m.Alert.AckedBy != "bob" {
		t.Fatalf("ack with the header: %+v", m)
	}
	// A page on another origin cannot open the socket (and so cannot ack
	// with the browser's credentials).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, strings.Replace(a.srv.URL, "http", "ws", 1)+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin upgrade: %v %v", err, resp)
	}
}

// TestWebSocketPing: an idle stream is kept alive with pings (the hub's
// heartbeat), which the client's reader answers.
func TestWebSocketPing(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Heartbeat: 20 * time.Millisecond}, Options{})
	pinged := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(a.srv.URL, "http", "ws", 1)+"/ws", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pinged <- struct{}{}:
			default:
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	go a.hub.Run(ctx)
	go func() { // reading is what answers pings
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	select {
	case <-pinged:
	case <-ctx.Done():
		t.Fatal("no ping on an idle stream")
	}
}

// TestWebSocketSlowClientIsolated: a client that stops reading is dropped
// once its queue overflows and its connection closed, while another
// client gets every event in order and publishing never waits.
func TestWebSocketSlowClientIsolated(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Queue: 4, Replay: 512}, Options{WriteTimeout: 300 * time.Millisecond})
	slow := dialWS(t, a.srv.URL+"/ws", nil) // never read until the end
	fast := dialWS(t, a.srv.URL+"/ws", nil)
	waitSubscribers(t, a.hub, 2)

	big := strings.Repeat("x", 64<<10)
	const n = 300 // ~19 MiB: more than loopback socket buffers hold
	for i := range n {
		a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"pad": big, "i": i}})
		if m := readWS(t, fast); m.I != i {
			t.Fatalf("reader got event %d, want %d", m.I, i)
		}
	}
	if d := a.set.GetOrCreateCounter(`vigil_subscribers_dropped_total{reason="slow"}`).Get(); d != 1 {
		t.Fatalf("dropped counter = %d, want 1", d)
	}
	// The server closed the stalled connection: reading what was buffered
	// ends in an error rather than waiting for more.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slow.SetReadLimit(1 << 20)
	for {
		if _, _, err := slow.Read(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("stalled connection not closed by the server")
			}
			break
		}
	}
	if g := a.set.GetOrCreateGauge(`vigil_stream_clients{transport="ws"}`, nil).Get(); g != 1 {
		t.Errorf("ws clients gauge = %v, want 1", g)
	}
}

// TestWebSocketNoPongCloses: a client that does not answer a ping within
// the write timeout is disconnected.
func TestWebSocketNoPongCloses(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Heartbeat: 20 * time.Millisecond}, Options{WriteTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.hub.Run(ctx)
	dialWS(t, a.srv.URL+"/ws", nil) // never reads, so never answers
	waitSubscribers(t, a.hub, 1)
	waitSubscribers(t, a.hub, 0)
}

// TestWSRequestNothingAfterObject: a request is one JSON object and
// nothing else (a stray "]" used to pass).
func TestWSRequestNothingAfterObject(t *testing.T) {
	for _, msg := range []string{`{"op":"ping"}]`, `{"op":"ping"}}`, `{"op":"ping"} x`, `{"op":"ping"}{"op":"ping"}`, `{"op":"ping"},`} {
		if req := parseWSRequest(websocket.MessageText, []byte(msg)); req.err == nil {
			t.Errorf("%s accepted", msg)
		}
	}
	if req := parseWSRequest(websocket.MessageText, []byte(" {\"op\":\"ping\"} \n")); req.err != nil || req.Op != "ping" {
		t.Fatalf("whitespace around the object: %+v", req)
	}
}

// FuzzWSRequest: any message parses to a request or to an error to answer
// with, never a panic; what parses has an op and survives a round trip.
func FuzzWSRequest(f *testing.F) {
	for _, s := range []string{`{"op":"subscribe","source":["host/*"],"type":"sample,alert"}`, `{"op":"ack","fingerprint":"f1","by":"a"}`,
		`{"op":"ping","ref":"1"}`, `{"op":`, `{"op":"x"} {}`, `[]`, `{"source":7}`, `{"op":"ping"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := parseWSRequest(websocket.MessageText, data)
		if req.err != nil {
			// A refused request carries its op and ref, for the reply
			// to name, and nothing that could be acted on.
			if req.Fingerprint != "" || req.Source != nil || req.Type != nil || req.By != "" || req.Token != "" {
				t.Fatalf("an error with fields set: %+v", req)
			}
			return
		}
		if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || trimmed[len(trimmed)-1] != '}' {
			t.Fatalf("%q accepted: something after the object", data)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again := parseWSRequest(websocket.MessageText, b)
		if again.err != nil || again.Op != req.Op || again.Fingerprint != req.Fingerprint || len(again.Source) != len(req.Source) {
			t.Fatalf("round trip %s: %+v vs %+v", b, again, req)
		}
	})
}

// TestWebSocketRequestsDoNotMoveTheClientBack: a request (a ping, an ack,
// a filter change) never sends the client back to an earlier position, and
// no event comes twice (the stream once repeated itself after every
// request).
func TestWebSocketRequestsDoNotMoveTheClientBack(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 1}, Options{})
	c := dialWS(t, a.srv.URL+"/ws?type=sample", nil)
	last := uint64(0)
	seen := map[uint64]bool{}
	expect := func(want uint64) {
		t.Helper()
		for {
			m := readWSAny(t, c)
			switch m.Type {
			case "reply":
				continue
			case "position":
				if m.Seq < last {
					t.Fatalf("position %d after %d: the client was sent back", m.Seq, last)
				}
				last = m.Seq
				continue
			}
			if seen[m.Seq] || m.Seq < last {
				t.Fatalf("event %d again (last %d)", m.Seq, last)
			}
			seen[m.Seq], last = true, m.Seq
			if m.Seq == want {
				return
			}
		}
	}
	for i := range 3 {
		expect(a.publish(t, "host/a", float64(i)).ID)
	}
	sendWS(t, c, map[string]any{"op": "ping", "ref": "1"})
	expect(a.publish(t, "host/a", 3).ID)
	sendWS(t, c, map[string]any{"op": "subscribe", "ref": "2", "type": "sample"})
	expect(a.publish(t, "host/a", 4).ID)
	sendWS(t, c, map[string]any{"op": "ping", "ref": "3"})
	expect(a.publish(t, "host/a", 5).ID)
}
