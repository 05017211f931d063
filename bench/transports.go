package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/VictoriaMetrics/metrics"
	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"vigil/collector"
	"vigil/dashboard"
	vigilv1 "vigil/proto/vigil/v1"
	"vigil/proto/vigil/v1/vigilv1connect"
	"vigil/stream"
)

// serveTransports serves vigil's whole HTTP surface and publishes rate
// samples a second, round-robin over ten sources, each with twenty
// metrics: about the size of a real service sample.
func serveTransports(addr, rate string) error {
	r, err := strconv.Atoi(rate)
	if err != nil || r < 1 {
		return fmt.Errorf("bad rate %q", rate)
	}
	set := metrics.NewSet()
	hub := stream.NewHub(stream.HubOptions{Metrics: set})
	web := dashboard.New(dashboard.Options{Hub: hub, Store: collector.NewStore(time.Minute, time.Second), Metrics: set})
	go hub.Run(context.Background())
	go func() {
		t := time.NewTicker(time.Second / time.Duration(r))
		for i := 0; ; i++ {
			<-t.C
			m := make(map[string]float64, 20)
			for k := range 20 {
				m["bench.metric_"+strconv.Itoa(k)+"_per_sec"] = float64((i*31+k*17)%1000) / 7
			}
			src := "bench/source-" + strconv.Itoa(i%10)
			hub.Publish(stream.Message{Type: stream.TypeSample, Source: src, Key: "sample/" + src, Time: time.Now(),
				Body: map[string]any{"metrics": m}})
		}
	}()
	return listenAndServe(addr, web)
}

// sampleSize is the JSON size of one published sample.
func sampleSize() int {
	hub := stream.NewHub(stream.HubOptions{})
	defer hub.Close()
	m := make(map[string]float64, 20)
	for k := range 20 {
		m["bench.metric_"+strconv.Itoa(k)+"_per_sec"] = 123.456789
	}
	ev, _ := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "bench/source-0", Time: time.Now(), Body: map[string]any{"metrics": m}})
	return len(ev.JSON())
}

// countingConn counts the bytes a client's connection reads and writes:
// what the transport costs on the wire, headers and framing included
// (TCP/IP headers not).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

type transportResult struct {
	name       string
	clients    int
	held       int
	events     int // published in the window
	received   int
	missed     int
	p50, p99   time.Duration
	cpuPercent float64
	memPerConn float64
	wirePerEv  float64 // bytes per event per client
	requests   int64
}

// transports measures each transport with the same server, event rate and
// number of clients, one transport at a time.
func transports(args []string) error {
	fs := flag.NewFlagSet("transports", flag.ExitOnError)
	clients := fs.Int("clients", 1000, "clients per transport")
	rate := fs.Int("rate", 10, "events published per second")
	warm := fs.Duration("warm", 5*time.Second, "time after connecting before measuring")
	measure := fs.Duration("measure", 20*time.Second, "measurement window")
	only := fs.String("only", "", "one transport: sse, ndjson, ws, grpc, connect, longpoll or shortpoll")
	fs.Parse(args)
	if *clients < 1 || *clients > 5000 {
		return fmt.Errorf("-clients %d: want 1 to 5000", *clients)
	}
	fmt.Printf("Machine: %d CPUs, %s; load generator in the same machine. %d clients per transport, %d events/s (samples of 20 metrics, %d B of JSON each), %s window.\n\n",
		runtime.NumCPU(), runtime.Version(), *clients, *rate, sampleSize(), *measure)
	fmt.Println("| transport | held | events received | missed | p50 latency | p99 latency | server CPU (% of one core) | memory / client | bytes on the wire / event / client | requests in window |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var sse transportResult
	for _, name := range []string{"sse", "ndjson", "ws", "grpc", "connect", "longpoll", "shortpoll"} {
		if *only != "" && name != *only {
			continue
		}
		r, err := measureTransport(name, *clients, *rate, *warm, *measure)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if name == "sse" {
			sse = r
		}
		vs := func(a, b float64) string {
			if sse.name == "" || name == "sse" {
				return ""
			}
			return fmt.Sprintf(" (%.2f×)", ratio(a, b))
		}
		fmt.Printf("| %s | %d | %d | %d | %s | %s | %.1f%%%s | %.1f KiB%s | %.0f B%s | %d |\n", r.name, r.held, r.received, r.missed,
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond),
			r.cpuPercent, vs(r.cpuPercent, sse.cpuPercent), r.memPerConn/1024, vs(r.memPerConn, sse.memPerConn),
			r.wirePerEv, vs(r.wirePerEv, sse.wirePerEv), r.requests)
	}
	return nil
}

