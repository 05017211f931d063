// Command bench measures vigil's event stream against a minimal net/http
// broadcaster on this machine, and vigil's own idle cost. Results go to
// stdout as Markdown; docs/BENCHMARKS.md records them.
//
//	go run ./bench fanout [-subs 1000,5000,10000] [-measure 20s]
//	go run ./bench idle [-measure 60s]
//	go run ./bench ui [-tiles 500] [-measure 30s] [-screenshot file.png]
//	go run ./bench probes [-targets 100] [-measure 30s]
//	go run ./bench transports [-clients 1000] [-rate 10] [-measure 20s]
//	go run ./bench fleet [-agents 100,1000] [-measure 30s] [-perf prefix] [-pprof prefix] [-netdata [-netdatahealth=false]]
//	go run ./bench charts [-runs 50] [-warm 5]
//	go run ./bench cluster [-subs 1000] [-replicas-subs 10000] [-measure 20s]
//
// Each server under test runs in its own process (this binary, re-executed),
// so its CPU time and memory are read from /proc without the load
// generator's. The load generator parses every stream by the WHATWG rules
// and takes latency from the publish timestamp ("ts") carried in each event.
// Every loop here is bounded in count and time, and only loopback is used.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/stream"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench fanout|idle|ui|probes|transports|fleet|charts|cluster [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "fanout":
		err = fanout(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	case "ui":
		err = ui(os.Args[2:])
	case "probes":
		err = probes(os.Args[2:])
	case "transports":
		err = transports(os.Args[2:])
	case "fleet":
		err = fleet(os.Args[2:])
	case "charts":
		err = charts(os.Args[2:])
	case "serve-transports":
		err = serveTransports(os.Args[2], os.Args[3])
	case "serve-fleet":
		err = serveFleet(os.Args[2], os.Args[3], os.Args[4])
	case "serve-vigil":
		err = serveVigil(os.Args[2])
	case "serve-vigil-nats":
		url := ""
		if len(os.Args) > 3 {
			url = os.Args[3]
		}
		err = serveVigilNATS(os.Args[2], url)
	case "cluster":
		err = clusterBench(os.Args[2:])
	case "serve-relay":
		err = serveRelay(os.Args[2], os.Args[3])
	case "serve-ref":
		err = serveRef(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// ---- servers under test ----------------------------------------------------

// serveVigil wires the hub and the /events handler exactly as vigil does and
// publishes one synthetic sample a second, stamped at publish time.
func serveVigil(addr string) error {
	set := metrics.NewSet()
	hub := stream.NewHub(stream.HubOptions{Metrics: set})
	web := dashboard.New(dashboard.Options{Hub: hub, Store: collector.NewStore(time.Minute, time.Second), Metrics: set})
	go hub.Run(context.Background())
	go publishEverySecond(hub)
	return listenAndServe(addr, web)
}

// publishEverySecond publishes a synthetic sample at the start of every
// second, stamped at publish time, for ever.
func publishEverySecond(hub *stream.Hub) {
	for i := 0; ; i++ {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		hub.Publish(stream.Message{Type: stream.TypeSample, Source: "bench/synthetic", Time: time.Now(),
			Body: map[string]any{"metrics": map[string]float64{"v": float64(i)}}})
	}
}

// serveRef is the reference: the smallest correct SSE broadcaster net/http
// allows — a buffered channel per client, a non-blocking send, write and
// flush per event.
func serveRef(addr string) error {
	var mu sync.Mutex
	clients := map[chan []byte]struct{}{}
	go func() {
		seq := uint64(time.Now().UnixMicro())
		for i := 0; ; i++ {
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
			seq++
			ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
			msg := []byte(fmt.Sprintf("id: %d\nevent: sample\ndata: {\"seq\":%d,\"type\":\"sample\",\"ts\":\"%s\",\"source\":\"bench/synthetic\",\"metrics\":{\"v\":%d}}\n\n", seq, seq, ts, i))
			mu.Lock()
			for c := range clients {
				select {
				case c <- msg:
				default:
				}
			}
			mu.Unlock()
		}
	}()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := make(chan []byte, 16)
		mu.Lock()
		clients[c] = struct{}{}
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(clients, c)
			mu.Unlock()
		}()
		writeFrames(w, r, c)
	})
	return listenAndServe(addr, h)
}

