package dashboard

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	sse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"vigil/alerts"
	"vigil/internal/vigiltest"
	vigilv1 "vigil/proto/vigil/v1"
	"vigil/proto/vigil/v1/vigilv1connect"
	"vigil/stream"
)

// A watched event as a test compares them across transports: its id,
// type, source and JSON object.
type watched struct {
	ID     uint64
	Type   string
	Source string
	Data   map[string]any
}

func watchedOf(t *testing.T, ev *vigilv1.Event) watched {
	t.Helper()
	b, err := protojson.Marshal(ev.Data)
	if err != nil {
		t.Fatal(err)
	}
	w := watched{ID: ev.Id, Type: ev.Type, Source: ev.Source}
	if err := json.Unmarshal(b, &w.Data); err != nil {
		t.Fatal(err)
	}
	return w
}

// grpcConn is a client of google.golang.org/grpc, over HTTP/2 without TLS.
func grpcConn(t *testing.T, url string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// grpcWatch opens Watch with grpc-go's own stream API: no code generated
// for it, the messages are vigil's.
func grpcWatch(ctx context.Context, t *testing.T, cc *grpc.ClientConn, req *vigilv1.WatchRequest) grpc.ClientStream {
	t.Helper()
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}, vigilv1connect.EventServiceWatchProcedure)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(req); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return cs
}

// grpcWebFrames posts one gRPC-Web request as a browser's client does and
// returns the messages of its answer, then its trailers, read until want
// events arrived or the answer ended.
func grpcWebWatch(t *testing.T, ctx context.Context, url string, req *vigilv1.WatchRequest, want int, header http.Header) ([]*vigilv1.WatchResponse, http.Header) {
	t.Helper()
	msg, _ := proto.Marshal(req)
	body := append([]byte{0, 0, 0, 0, 0}, msg...)
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	hreq, _ := http.NewRequestWithContext(ctx, "POST", url+vigilv1connect.EventServiceWatchProcedure, bytes.NewReader(body))
	for k, v := range header {
		hreq.Header[k] = v
	}
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("gRPC-Web: HTTP %d", resp.StatusCode)
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" { // a trailers-only answer
		return nil, resp.Header
	}
	var out []*vigilv1.WatchResponse
	n := 0
	for n < want {
		var head [5]byte
		if _, err := io.ReadFull(resp.Body, head[:]); err != nil {
			t.Fatalf("gRPC-Web frame: %v", err)
		}
		data := make([]byte, binary.BigEndian.Uint32(head[1:]))
		if _, err := io.ReadFull(resp.Body, data); err != nil {
			t.Fatalf("gRPC-Web frame: %v", err)
		}
		if head[0]&0x80 != 0 { // the trailers, as HTTP/1 header lines
			tr := http.Header{}
			for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				tr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			return out, tr
		}
		var res vigilv1.WatchResponse
		if err := proto.Unmarshal(data, &res); err != nil {
			t.Fatal(err)
		}
		out = append(out, &res)
		n += len(res.Events)
	}
	return out, nil
}