func measureTransport(name string, n, rate int, warm, measure time.Duration) (transportResult, error) {
	self, err := os.Executable()
	if err != nil {
		return transportResult{}, err
	}
	p, err := startServer(self, "serve-transports", "127.0.0.1:0", strconv.Itoa(rate))
	if err != nil {
		return transportResult{}, err
	}
	defer p.stop()
	time.Sleep(2 * time.Second)
	rss0 := p.rssBytes()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc := newTransportClients(ctx, p.addr, n, name == "longpoll" || name == "shortpoll")
	cs := make([]*subscriber, n)
	var wg sync.WaitGroup
	for i := range cs {
		c := &subscriber{}
		cs[i] = c
		follow := map[string]func(*subscriber) func(){
			"sse": tc.stream("/events"), "ndjson": tc.stream("/api/v1/stream"), "ws": tc.websocket,
			"grpc": tc.grpc, "connect": tc.connect,
			"longpoll": tc.longPoll, "shortpoll": tc.shortPoll(time.Duration(i) * time.Second / time.Duration(n)),
		}[name]
		if run := follow(c); run != nil {
			c.alive.Store(true)
			wg.Go(func() {
				defer c.alive.Store(false)
				run()
			})
		}
	}
	var w0, r0, w1, r1 int64
	var opened time.Time
	var window time.Duration
	cpu, rss1, held := measureWindow(p, cs, warm, measure, func(end bool) {
		if !end {
			w0, r0, opened = tc.wire.Load(), tc.requests.Load(), time.Now()
			return
		}
		w1, r1, window = tc.wire.Load(), tc.requests.Load(), time.Since(opened)
	})
	cancel()
	tc.tr.CloseIdleConnections()
	wg.Wait()
	w := tallyAll(cs)
	if w.events == 0 {
		return transportResult{}, fmt.Errorf("no events received")
	}
	published := float64(rate) * window.Seconds()
	return transportResult{
		name: name, clients: n, held: held, events: w.events, received: w.received, missed: w.missed,
		p50: w.p50, p99: w.p99,
		cpuPercent: cpu,
		memPerConn: (rss1 - rss0) / float64(n),
		wirePerEv:  float64(w1-w0) / published / float64(n),
		requests:   r1 - r0,
	}, nil
}

// transportClients are the load generator's clients of one transport:
// one HTTP client whose connections count the bytes on the wire, and the
// requests made.
type transportClients struct {
	ctx            context.Context
	base, addr     string
	tr             *http.Transport
	client         *http.Client
	wire, requests atomic.Int64
}

func newTransportClients(ctx context.Context, addr string, n int, polling bool) *transportClients {
	tc := &transportClients{ctx: ctx, base: "http://" + addr, addr: addr}
	tc.tr = &http.Transport{
		MaxIdleConnsPerHost: -1, DisableCompression: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return tc.dial(ctx, addr) },
	}
	if polling {
		tc.tr.MaxIdleConnsPerHost = n // one kept-alive connection per poller
	}
	tc.client = &http.Client{Transport: tc.tr}
	return tc
}

func (tc *transportClients) get(url string, h http.Header) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(tc.ctx, "GET", url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	tc.requests.Add(1)
	return tc.client.Do(req)
}

// dial opens a connection whose bytes count.
func (tc *transportClients) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return countingConn{c, &tc.wire}, nil
}

// stream follows an SSE (/events) or NDJSON stream; the returned function
// reads it until it ends, or nil if it did not open.
func (tc *transportClients) stream(path string) func(c *subscriber) func() {
	return func(c *subscriber) func() {
		resp, err := tc.get(tc.base+path, nil)
		if err != nil || resp.StatusCode != 200 {
			return nil
		}
		return func() {
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 4096)
			for {
				line, err := readLine(br)
				if err != nil {
					return
				}
				if path == "/events" {
					if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
						c.record(d)
					}
				} else if len(line) > 0 {
					c.record(line)
				}
			}
		}
	}
}