// writeFrames is the references' event stream: each frame from c written
// and flushed as it comes, until the client goes.
func writeFrames(w http.ResponseWriter, r *http.Request, c <-chan []byte) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-c:
			if _, err := w.Write(m); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

func listenAndServe(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr())
	return (&http.Server{Handler: h, Protocols: dashboard.Protocols(), ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// ---- process measurements --------------------------------------------------

type proc struct {
	cmd  *exec.Cmd
	addr string
	nats string // the NATS URL a serve-vigil-nats server runs
}

func startServer(args ...string) (*proc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	var natsURL string
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "nats "); ok {
			natsURL = u
		}
		if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			go io.Copy(io.Discard, out)
			return &proc{cmd: cmd, addr: a, nats: natsURL}, nil
		}
	}
	cmd.Process.Kill()
	return nil, errors.New("server did not start")
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// cpuSeconds is the process's user plus system time.
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// syscalls is how many read-like and write-like system calls the process
// has made (syscr and syscw of /proc/<pid>/io: read, pread, recv…; write,
// pwrite, send…), and how many times its threads gave up or were taken
// off a CPU (every thread's context switches, voluntary or not).
func (p *proc) syscalls() (reads, writes, switches float64) {
	pid := p.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "syscr: "); ok {
				reads, _ = strconv.ParseFloat(v, 64)
			} else if v, ok := strings.CutPrefix(line, "syscw: "); ok {
				writes, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				switches += n
			}
		}
	}
	return reads, writes, switches
}

// rssBytes is the process's resident set.
func (p *proc) rssBytes() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	return 0
}

// ---- the load generator ----------------------------------------------------

type subscriber struct {
	mu        sync.Mutex
	seqs      []uint64
	latencies []time.Duration
	alive     atomic.Bool
}

// reset forgets what was received so far: only the window counts.
func (s *subscriber) reset() {
	s.mu.Lock()
	s.seqs, s.latencies = s.seqs[:0], s.latencies[:0]
	s.mu.Unlock()
}

// readStream records each sample's seq and latency.
func (s *subscriber) readStream(r io.Reader) {
	readEvents(r, 4096, func(typ, _ string, data []byte) {
		if typ == "sample" && len(data) > 0 {
			s.record(data)
		}
	})
}

// readEvents parses an event stream by the WHATWG rules (LF, CR and CRLF
// line ends; "field: value" with one optional space; data lines joined; a
// blank line dispatches) and hands each event to fn, until the stream
// ends. data is fn's only during the call.
func readEvents(r io.Reader, bufSize int, fn func(typ, id string, data []byte)) error {
	br := bufio.NewReaderSize(r, bufSize)
	var data []byte
	var typ, id string
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			fn(typ, id, data)
			data, typ, id = data[:0], "", ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		case "event":
			typ = string(value)
		case "id":
			id = string(value)
		}
	}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, nil
}

var (
	seqKey = []byte(`"seq":`)
	tsKey  = []byte(`"ts":"`)
)

// record notes an event's seq and latency; it returns the seq, or 0 for
// data that is not an event.
func (s *subscriber) record(data []byte) uint64 {
	seq, lat, ok := parseEvent(data)
	if !ok {
		return 0
	}
	s.add(seq, lat)
	return seq
}

// recordAt records an event that came as a message rather than JSON.
func (s *subscriber) recordAt(seq uint64, published time.Time) {
	s.add(seq, time.Since(published))
}

func (s *subscriber) add(seq uint64, lat time.Duration) {
	s.mu.Lock()
	s.seqs = append(s.seqs, seq)
	s.latencies = append(s.latencies, lat)
	s.mu.Unlock()
}

// uintAfter reads the number after the first key in b, up to a , or }.
func uintAfter(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return n, err == nil
}