// TestWatchSameAsSSE: a Connect client, a gRPC client and a gRPC-Web
// request watch the stream from the same position with the same filter
// and see what an SSE client sees: the same ids, types, sources and
// JSON, the replay and then the live events.
func TestWatchSameAsSSE(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100}, Options{})
	for i := range 4 {
		a.publish(t, "host/a", float64(i)) // 100..103
		a.publish(t, "svc/b", float64(i))  // not watched
	}
	after := uint64(102)
	req := &vigilv1.WatchRequest{Sources: []string{"host/*"}, Types: []string{"sample"}, AfterId: after}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, sseCh := vigiltest.SSE(t, a.srv.URL+"/events?source=host/*&type=sample&lastEventId="+strconv.FormatUint(after, 10), nil)

	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	cs, err := client.Watch(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), req)
	waitSubscribers(t, a.hub, 3)

	// Live events after the replay.
	for i := range 3 {
		a.publish(t, "svc/b", float64(i))
		a.publish(t, "host/c", float64(10+i))
	}
	const want = 5 // the replay of 104 and 106, and 3 live ones

	var fromSSE []watched
	for len(fromSSE) < want {
		ev := next(t, sseCh)
		if ev.Type == "" {
			continue // a position
		}
		var w watched
		w.ID, _ = strconv.ParseUint(ev.LastEventID, 10, 64)
		w.Type = ev.Type
		if err := json.Unmarshal([]byte(ev.Data), &w.Data); err != nil {
			t.Fatal(err)
		}
		w.Source, _ = w.Data["source"].(string)
		fromSSE = append(fromSSE, w)
	}

	var fromConnect []watched
	for len(fromConnect) < want && cs.Receive() {
		for _, ev := range cs.Msg().Events {
			fromConnect = append(fromConnect, watchedOf(t, ev))
		}
	}
	if cs.Err() != nil {
		t.Fatalf("connect: %v", cs.Err())
	}
	var fromGRPC []watched
	for len(fromGRPC) < want {
		var res vigilv1.WatchResponse
		if err := gs.RecvMsg(&res); err != nil {
			t.Fatalf("grpc: %v", err)
		}
		for _, ev := range res.Events {
			fromGRPC = append(fromGRPC, watchedOf(t, ev))
		}
	}
	// gRPC-Web, from the same position, now that all of it is in the
	// window.
	webRes, _ := grpcWebWatch(t, ctx, a.srv.URL, req, want, nil)
	var fromWeb []watched
	for _, res := range webRes {
		for _, ev := range res.Events {
			fromWeb = append(fromWeb, watchedOf(t, ev))
		}
	}

	for name, got := range map[string][]watched{"connect": fromConnect, "grpc": fromGRPC, "grpc-web": fromWeb} {
		if !reflect.DeepEqual(got, fromSSE) {
			t.Errorf("%s saw\n%+v\nSSE saw\n%+v", name, got, fromSSE)
		}
	}
	if fromSSE[0].ID != 104 || fromSSE[1].ID != 106 || fromSSE[2].Source != "host/c" {
		t.Fatalf("SSE saw %+v: want the replay of 104 and 106, then host/c", fromSSE)
	}
	for _, via := range []transportName{viaConnect, viaGRPC} { // gRPC-Web's has ended
		if n := vigiltest.Counter(a.set, `vigil_stream_clients{transport="`+string(via)+`"}`); n != 1 {
			t.Errorf("vigil_stream_clients{transport=%q} = %v, want 1", via, n)
		}
	}
}