func (tc *transportClients) websocket(c *subscriber) func() {
	ws, _, err := websocket.Dial(tc.ctx, "ws://"+tc.addr+"/ws", &websocket.DialOptions{HTTPClient: tc.client})
	tc.requests.Add(1)
	if err != nil {
		return nil
	}
	return func() {
		defer ws.CloseNow()
		for {
			_, b, err := ws.Read(tc.ctx)
			if err != nil {
				return
			}
			c.record(b)
		}
	}
}

// grpc watches over gRPC (google.golang.org/grpc, HTTP/2 without TLS),
// a connection of its own per client as a browser's EventSource has.
func (tc *transportClients) grpc(c *subscriber) func() {
	cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(tc.dial))
	if err != nil {
		return nil
	}
	tc.requests.Add(1)
	cs, err := cc.NewStream(tc.ctx, &grpc.StreamDesc{ServerStreams: true}, vigilv1connect.EventServiceWatchProcedure)
	if err == nil {
		err = cs.SendMsg(&vigilv1.WatchRequest{})
	}
	if err == nil {
		err = cs.CloseSend()
	}
	if err != nil {
		cc.Close()
		return nil
	}
	return func() {
		defer cc.Close()
		for {
			var res vigilv1.WatchResponse
			if cs.RecvMsg(&res) != nil {
				return
			}
			for _, ev := range res.Events {
				c.recordAt(ev.Id, ev.Time.AsTime())
			}
		}
	}
}

// connect watches over the Connect protocol (HTTP/1.1).
func (tc *transportClients) connect(c *subscriber) func() {
	tc.requests.Add(1)
	cs, err := vigilv1connect.NewEventServiceClient(tc.client, tc.base).Watch(tc.ctx, connect.NewRequest(&vigilv1.WatchRequest{}))
	if err != nil {
		return nil
	}
	return func() {
		defer cs.Close()
		for cs.Receive() {
			for _, ev := range cs.Msg().Events {
				c.recordAt(ev.Id, ev.Time.AsTime())
			}
		}
	}
}

// longPoll asks for the events after its cursor again and again.
func (tc *transportClients) longPoll(c *subscriber) func() {
	return func() {
		after := ""
		for tc.ctx.Err() == nil {
			url := tc.base + "/api/v1/poll?timeout=25s"
			if after != "" {
				url += "&after=" + after
			}
			resp, err := tc.get(url, nil)
			if err != nil {
				return
			}
			var ans struct {
				Events []json.RawMessage
				Next   string
			}
			json.NewDecoder(resp.Body).Decode(&ans)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			for _, ev := range ans.Events {
				c.record(ev)
			}
			after = ans.Next
		}
	}
}

// shortPoll fetches the snapshot once a second, with the ETag of the last
// one, starting at an offset so that the pollers spread over the second.
func (tc *transportClients) shortPoll(offset time.Duration) func(c *subscriber) func() {
	return func(c *subscriber) func() {
		return func() {
			t := time.NewTimer(offset)
			defer t.Stop()
			etag := ""
			var newest uint64
			for {
				select {
				case <-tc.ctx.Done():
					return
				case <-t.C:
				}
				t.Reset(time.Second)
				var ok bool
				if etag, newest, ok = tc.snapshot(c, etag, newest); !ok {
					return
				}
			}
		}
	}
}

// snapshot is one short poll: the events not seen before are what it
// delivered (a snapshot holds the newest event of each key).
func (tc *transportClients) snapshot(c *subscriber, etag string, newest uint64) (string, uint64, bool) {
	h := http.Header{}
	if etag != "" {
		h.Set("If-None-Match", etag)
	}
	resp, err := tc.get(tc.base+"/api/v1/snapshot", h)
	if err != nil {
		return etag, newest, false
	}
	var snap struct{ Events []json.RawMessage }
	if resp.StatusCode == 200 {
		etag = resp.Header.Get("ETag")
		json.NewDecoder(resp.Body).Decode(&snap)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var top uint64
	for _, ev := range snap.Events {
		s := &subscriber{}
		s.record(ev)
		if len(s.seqs) == 1 && s.seqs[0] > newest {
			c.record(ev)
			top = max(top, s.seqs[0])
		}
	}
	return etag, max(newest, top), true
}