// parseEvent reads an event's seq and its latency from its "ts".
func parseEvent(data []byte) (uint64, time.Duration, bool) {
	now := time.Now()
	i := bytes.Index(data, seqKey)
	j := bytes.Index(data, tsKey)
	if i < 0 || j < 0 || len(data) < j+len(tsKey)+24 {
		return 0, 0, false
	}
	seq, ok := uintAfter(data[i:], seqKey)
	if !ok {
		return 0, 0, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(data[j+len(tsKey):j+len(tsKey)+24]))
	if err != nil {
		return 0, 0, false
	}
	return seq, now.Sub(ts), true
}

// measureWindow lets the clients warm up, then measures the server over
// the window: its CPU time and resident memory, and how many clients are
// still connected at the end. mark, if not nil, is called as the window
// opens (false) and closes (true), for counters of the caller's own.
func measureWindow(p *proc, subs []*subscriber, warm, measure time.Duration, mark func(end bool)) (cpuPercent, rss float64, held int) {
	if mark == nil {
		mark = func(bool) {}
	}
	time.Sleep(warm)
	for _, s := range subs {
		s.reset()
	}
	mark(false)
	cpu0, t0 := p.cpuSeconds(), time.Now()
	time.Sleep(measure)
	cpu1, t1 := p.cpuSeconds(), time.Now()
	mark(true)
	for _, s := range subs {
		if s.alive.Load() {
			held++
		}
	}
	return 100 * (cpu1 - cpu0) / t1.Sub(t0).Seconds(), p.rssBytes(), held
}

// tallyAll is tally over every client, once they have stopped.
func tallyAll(subs []*subscriber) window {
	seqs := make([][]uint64, len(subs))
	var lat []time.Duration
	for i, s := range subs {
		seqs[i] = s.seqs
		lat = append(lat, s.latencies...)
	}
	return tally(seqs, lat)
}

type result struct {
	impl       string
	subs       int
	held       int
	p50, p99   time.Duration
	missed     int
	received   int
	memPerSub  float64 // bytes
	cpuPercent float64 // of one core
}

func measureFanout(impl string, n int, warm, measure time.Duration) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	p, err := startServer(self, "serve-"+impl, "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	time.Sleep(2 * time.Second) // let the runtime settle before the baseline
	rss0 := p.rssBytes()

	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	subs := subscribeAll(ctx, client, &wg, n, func(int) string { return p.addr })
	cpu, rss1, held := measureWindow(p, subs, warm, measure, nil)
	cancel()
	tr.CloseIdleConnections()
	wg.Wait()
	w := tallyAll(subs)
	return result{
		impl: impl, subs: n, held: held,
		p50: w.p50, p99: w.p99, missed: w.missed, received: w.received,
		memPerSub:  (rss1 - rss0) / float64(n),
		cpuPercent: cpu,
	}, nil
}

// subscribeAll opens n streams of /events, the i-th on addr(i), each
// read by a goroutine counted in wg until ctx ends. It connects one at a
// time: the listen backlog stays short, and every client is subscribed
// before the next dials.
func subscribeAll(ctx context.Context, client *http.Client, wg *sync.WaitGroup, n int, addr func(i int) string) []*subscriber {
	subs := make([]*subscriber, n)
	for i := range subs {
		s := &subscriber{}
		subs[i] = s
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr(i)+"/events", nil)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			continue
		}
		s.alive.Store(true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			s.readStream(resp.Body)
			s.alive.Store(false)
		}()
	}
	return subs
}

// window is what the clients of a run got in the measurement window.
type window struct {
	events, received, missed int
	p50, p99                 time.Duration
}