// TestWatchPositions: every Watch starts with where the client stands,
// and an idle stream's heartbeats move it on, so a client whose filter
// matches nothing for a while resumes from there.
func TestWatchPositions(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Heartbeat: 50 * time.Millisecond}, Options{})
	for i := range 3 {
		a.publish(t, "host/a", float64(i)) // 100..102
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go a.hub.Run(ctx)
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	cs, err := client.Watch(ctx, connect.NewRequest(&vigilv1.WatchRequest{Types: []string{"alert"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if !cs.Receive() {
		t.Fatal(cs.Err())
	}
	if m := cs.Msg(); m.Position != 102 || len(m.Events) != 0 {
		t.Fatalf("first response %v: want position 102 and no events", m)
	}
	a.publish(t, "host/a", 3) // 103, not an alert
	for cs.Receive() {
		if m := cs.Msg(); len(m.Events) > 0 || m.Position > 103 {
			t.Fatalf("response %v: want only positions up to 103", m)
		} else if m.Position == 103 {
			return // a heartbeat told it
		}
	}
	t.Fatal(cs.Err())
}

// TestWatchReset: a client whose position vigil no longer holds gets one
// reset event, not a silent gap, on every protocol.
func TestWatchReset(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Replay: 4}, Options{})
	for i := range 10 {
		a.publish(t, "host/a", float64(i)) // 100..109; the window keeps 106..109
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &vigilv1.WatchRequest{AfterId: 101}
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	cs, err := client.Watch(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if !cs.Receive() {
		t.Fatal(cs.Err())
	}
	first := cs.Msg().Events[0]
	if first.Type != stream.TypeReset {
		t.Fatalf("first event %v, want a reset", first)
	}
	if reason := first.Data.Fields["reason"].GetStringValue(); reason == "" {
		t.Fatalf("reset %v carries no reason", first.Data)
	}
	var res vigilv1.WatchResponse
	if err := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), req).RecvMsg(&res); err != nil || res.Events[0].Type != stream.TypeReset {
		t.Fatalf("grpc: %v %v, want a reset", &res, err)
	}
}

// TestWatchRefusals: a bad filter, a missing or wrong token, each with
// the status a gRPC client acts on and a message that says what to do.
func TestWatchRefusals(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{ReadTokens: []string{"reader"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	watch := func(token string, req *vigilv1.WatchRequest) error {
		r := connect.NewRequest(req)
		if token != "" {
			r.Header().Set("Authorization", "Bearer "+token)
		}
		cs, err := client.Watch(ctx, r)
		if err != nil {
			return err
		}
		defer cs.Close()
		if cs.Receive() {
			return nil
		}
		return cs.Err()
	}
	for _, c := range []struct {
		token string
		req   *vigilv1.WatchRequest
		code  connect.Code
		msg   string
	}{
		{"", &vigilv1.WatchRequest{}, connect.CodeUnauthenticated, "auth.read_tokens"},
		{"nope", &vigilv1.WatchRequest{}, connect.CodeUnauthenticated, "not one of"},
		{"reader", &vigilv1.WatchRequest{Types: []string{"samples"}}, connect.CodeInvalidArgument, `unknown event type "samples"`},
		{"reader", &vigilv1.WatchRequest{Sources: []string{""}}, connect.CodeInvalidArgument, "empty source pattern"},
		{"reader", &vigilv1.WatchRequest{}, 0, ""},
	} {
		err := watch(c.token, c.req)
		if c.code == 0 {
			if err != nil {
				t.Errorf("token %q: %v", c.token, err)
			}
			continue
		}
		if connect.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("token %q, %v: %v, want %v saying %q", c.token, c.req, err, c.code, c.msg)
		}
	}
	// grpc-go sees the same: the token as metadata.
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{})
	if err := gs.RecvMsg(new(vigilv1.WatchResponse)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("grpc without a token: %v", err)
	}
	md := metadata.Pairs("authorization", "Bearer reader")
	gs = grpcWatch(metadata.NewOutgoingContext(ctx, md), t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{})
	if err := gs.RecvMsg(new(vigilv1.WatchResponse)); err != nil {
		t.Fatalf("grpc with a token: %v", err)
	}
	// The unary calls too, POSTed or, as Connect allows for them, GET.
	if _, err := client.Snapshot(ctx, connect.NewRequest(&vigilv1.SnapshotRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("Snapshot without a token: %v", err)
	}
	if _, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("ListAlerts without a token: %v", err)
	}
	for _, path := range []string{"Snapshot", "ListAlerts"} {
		resp, err := http.Get(a.srv.URL + "/vigil.v1.EventService/" + path + "?encoding=json&message=%7B%7D")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthenticated"`) {
			t.Fatalf("GET %s without a token: %d %s", path, resp.StatusCode, body)
		}
	}
	// gRPC-Web's refusal is in its trailers.
	_, tr := grpcWebWatch(t, ctx, a.srv.URL, &vigilv1.WatchRequest{}, 1, nil)
	if tr.Get("Grpc-Status") != strconv.Itoa(int(codes.Unauthenticated)) {
		t.Fatalf("gRPC-Web without a token: trailers %v", tr)
	}
}

// TestWatchSlowClientDropped: a gRPC client that stops reading is dropped
// like a slow SSE client, and the others go on.
func TestWatchSlowClientDropped(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{Queue: 4, Replay: 512}, Options{WriteTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{})
	if err := slow.RecvMsg(new(vigilv1.WatchResponse)); err != nil { // its position; then it reads no more
		t.Fatal(err)
	}
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	fast, err := client.Watch(ctx, connect.NewRequest(&vigilv1.WatchRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	waitSubscribers(t, a.hub, 2)
	big := strings.Repeat("x", 64<<10)
	// Until the slow client is dropped: more than HTTP/2's windows and
	// the socket buffers hold (grpc-go's client grows its window as it
	// takes frames in, to 16 MiB and more, so a fixed count was not
	// always enough on a loaded machine), and at most 1,200 (75 MiB).
	dropped := func() uint64 { return a.set.GetOrCreateCounter(`vigil_subscribers_dropped_total{reason="slow"}`).Get() }
	var got []int
	for i := 0; i < 1200 && (i < 300 || dropped() == 0); i++ {
		a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"pad": big, "i": i}})
		for len(got) <= i {
			if !fast.Receive() {
				t.Fatalf("fast client: %v", fast.Err())
			}
			for _, ev := range fast.Msg().Events {
				got = append(got, int(ev.Data.Fields["i"].GetNumberValue()))
			}
		}
		if got[i] != i {
			t.Fatalf("fast client got %d, want %d", got[i], i)
		}
	}
	if d := dropped(); d != 1 {
		t.Fatalf("dropped counter = %d, want 1", d)
	}
	// Its stream ends on the server while it still reads nothing: the
	// write it was stuck in has a deadline.
	vigiltest.Eventually(t, 10*time.Second, "the slow stream ended on the server", func() bool {
		return vigiltest.Counter(a.set, `vigil_stream_clients{transport="grpc"}`) == 0
	})
	// The slow client, reading at last, finds its stream ended with the
	// status that says to resume.
	var err2 error
	for err2 == nil {
		err2 = slow.RecvMsg(new(vigilv1.WatchResponse))
	}
	// Stuck in a write when it was dropped, its stream was reset; one
	// dropped between writes is told why.
	if c := status.Code(err2); c != codes.Internal && c != codes.ResourceExhausted {
		t.Fatalf("slow client ended with %v", err2)
	}
}

