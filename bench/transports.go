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

	"github.com/VictoriaMetrics/metrics"
	"github.com/coder/websocket"

	"vigil/collector"
	"vigil/dashboard"
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
	only := fs.String("only", "", "one transport: sse, ndjson, ws, longpoll or shortpoll")
	fs.Parse(args)
	if *clients < 1 || *clients > 5000 {
		return fmt.Errorf("-clients %d: want 1 to 5000", *clients)
	}
	fmt.Printf("Machine: %d CPUs, %s; load generator in the same machine. %d clients per transport, %d events/s (samples of 20 metrics, %d B of JSON each), %s window.\n\n",
		runtime.NumCPU(), runtime.Version(), *clients, *rate, sampleSize(), *measure)
	fmt.Println("| transport | held | events received | missed | p50 latency | p99 latency | server CPU (% of one core) | memory / client | bytes on the wire / event / client | requests in window |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var sse transportResult
	for _, name := range []string{"sse", "ndjson", "ws", "longpoll", "shortpoll"} {
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
	base := "http://" + p.addr

	var wire, requests atomic.Int64
	dialer := &net.Dialer{}
	tr := &http.Transport{
		MaxIdleConnsPerHost: -1, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{c, &wire}, nil
		},
	}
	if name == "longpoll" || name == "shortpoll" {
		tr.MaxIdleConnsPerHost = n // one kept-alive connection per poller
	}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := make([]*subscriber, n)
	var wg sync.WaitGroup
	get := func(url string, h http.Header) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		requests.Add(1)
		return client.Do(req)
	}
	for i := range cs {
		c := &subscriber{}
		cs[i] = c
		switch name {
		case "sse", "ndjson":
			path := "/events"
			if name == "ndjson" {
				path = "/api/v1/stream"
			}
			resp, err := get(base+path, nil)
			if err != nil || resp.StatusCode != 200 {
				continue
			}
			c.alive.Store(true)
			wg.Go(func() {
				defer resp.Body.Close()
				defer c.alive.Store(false)
				br := bufio.NewReaderSize(resp.Body, 4096)
				for {
					line, err := readLine(br)
					if err != nil {
						return
					}
					if name == "sse" {
						if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
							c.record(d)
						}
					} else if len(line) > 0 {
						c.record(line)
					}
				}
			})
		case "ws":
			ws, _, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", &websocket.DialOptions{HTTPClient: client})
			requests.Add(1)
			if err != nil {
				continue
			}
			c.alive.Store(true)
			wg.Go(func() {
				defer ws.CloseNow()
				defer c.alive.Store(false)
				for {
					_, b, err := ws.Read(ctx)
					if err != nil {
						return
					}
					c.record(b)
				}
			})
		case "longpoll":
			c.alive.Store(true)
			wg.Go(func() {
				defer c.alive.Store(false)
				after := ""
				for ctx.Err() == nil {
					url := base + "/api/v1/poll?timeout=25s"
					if after != "" {
						url += "&after=" + after
					}
					resp, err := get(url, nil)
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
			})
		case "shortpoll":
			// Once a second, the snapshot, with the ETag of the last one.
			c.alive.Store(true)
			offset := time.Duration(i) * time.Second / time.Duration(n)
			wg.Go(func() {
				defer c.alive.Store(false)
				t := time.NewTimer(offset)
				defer t.Stop()
				etag := ""
				var newest uint64
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					t.Reset(time.Second)
					h := http.Header{}
					if etag != "" {
						h.Set("If-None-Match", etag)
					}
					resp, err := get(base+"/api/v1/snapshot", h)
					if err != nil {
						return
					}
					var snap struct{ Events []json.RawMessage }
					if resp.StatusCode == 200 {
						etag = resp.Header.Get("ETag")
						json.NewDecoder(resp.Body).Decode(&snap)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					// A snapshot holds the newest event of each key; the
					// ones not seen before are what this poll delivered.
					var top uint64
					for _, ev := range snap.Events {
						s := &subscriber{}
						s.record(ev)
						if len(s.seqs) == 1 && s.seqs[0] > newest {
							c.record(ev)
							top = max(top, s.seqs[0])
						}
					}
					newest = max(newest, top)
				}
			})
		}
	}
	var w0, r0, w1, r1 int64
	var opened time.Time
	var window time.Duration
	cpu, rss1, held := measureWindow(p, cs, warm, measure, func(end bool) {
		if !end {
			w0, r0, opened = wire.Load(), requests.Load(), time.Now()
			return
		}
		w1, r1, window = wire.Load(), requests.Load(), time.Since(opened)
	})
	cancel()
	tr.CloseIdleConnections()
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
