package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	sse "github.com/tmaxmax/go-sse"

	vigilv1 "vigil/proto/vigil/v1"
	"vigil/proto/vigil/v1/vigilv1connect"
	"vigil/stream"
)

// TestSwitchTransportsEveryEventOnce moves one client between every
// transport — long polling, SSE, gRPC, NDJSON, WebSocket, Connect, and
// round again — resuming each time from the last id it got, while a
// publisher keeps publishing. The client must see every event exactly
// once, in order.
func TestSwitchTransportsEveryEventOnce(t *testing.T) {
	const total = 3000
	const perLeg = 120 // events taken on one transport before switching
	a := newTestApp(t, stream.HubOptions{Replay: 4096, Queue: 4096}, Options{})
	first := a.hub.LastID()
	// The publisher stays at most `ahead` events ahead of the client, so
	// every leg begins with a replay and goes on live.
	const ahead = 50
	credits := make(chan struct{}, total)
	start := make(chan struct{})
	published := make(chan uint64, 1)
	go func() {
		<-start
		var last uint64
		for i := range total {
			if i >= ahead {
				<-credits
			}
			ev, err := a.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/h" + strconv.Itoa(i%7),
				Body: map[string]any{"i": i}})
			if err != nil {
				break
			}
			last = ev.ID
		}
		published <- last
	}()

	var seen []uint64
	cursor := strconv.FormatUint(first, 10)
	took := func(id uint64) {
		seen = append(seen, id)
		cursor = strconv.FormatUint(id, 10)
		credits <- struct{}{}
	}
	done := func() bool { return len(seen) >= total }

	legs := map[string]func(){
		"poll": func() {
			for n := 0; n < perLeg && !done(); {
				r := poll(t, a.srv.URL+"/api/v1/poll?timeout=10s&after="+cursor)
				if r.code != 200 {
					t.Fatalf("poll: %d %s", r.code, r.ans.Error)
				}
				for _, ev := range r.ans.Events {
					took(ev.Seq)
					n++
				}
				if len(r.ans.Events) > 0 && r.ans.Next != cursor {
					t.Fatalf("next %s after event %s", r.ans.Next, cursor)
				}
			}
		},
		"sse": func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/events", nil)
			req.Header.Set("Last-Event-ID", cursor)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n := 0
			for ev, err := range sse.Read(resp.Body, nil) {
				if err != nil {
					t.Fatalf("sse: %v", err)
				}
				if ev.Type == "" && ev.Data == "" {
					continue // a position, not an event
				}
				id, _ := strconv.ParseUint(ev.LastEventID, 10, 64)
				took(id)
				if n++; n == perLeg || done() {
					return
				}
			}
			t.Fatal("sse stream ended")
		},
		"ndjson": func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/api/v1/stream?lastEventId="+cursor, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			n := 0
			for sc.Scan() {
				if len(strings.TrimSpace(sc.Text())) == 0 {
					continue // a heartbeat
				}
				var ev struct{ Seq uint64 }
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("ndjson line %q: %v", sc.Text(), err)
				}
				took(ev.Seq)
				if n++; n == perLeg || done() {
					return
				}
			}
			t.Fatalf("ndjson stream ended: %v", sc.Err())
		},
		"ws": func() {
			c := dialWS(t, a.srv.URL+"/ws?lastEventId="+cursor, nil)
			defer c.CloseNow()
			for n := 0; n < perLeg && !done(); n++ {
				m := readWS(t, c)
				if m.Type != "sample" {
					t.Fatalf("ws message %+v", m)
				}
				took(m.Seq)
			}
		},
	}
	after := func() uint64 { id, _ := strconv.ParseUint(cursor, 10, 64); return id }
	cc := grpcConn(t, a.srv.URL)
	legs["grpc"] = func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		gs := grpcWatch(ctx, t, cc, &vigilv1.WatchRequest{AfterId: after()})
		for n := 0; n < perLeg && !done(); {
			var res vigilv1.WatchResponse
			if err := gs.RecvMsg(&res); err != nil {
				t.Fatalf("grpc: %v", err)
			}
			// Take events one by one, leaving mid-batch: the cursor is
			// the last event taken, not the response's position.
			for _, ev := range res.Events {
				if n == perLeg || done() {
					break
				}
				took(ev.Id)
				n++
			}
		}
	}
	client := vigilv1connect.NewEventServiceClient(http.DefaultClient, a.srv.URL)
	legs["connect"] = func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cs, err := client.Watch(ctx, connect.NewRequest(&vigilv1.WatchRequest{AfterId: after()}))
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		for n := 0; n < perLeg && !done(); {
			if !cs.Receive() {
				t.Fatalf("connect: %v", cs.Err())
			}
			for _, ev := range cs.Msg().Events {
				if n == perLeg || done() {
					break
				}
				took(ev.Id)
				n++
			}
		}
	}
	order := []string{"poll", "sse", "grpc", "ndjson", "ws", "connect"}
	close(start)
	for leg := 0; !done(); leg++ {
		legs[order[leg%len(order)]]()
	}
	last := <-published
	if len(seen) != total {
		t.Fatalf("saw %d events, want %d", len(seen), total)
	}
	for i, id := range seen {
		if id != first+1+uint64(i) {
			t.Fatalf("event %d has id %d, want %d: a gap or a repeat", i, id, first+1+uint64(i))
		}
	}
	if seen[len(seen)-1] != last {
		t.Fatalf("last id %d, publisher's last %d", seen[len(seen)-1], last)
	}
}