// TestWatchOutlivesTheBodyDeadline: a Watch has a request body, which
// the edge gives BodyTimeout to arrive; the stream must go on long after,
// over HTTP/1.1 (Connect) and HTTP/2 (gRPC).
func TestWatchOutlivesTheBodyDeadline(t *testing.T) {
	const bodyTimeout = 100 * time.Millisecond
	a := newTestApp(t, stream.HubOptions{}, Options{BodyTimeout: bodyTimeout})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	cs, err := client.Watch(ctx, connect.NewRequest(&vigilv1.WatchRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if !cs.Receive() {
		t.Fatal(cs.Err())
	}
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{})
	if err := gs.RecvMsg(new(vigilv1.WatchResponse)); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	vigiltest.Eventually(t, 5*time.Second, "the body deadline to pass", func() bool { return time.Since(opened) > 5*bodyTimeout })
	ev := a.publish(t, "host/a", 1)
	var res vigilv1.WatchResponse
	for len(res.Events) == 0 {
		if err := gs.RecvMsg(&res); err != nil {
			t.Fatalf("the gRPC stream ended: %v", err)
		}
	}
	if res.Events[0].Id != ev.ID {
		t.Fatalf("gRPC got %v, want event %d", res.Events[0], ev.ID)
	}
	for cs.Receive() {
		if evs := cs.Msg().Events; len(evs) > 0 {
			if evs[0].Id != ev.ID {
				t.Fatalf("Connect got %v, want event %d", evs[0], ev.ID)
			}
			return
		}
	}
	t.Fatalf("the Connect stream ended: %v", cs.Err())
}

// TestWatchEndsWhenVigilStops: a stopping vigil ends every Watch with
// UNAVAILABLE, which gRPC clients retry.
func TestWatchEndsWhenVigilStops(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{})
	if err := gs.RecvMsg(new(vigilv1.WatchResponse)); err != nil {
		t.Fatal(err)
	}
	a.hub.Close()
	var err error
	for err == nil {
		err = gs.RecvMsg(new(vigilv1.WatchResponse))
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "after_id") {
		t.Fatalf("stream ended with %v, want UNAVAILABLE saying to resume", err)
	}
}