// tally counts, per client, the events received and missed among those
// of the window — the run of seqs from the first to the last that any
// client saw (the servers number consecutively), less the two edges,
// which may straddle the window — and the latency percentiles.
func tally(seqs [][]uint64, lat []time.Duration) window {
	var lo, hi uint64 = ^uint64(0), 0
	for _, ss := range seqs {
		for _, q := range ss {
			lo, hi = min(lo, q), max(hi, q)
		}
	}
	if hi < lo+2 {
		return window{}
	}
	lo, hi = lo+1, hi-1
	w := window{events: int(hi - lo + 1)}
	for _, ss := range seqs {
		got := 0
		for _, q := range ss {
			if q >= lo && q <= hi {
				got++
			}
		}
		w.received += got
		w.missed += w.events - got
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	w.p50, w.p99 = pct(0.5), pct(0.99)
	return w
}

func fanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ExitOnError)
	subsFlag := fs.String("subs", "1000,5000,10000", "subscriber counts")
	warm := fs.Duration("warm", 5*time.Second, "time after connecting before measuring")
	measure := fs.Duration("measure", 20*time.Second, "measurement window")
	fs.Parse(args)
	var rlim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rlim)
	fmt.Printf("Machine: %d CPUs, %s; open-file limit %d; load generator in the same machine.\n\n", runtime.NumCPU(), runtime.Version(), rlim.Cur)
	fmt.Println("| subscribers | server | held | events received | missed | p50 latency | p99 latency | memory / subscriber | CPU (% of one core) |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, f := range strings.Split(*subsFlag, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n > 10000 {
			return fmt.Errorf("bad subscriber count %q (1 to 10000)", f)
		}
		var pair [2]result
		for i, impl := range []string{"ref", "vigil"} {
			r, err := measureFanout(impl, n, *warm, *measure)
			if err != nil {
				return fmt.Errorf("%s with %d: %w", impl, n, err)
			}
			pair[i] = r
			name := "net/http reference"
			if impl == "vigil" {
				name = "vigil"
			}
			fmt.Printf("| %d | %s | %d | %d | %d | %s | %s | %.1f KiB | %.1f%% |\n", r.subs, name, r.held, r.received, r.missed,
				r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.memPerSub/1024, r.cpuPercent)
		}
		ref, v := pair[0], pair[1]
		fmt.Printf("| %d | vigil ÷ reference | | | | %.2f× | %.2f× | %.2f× | %.2f× |\n", n,
			ratio(float64(v.p50), float64(ref.p50)), ratio(float64(v.p99), float64(ref.p99)),
			ratio(v.memPerSub, ref.memPerSub), ratio(v.cpuPercent, ref.cpuPercent))
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// idle runs the real vigil binary with default settings and no subscribers
// and reports its CPU use and resident memory.
func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	warm := fs.Duration("warm", 10*time.Second, "time after start before measuring")
	measure := fs.Duration("measure", 60*time.Second, "measurement window")
	fs.Parse(args)
	dir, bin, err := buildVigil()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := runVigil("vigil, host source at 1 s, no subscribers", bin, dir, *warm, *measure); err != nil {
		return err
	}
	// The reference: the same without the history (its rollups and its
	// writes every 10 s).
	off := filepath.Join(dir, "no-history.yaml")
	if err := os.WriteFile(off, []byte("history: {enabled: false}\n"), 0o600); err != nil {
		return err
	}
	return runVigil("the same, history off", bin, dir, *warm, *measure, "--config", off)
}

// buildVigil builds vigil into a new temporary directory.
func buildVigil() (dir, bin string, err error) {
	dir, err = os.MkdirTemp("", "vigil-bench")
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-o", bin, "vigil") // the vigil module, through go.mod's replace
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("build vigil: %w", err)
	}
	return dir, bin, nil
}

// runVigil runs vigil with the given flags and prints a table row of its
// CPU use and memory over the measurement window.
func runVigil(label, bin, dir string, warm, measure time.Duration, extra ...string) error {
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "error"}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &proc{cmd: cmd}
	defer p.stop()
	time.Sleep(warm)
	cpu0, t0 := p.cpuSeconds(), time.Now()
	var peak float64
	for time.Since(t0) < measure {
		time.Sleep(time.Second)
		peak = max(peak, p.rssBytes())
	}
	cpu1, t1 := p.cpuSeconds(), time.Now()
	fmt.Printf("| %s | %.2f%% of one core | %.1f MiB (peak %.1f MiB) | %s |\n", label,
		100*(cpu1-cpu0)/t1.Sub(t0).Seconds(), p.rssBytes()/(1<<20), peak/(1<<20), measure)
	return nil
}