func TestSnapshotAndListAlerts(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	fa := fakeAlerts{active: []alerts.Alert{
		{Fingerprint: "f1", Rule: "HighCPU", Source: "host/a", Metric: "cpu", State: alerts.StateFiring, Value: 97, Threshold: 90, Op: ">",
			Severity: "critical", Labels: map[string]string{"team": "ops"}, StartedAt: now, UpdatedAt: now},
		{Fingerprint: "f2", Rule: "HighCPU", Source: "host/b", Metric: "cpu", State: alerts.StatePending, UpdatedAt: now},
	}}
	a := newTestApp(t, stream.HubOptions{FirstID: 100}, Options{Alerts: fa})
	a.publish(t, "host/a", 1)
	a.publish(t, "host/b", 2)
	last := a.publish(t, "host/a", 3)
	ctx := context.Background()
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL, connect.WithGRPC())

	snap, err := client.Snapshot(ctx, connect.NewRequest(&vigilv1.SnapshotRequest{Sources: []string{"host/a"}}))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Msg.Position != last.ID || len(snap.Msg.Events) != 1 || snap.Msg.Events[0].Id != last.ID {
		t.Fatalf("snapshot %v: want host/a's newest, %d, at position %d", snap.Msg, last.ID, last.ID)
	}
	var fromAPI struct {
		Events []map[string]any
	}
	resp, err := http.Get(a.srv.URL + "/api/v1/snapshot?source=host/a")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&fromAPI)
	resp.Body.Close()
	if got := watchedOf(t, snap.Msg.Events[0]).Data; !reflect.DeepEqual(got, fromAPI.Events[0]) {
		t.Fatalf("snapshot's data %v, the API's %v", got, fromAPI.Events[0])
	}
	if _, err := client.Snapshot(ctx, connect.NewRequest(&vigilv1.SnapshotRequest{Types: []string{"nope"}})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad type: %v", err)
	}

	all, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Msg.Alerts) != 2 {
		t.Fatalf("alerts %v", all.Msg.Alerts)
	}
	firing, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{States: []string{"firing"}, Sources: []string{"host/*"}}))
	if err != nil {
		t.Fatal(err)
	}
	want := &vigilv1.Alert{Fingerprint: "f1", Rule: "HighCPU", Source: "host/a", Metric: "cpu", State: "firing", Value: 97, Threshold: 90, Op: ">",
		Severity: "critical", Labels: map[string]string{"team": "ops"}, StartedAt: rpcTime(now), UpdatedAt: rpcTime(now)}
	if len(firing.Msg.Alerts) != 1 || !proto.Equal(firing.Msg.Alerts[0], want) {
		t.Fatalf("firing alerts %v, want %v", firing.Msg.Alerts, want)
	}
	if _, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{Sources: []string{strings.Repeat("h", 1000)}})); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a long pattern: %v, want the filters' own refusal", err)
	}
	if _, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{States: []string{"resolved"}})); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), "pending, firing, nodata") {
		t.Fatalf("bad state: %v", err)
	}
}

// TestHealthAndReflection: grpcurl and load balancers need no .proto
// file: the health service answers as /readyz does, and reflection
// lists vigil's services, both open to all like /healthz. Both with
// grpc-go's own clients, which grpcurl is built on.
func TestHealthAndReflection(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{ReadTokens: []string{"reader"}})
	web := a.srv.Config.Handler.(*Server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc := grpcConn(t, a.srv.URL)
	health := healthpb.NewHealthClient(cc)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health of %q: %v", service, err)
		}
		return res.Status
	}
	if s := check(""); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("starting: %v, want NOT_SERVING", s)
	}
	web.SetReady(true)
	if s := check(vigilv1connect.EventServiceName); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("ready: %v, want SERVING", s)
	}
	web.Shutdown()
	if s := check(""); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("stopping: %v, want NOT_SERVING", s)
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope.v1.Nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("an unknown service: %v, want NOT_FOUND", err)
	}

	list := func(ctx context.Context) ([]string, error) {
		rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return nil, err
		}
		res, err := rs.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range res.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		return names, nil
	}
	// Without a token, as the health check by grpcurl needs it.
	names, err := list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, vigilv1connect.EventServiceName) || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", names)
	}
}

// TestRPCCodec: a WatchResponse written from its events' kept encodings
// is the message proto.Marshal would write, whether its events are kept
// or not, with and without a position.
func TestRPCCodec(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1 << 40})
	defer hub.Close()
	cache := newRPCEvents(2)
	var evs []*vigilv1.Event
	for i := range 4 {
		ev, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/" + strconv.Itoa(i),
			Body: map[string]any{"metrics": map[string]float64{"cpu.percent": float64(i) + 0.5, "load.1": 2}, "note": strings.Repeat("é", i*100)}})
		if err != nil {
			t.Fatal(err)
		}
		msg, n := cache.get(ev) // the first two are evicted by the last two
		if n != proto.Size(msg) {
			t.Fatalf("size %d, want %d", n, proto.Size(msg))
		}
		evs = append(evs, msg)
	}
	codec := rpcCodec{cache}
	for _, res := range []*vigilv1.WatchResponse{
		{},
		{Position: 1<<53 - 1},
		{Events: evs[3:], Position: evs[3].Id},
		{Events: evs, Position: evs[3].Id},
		{Events: evs[:1]},
	} {
		b, err := codec.MarshalAppend([]byte("head"), res) // as connect does, into its buffer
		if err != nil {
			t.Fatal(err)
		}
		b, ok := bytes.CutPrefix(b, []byte("head"))
		if !ok {
			t.Fatal("MarshalAppend lost what was in its buffer")
		}
		whole, err := codec.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{b, whole} {
			var got vigilv1.WatchResponse
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, res) {
				t.Fatalf("decoded %v, want %v", &got, res)
			}
		}
	}
	// Any other message is encoded as usual.
	b, err := codec.Marshal(&vigilv1.WatchRequest{AfterId: 7, Types: []string{"alert"}})
	if err != nil {
		t.Fatal(err)
	}
	var req vigilv1.WatchRequest
	if err := codec.Unmarshal(b, &req); err != nil || req.AfterId != 7 || req.Types[0] != "alert" {
		t.Fatalf("request %v, %v", &req, err)
	}
}

// TestRPCRequestsAreBounded: a request message is small; a large one is
// refused before it is read into memory, as the HTTP API's bodies are.
func TestRPCRequestsAreBounded(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	huge := &vigilv1.ListAlertsRequest{Sources: []string{strings.Repeat("x", 2<<20)}}
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL, connect.WithGRPC())
	if _, err := client.ListAlerts(ctx, connect.NewRequest(huge)); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a 2 MiB request: %v, want RESOURCE_EXHAUSTED", err)
	}
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{Sources: huge.Sources})
	if err := gs.RecvMsg(new(vigilv1.WatchResponse)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 2 MiB Watch request: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := client.ListAlerts(ctx, connect.NewRequest(&vigilv1.ListAlertsRequest{Sources: []string{"host/*"}})); err != nil {
		t.Fatal(err)
	}
}

// TestIdleStreamsOutliveTheWriteTimeout: over HTTP/2 a write deadline
// left set resets the stream when it passes, written to or not; an idle
// stream (a filter that matches nothing) lives on heartbeats, many write
// timeouts long, on gRPC and on SSE.
func TestIdleStreamsOutliveTheWriteTimeout(t *testing.T) {
	const beat = 50 * time.Millisecond
	a := newTestApp(t, stream.HubOptions{Heartbeat: beat}, Options{WriteTimeout: beat})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go a.hub.Run(ctx)
	const beats = 30 // the stream outlives 30 write timeouts
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{Sources: []string{"nothing"}})
	for i := range beats {
		if err := gs.RecvMsg(new(vigilv1.WatchResponse)); err != nil {
			t.Fatalf("gRPC, heartbeat %d: %v", i, err)
		}
	}
	// SSE over HTTP/2 without TLS.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/events?source=nothing", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("SSE over %s, want HTTP/2", resp.Proto)
	}
	n := 0
	for _, err := range sse.Read(resp.Body, nil) {
		if err != nil {
			t.Fatalf("SSE over HTTP/2, after %d heartbeats: %v", n, err)
		}
		if n++; n == beats {
			return
		}
	}
	t.Fatalf("SSE over HTTP/2 ended after %d heartbeats", n)
}

// TestResetsAreNotKept: a reset is made for one client; keeping its
// message (a whole snapshot) for the next clients would only hold memory.
func TestResetsAreNotKept(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Replay: 4}, Options{})
	for i := range 10 {
		a.publish(t, "host/"+strconv.Itoa(i), float64(i))
	}
	web := a.srv.Config.Handler.(*Server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	for range 3 {
		cs, err := client.Watch(ctx, connect.NewRequest(&vigilv1.WatchRequest{AfterId: 101}))
		if err != nil {
			t.Fatal(err)
		}
		if !cs.Receive() || cs.Msg().Events[0].Type != stream.TypeReset {
			t.Fatalf("want a reset: %v %v", cs.Msg(), cs.Err())
		}
		cs.Close()
	}
	c := web.rpcCache
	c.mu.Lock()
	defer c.mu.Unlock()
	for ev, msg := range c.msgs {
		if ev.Type == stream.TypeReset || msg.Type == stream.TypeReset {
			t.Fatalf("a reset is kept: %v", msg)
		}
	}
}

// TestWatchBatchesFitGRPCClients: a replay of large events comes in
// responses that a gRPC client takes with its default 4 MiB limit.
func TestWatchBatchesFitGRPCClients(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Replay: 512}, Options{})
	big := strings.Repeat("x", 64<<10)
	const n = 80 // 5 MiB in all, in the window
	for i := range n {
		a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"pad": big, "i": i}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gs := grpcWatch(ctx, t, grpcConn(t, a.srv.URL), &vigilv1.WatchRequest{AfterId: 99})
	got := 0
	for got < n {
		var res vigilv1.WatchResponse
		if err := gs.RecvMsg(&res); err != nil {
			t.Fatalf("after %d events: %v", got, err)
		}
		if size := proto.Size(&res); size > rpcMaxBatch+(100<<10) {
			t.Fatalf("a response of %d bytes", size)
		}
		for _, ev := range res.Events {
			if int(ev.Data.Fields["i"].GetNumberValue()) != got {
				t.Fatalf("event %v, want i=%d", ev.Id, got)
			}
			got++
		}
	}
}

// TestRPCJSONWritesEmptyLists: Connect's JSON says "alerts": [] when there
// are none, as GET /api/v1/alerts does, and reads what curl sends.
func TestRPCJSONWritesEmptyLists(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{Alerts: fakeAlerts{}})
	for _, c := range []struct{ path, body, want string }{
		{"ListAlerts", `{"states": ["firing"], "unknown_field": 1}`, `"alerts":[]`},
		{"Snapshot", `{"types": ["alert"]}`, `"events":[]`},
	} {
		resp, err := http.Post(a.srv.URL+"/vigil.v1.EventService/"+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(strings.ReplaceAll(string(body), " ", ""), c.want) {
			t.Fatalf("%s: %d %s, want %s", c.path, resp.StatusCode, body, c.want)
		}
	}
	resp, err := http.Post(a.srv.URL+"/vigil.v1.EventService/ListAlerts", "application/json", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an empty body: %d, want 400", resp.StatusCode)
	}
}
