package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
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
)

// The fleet benchmark runs the real vigil binary as a hub of many agents
// and measures what following them costs it. The agents are simulated in
// this process — one listener, a path per agent, each connection its own
// TCP stream — so that a thousand of them fit on the machine; each speaks
// vigil's event stream as an agent does: ids that increase, resuming after
// Last-Event-ID from a small window (or a reset when it cannot), heartbeat
// comments when idle, and one host sample a second of about forty metrics,
// stamped as it is published.

// Simulated agents.
const (
	agentWindow    = 32               // events an agent keeps for a hub that resumes
	agentHeartbeat = 10 * time.Second // as vigil's default
	publishSlots   = 100              // publish instants a second, agents spread over them
)

// hostMetrics are the metrics of one vigil host sample (a four-core VM
// with 16 GiB, one disk, three file systems and one network interface),
// sorted as vigil encodes them. The kind says how a value varies, level
// how large it is.
var hostMetrics = []struct {
	name  string
	kind  byte // p: percent, r: bytes or bytes a second, c: constant, u: uptime, l: load, n: processes
	level float64
}{
	{"cpu.cores", 'c', 4}, {"cpu.iowait_percent", 'p', 5}, {"cpu.percent", 'p', 60},
	{"cpu.percent{core=0}", 'p', 60}, {"cpu.percent{core=1}", 'p', 60}, {"cpu.percent{core=2}", 'p', 60}, {"cpu.percent{core=3}", 'p', 60},
	{"cpu.steal_percent", 'p', 2}, {"cpu.system_percent", 'p', 20}, {"cpu.user_percent", 'p', 40},
	{"disk.read_bytes_per_sec", 'r', 5e7}, {"disk.read_bytes_per_sec{device=vda}", 'r', 5e7},
	{"disk.write_bytes_per_sec", 'r', 2e7}, {"disk.write_bytes_per_sec{device=vda}", 'r', 2e7},
	{"fs.size_bytes{mount=/data}", 'c', 536870912000}, {"fs.size_bytes{mount=/var}", 'c', 21474836480}, {"fs.size_bytes{mount=/}", 'c', 107374182400},
	{"fs.used_bytes{mount=/data}", 'r', 3e11}, {"fs.used_bytes{mount=/var}", 'r', 1.2e10}, {"fs.used_bytes{mount=/}", 'r', 6e10},
	{"fs.used_percent{mount=/data}", 'p', 60}, {"fs.used_percent{mount=/var}", 'p', 60}, {"fs.used_percent{mount=/}", 'p', 60},
	{"host.procs", 'n', 280}, {"host.uptime_seconds", 'u', 0},
	{"load.1", 'l', 4}, {"load.15", 'l', 4}, {"load.5", 'l', 4}, {"load.5_per_core", 'l', 1},
	{"mem.available_bytes", 'r', 1.2e10}, {"mem.total_bytes", 'c', 17179869184}, {"mem.used_bytes", 'r', 1e10}, {"mem.used_percent", 'p', 60},
	{"net.rx_bytes_per_sec", 'r', 1.25e7}, {"net.rx_bytes_per_sec{iface=eth0}", 'r', 1.25e7},
	{"net.tx_bytes_per_sec", 'r', 1.25e7}, {"net.tx_bytes_per_sec{iface=eth0}", 'r', 1.25e7},
	{"swap.total_bytes", 'c', 4294967296}, {"swap.used_bytes", 'r', 5e8}, {"swap.used_percent", 'p', 12},
}

// simEvent is one event an agent published: its id and its whole frame.
type simEvent struct {
	id    uint64
	frame []byte
}

// simAgent is one simulated vigil agent with one host.
type simAgent struct {
	index int
	name  string // host/h0001
	rng   uint64
	born  time.Time
	base  []float64 // each metric's level
	cur   []float64 // each metric's value in the newest sample

	mu      sync.Mutex
	head    uint64 // id of the newest event
	win     [agentWindow]simEvent
	wake    chan struct{} // closed and replaced at every publish
	lastSrc []byte        // the data of the source event, for a reset's snapshot
	lastSmp []byte        // the data of the newest sample, likewise

	conns    atomic.Int64 // streams opened by the hub
	live     atomic.Int64 // streams open now
	replayed atomic.Int64 // streams that resumed from the window
	resets   atomic.Int64 // streams that got a reset
	cut      atomic.Int64 // streams the hub ended (not the harness)
}

func (a *simAgent) next() uint64 {
	a.rng ^= a.rng << 13
	a.rng ^= a.rng >> 7
	a.rng ^= a.rng << 17
	return a.rng
}

// publish appends an event to the window and wakes the streams.
func (a *simAgent) publish(typ string, t time.Time, body func(b []byte) []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := a.head + 1
	data := make([]byte, 0, 1600)
	data = append(data, `{"seq":`...)
	data = strconv.AppendUint(data, id, 10)
	data = append(data, `,"type":"`...)
	data = append(data, typ...)
	data = append(data, `","ts":"`...)
	data = t.UTC().AppendFormat(data, "2006-01-02T15:04:05.000Z07:00")
	data = append(data, `","source":"`...)
	data = append(data, a.name...)
	data = append(data, '"')
	data = body(data)
	data = append(data, '}')
	frame := make([]byte, 0, len(data)+48)
	frame = append(frame, "id: "...)
	frame = strconv.AppendUint(frame, id, 10)
	frame = append(frame, "\nevent: "...)
	frame = append(frame, typ...)
	frame = append(frame, "\ndata: "...)
	frame = append(frame, data...)
	frame = append(frame, "\n\n"...)
	a.win[id%agentWindow] = simEvent{id: id, frame: frame}
	a.head = id
	if typ == "source" {
		a.lastSrc = data
	} else {
		a.lastSmp = data
	}
	close(a.wake)
	a.wake = make(chan struct{})
}

// newSimAgent is agent i (from 0), host/h0001 for 0, born at born, with
// its levels set: agent i's values are the same whichever kind of agent
// (vigil's or a Netdata child) sends them.
func newSimAgent(i int, born time.Time) *simAgent {
	a := &simAgent{index: i, name: fmt.Sprintf("host/h%04d", i+1), rng: uint64(i)*0x9E3779B97F4A7C15 + 1, born: born}
	a.baselines()
	return a
}

// unit is the next random number in [0, 1).
func (a *simAgent) unit() float64 { return float64(a.next()>>11) / (1 << 53) }

// baselines gives every metric of the agent its level: a host's values
// move around their level, below the default alert rules' thresholds
// (a hub that saw alerts flap would measure its alerting, not its ingest).
func (a *simAgent) baselines() {
	a.base = make([]float64, len(hostMetrics))
	for i, m := range hostMetrics {
		switch m.kind {
		case 'p', 'r', 'l', 'n':
			a.base[i] = m.level * (0.1 + 0.9*a.unit()) // up to 60%: ±10% stays under 90, and load per core under 1.5
		case 'c':
			a.base[i] = m.level
		}
	}
}

// values moves the agent's metrics for a sample taken at now, into
// a.cur: every value but the constants differs from the last, rounded to
// six digits as vigil does. A simulated Netdata child takes the same.
func (a *simAgent) values(now time.Time) []float64 {
	if a.cur == nil {
		a.cur = make([]float64, len(hostMetrics))
	}
	for i, m := range hostMetrics {
		v := a.base[i]
		switch m.kind {
		case 'p', 'r', 'l':
			v *= 0.9 + 0.2*a.unit()
		case 'n':
			v = math.Round(v) + float64(a.next()%5)
		case 'u':
			v = float64(86400 + int(now.Sub(a.born).Seconds()))
		}
		a.cur[i], _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	}
	return a.cur
}

// sample publishes one host sample, stamped now.
func (a *simAgent) sample() {
	now := time.Now()
	vals := a.values(now)
	a.publish("sample", now, func(b []byte) []byte {
		b = append(b, `,"metrics":{`...)
		for i, m := range hostMetrics {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, m.name...)
			b = append(b, `":`...)
			b = strconv.AppendFloat(b, vals[i], 'f', -1, 64)
		}
		return append(b, '}')
	})
}

// start says where a new stream begins: the events to replay after
// last (""), or a reset when last cannot be resumed from; the position
// it then stands at; and the channel of the next publish.
func (a *simAgent) start(last string) (out [][]byte, pos uint64, wake chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pos, wake = a.head, a.wake
	if last == "" {
		return [][]byte{[]byte("id: " + strconv.FormatUint(pos, 10) + "\n\n")}, pos, wake
	}
	id, err := strconv.ParseUint(last, 10, 64)
	reason := ""
	switch {
	case err != nil:
		reason = "malformed id"
	case id > a.head:
		reason = "id newer than any event"
	case a.head-id > agentWindow:
		reason = "id older than the replay window"
	}
	if reason == "" {
		a.replayed.Add(1)
		return a.afterLocked(id), pos, wake
	}
	a.resets.Add(1)
	var b []byte
	b = fmt.Appendf(b, `{"seq":%d,"type":"reset","ts":"%s","reason":%q,"last_event_id":%q,"events":[`,
		a.head, time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"), reason, last)
	b = append(b, a.lastSrc...)
	if a.lastSmp != nil {
		b = append(append(b, ','), a.lastSmp...)
	}
	b = append(b, "]}"...)
	return [][]byte{fmt.Appendf(nil, "id: %d\nevent: reset\ndata: %s\n\n", a.head, b)}, pos, wake
}

// after returns the frames after pos, the new position and the channel
// of the next publish; ok is false when pos has left the window.
func (a *simAgent) after(pos uint64) (out [][]byte, head uint64, wake chan struct{}, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.head-pos > agentWindow {
		return nil, pos, nil, false
	}
	return a.afterLocked(pos), a.head, a.wake, true
}

func (a *simAgent) afterLocked(pos uint64) [][]byte {
	out := make([][]byte, 0, a.head-pos)
	for id := pos + 1; id <= a.head; id++ {
		out = append(out, a.win[id%agentWindow].frame)
	}
	return out
}

func (a *simAgent) headID() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.head
}

// simFleet is every simulated agent, served from one listener:
// /agents/{n}/events, n from 1.
type simFleet struct {
	agents []*simAgent
	ln     net.Listener
	srv    *http.Server
	ctx    context.Context // ends every stream and the publisher
	stop   context.CancelFunc
	late   atomic.Int64 // publish instants missed by over 50 ms
	wg     sync.WaitGroup
}

func startSimFleet(ctx context.Context, n int) (*simFleet, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &simFleet{ln: ln}
	f.ctx, f.stop = context.WithCancel(ctx)
	ctx = f.ctx
	now := time.Now()
	for i := range n {
		a := newSimAgent(i, now)
		a.wake = make(chan struct{})
		a.publish("source", now, func(b []byte) []byte { return append(b, `,"state":"up"`...) })
		f.agents = append(f.agents, a)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agents/{n}/events", f.serveEvents)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	f.wg.Go(func() { f.srv.Serve(ln) })
	f.wg.Go(func() { f.publish(ctx) })
	return f, nil
}

// url is agent i's base URL, as the hub's file lists it.
func (f *simFleet) url(i int) string {
	return "http://" + f.ln.Addr().String() + "/agents/" + strconv.Itoa(i+1)
}

// publish has every agent publish a sample once a second, agent i at
// i/n of the second, as hosts whose clocks tick independently would.
func (f *simFleet) publish(ctx context.Context) {
	everySecond(ctx, len(f.agents), &f.late, func(i int) { f.agents[i].sample() })
}

// everySecond calls each(i) for i in [0, n) once a second until ctx is
// done (a day at most), i at about i/n of the second, over publishSlots
// instants; late counts the instants missed by over 50 ms.
func everySecond(ctx context.Context, n int, late *atomic.Int64, each func(i int)) {
	bySlot := make([][]int, publishSlots)
	for i := range n {
		s := i * publishSlots / n
		bySlot[s] = append(bySlot[s], i)
	}
	step := time.Second / publishSlots
	start := time.Now().Truncate(time.Second).Add(time.Second)
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	for k := 0; k < publishSlots*24*3600; k++ { // a day at most
		at := start.Add(time.Duration(k) * step)
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if time.Since(at) > 50*time.Millisecond {
			late.Add(1)
		}
		for _, i := range bySlot[k%publishSlots] {
			each(i)
		}
	}
}

// serveEvents is one agent's /events: vigil's framing, resume and
// heartbeats. The type filter is taken as given (samples and sources are
// all an agent here publishes).
func (f *simFleet) serveEvents(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 || n > len(f.agents) {
		http.Error(w, `{"error":"no such agent"}`, http.StatusNotFound)
		return
	}
	a := f.agents[n-1]
	a.conns.Add(1)
	a.live.Add(1)
	defer a.live.Add(-1)
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId")
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	first, pos, wake := a.start(last)
	out := append([][]byte{[]byte("retry: 1000\n: vigil stream (simulated agent)\n\n")}, first...)
	beat := time.NewTimer(agentHeartbeat)
	defer beat.Stop()
	for range 1 << 24 { // bounded: far more than a run's events
		if len(out) > 0 {
			rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			for _, b := range out {
				if _, err := w.Write(b); err != nil {
					a.cut.Add(1)
					return
				}
			}
			if err := rc.Flush(); err != nil {
				a.cut.Add(1)
				return
			}
			beat.Reset(agentHeartbeat)
		}
		out = nil
		select {
		case <-r.Context().Done():
			if f.ctx.Err() == nil {
				a.cut.Add(1)
			}
			return
		case <-wake:
			var ok bool
			if out, pos, wake, ok = a.after(pos); !ok {
				a.cut.Add(1) // fell behind the window: a hub resumes and gets a reset
				return
			}
		case <-beat.C:
			out = [][]byte{[]byte(": heartbeat\nid: " + strconv.FormatUint(pos, 10) + "\n\n")}
		}
	}
}

func (f *simFleet) close() {
	f.stop()
	f.srv.Close()
	f.wg.Wait()
}

func (f *simFleet) heads() []uint64 {
	out := make([]uint64, len(f.agents))
	for i, a := range f.agents {
		out[i] = a.headID()
	}
	return out
}

func (f *simFleet) sum(c func(*simAgent) *atomic.Int64) int64 {
	var n int64
	for _, a := range f.agents {
		n += c(a).Load()
	}
	return n
}

// ---- the hub's subscriber ---------------------------------------------------

// arrival is one agent sample as it reached the hub's subscriber.
type arrival struct {
	seq uint64 // the agent's id, from "upstream":{"seq":…}
	lat time.Duration
}

// hubWatcher follows the hub's own stream of the agents' hosts.
type hubWatcher struct {
	n        int
	byAgent  [][]arrival // written by the reader only; read after it stopped
	last     string      // the last id, to resume from
	disorder int         // hub ids not above the one before
	unknown  int         // samples of sources that are no agent of ours
	resets   int
	conns    int
	seen     atomic.Int64 // agents with a sample received
	prevID   uint64
	ends     []string // when and why each stream ended
	began    time.Time
}

var (
	sourceKey   = []byte(`"source":"`)
	upstreamKey = []byte(`"upstream":{`)
)

// follow reads the hub's stream until ctx is done, reconnecting with
// Last-Event-ID when it ends (at most 20 times).
func (h *hubWatcher) follow(ctx context.Context, base string) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events?type=sample&source=host/*", nil)
		if h.last != "" {
			req.Header.Set("Last-Event-ID", h.last)
		}
		resp, err := client.Do(req)
		if err == nil {
			h.conns++
			if resp.StatusCode == http.StatusOK {
				err = h.read(resp.Body)
			} else {
				err = errors.New(resp.Status)
			}
			resp.Body.Close()
		}
		if ctx.Err() == nil && len(h.ends) < 20 {
			h.ends = append(h.ends, fmt.Sprintf("%.1fs: %v", time.Since(h.began).Seconds(), err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (h *hubWatcher) read(r io.Reader) error {
	return readEvents(r, 64<<10, func(typ, id string, data []byte) {
		if id != "" {
			h.last = id
		}
		if typ == "reset" {
			h.resets++
		}
		if typ == "sample" && len(data) > 0 {
			h.record(data)
		}
	})
}

// record notes one republished sample: its agent, the agent's id of it
// and its latency from the agent's publish.
func (h *hubWatcher) record(data []byte) {
	seq, lat, ok := parseEvent(data)
	if !ok {
		return
	}
	if seq <= h.prevID {
		h.disorder++
	}
	h.prevID = seq
	i := bytes.Index(data, sourceKey)
	if i < 0 {
		return
	}
	src := data[i+len(sourceKey):]
	src = src[:max(0, bytes.IndexByte(src, '"'))]
	num, ok := bytes.CutPrefix(src, []byte("host/h"))
	n, err := strconv.Atoi(string(num))
	if !ok || err != nil || n < 1 || n > h.n {
		h.unknown++
		return
	}
	j := bytes.LastIndex(data, upstreamKey)
	if j < 0 {
		h.unknown++
		return
	}
	aseq, ok := uintAfter(data[j:], seqKey) // the agent's id, in "upstream"
	if !ok {
		return
	}
	if len(h.byAgent[n-1]) == 0 {
		h.seen.Add(1)
	}
	h.byAgent[n-1] = append(h.byAgent[n-1], arrival{seq: aseq, lat: lat})
}

// ---- the hub ---------------------------------------------------------------

// hubLog reads the hub's log as it is written: where it listens, and its
// warnings and errors.
type hubLog struct {
	mu       sync.Mutex
	partial  []byte
	addr     chan string
	warnings map[string]int // by level and message
	first    []string       // the first few such lines
	copyTo   io.Writer      // nil, or where the whole log goes too
}

func (l *hubLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.copyTo != nil {
		l.copyTo.Write(b)
	}
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) > 1<<20 {
		l.partial = l.partial[:0]
	}
	return len(b), nil
}

func (l *hubLog) line(s string) {
	if strings.Contains(s, `msg="vigil listening"`) {
		for f := range strings.FieldsSeq(s) {
			if u, ok := strings.CutPrefix(f, "url="); ok {
				select {
				case l.addr <- u:
				default:
				}
			}
		}
	}
	level := ""
	for _, lv := range []string{" level=WARN ", " level=ERROR "} {
		if strings.Contains(s, lv) {
			level = lv
		}
	}
	if level == "" {
		return
	}
	l.warnings[strings.TrimSpace(level)+" "+logMessage(s)]++
	if len(l.first) < 5 {
		l.first = append(l.first, s)
	}
}

// logMessage is a slog text line's msg="…", or the line.
func logMessage(s string) string {
	_, msg, ok := strings.Cut(s, " msg=")
	if !ok {
		return s
	}
	if rest, quoted := strings.CutPrefix(msg, `"`); quoted {
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			return rest[:j]
		}
		return rest
	}
	msg, _, _ = strings.Cut(msg, " ")
	return msg
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// startHub starts vigil with the config and returns it and its URL.
func startHub(bin, dir, cfg string, env []string, log *hubLog) (*proc, string, error) {
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--config", cfg, "--log-level", "info")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = log
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	p := &proc{cmd: cmd}
	select {
	case u := <-log.addr:
		p.addr = strings.TrimPrefix(u, "http://")
		return p, u, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, "", errors.New("the hub did not say where it listens within 30s")
	}
}

// upstreamsUp counts the hub's upstream/* sources whose newest sample
// says upstream.up = 1.
func upstreamsUp(ctx context.Context, base string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/snapshot?type=sample&source=upstream/*", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var snap struct {
		Events []struct {
			Metrics map[string]float64 `json:"metrics"`
		} `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		return 0, err
	}
	n := 0
	for _, ev := range snap.Events {
		if ev.Metrics["upstream.up"] == 1 {
			n++
		}
	}
	return n, nil
}

// hubMetrics reads some of the hub's own metrics, summed over labels.
func hubMetrics(base string, names ...string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if strings.HasPrefix(line, n) {
				i := strings.LastIndexByte(line, ' ')
				v, _ := strconv.ParseFloat(line[i+1:], 64)
				out[n] += v
			}
		}
	}
	return out
}

// selfCPUSeconds is this process's user plus system time.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineBusySeconds is the CPU time every process of the machine has
// used since boot, idle and I/O wait left out.
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy float64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 {
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100 // USER_HZ
}

// ---- the run ---------------------------------------------------------------

type fleetResult struct {
	relay                    bool // the reference, not vigil
	netdata, netdataHealth   bool // the Netdata parent, not vigil; with its health checks on the children
	stored, storedSeconds    int  // the Netdata parent's: seconds of its children it holds, of those in the window
	agents, connected        int
	published, received      int
	missing, dups            int
	p50, p99, max            time.Duration
	cpuPercent, cpuPerPoint  float64 // % of one core; µs per metric point
	rss, peak                float64
	genPercent               float64 // the load generator's CPU
	otherPercent             float64 // the rest of the machine's
	hubConns, resets, cut    int64   // agent streams opened, reset, ended in the window
	hubPublished             float64 // samples the hub published a second
	late                     int64
	disorder, unknown        int
	watcherConns, watcherRst int
	watcherEnds              []string      // the subscriber's streams that ended, from its start
	windowAt                 time.Duration // when the window opened, from the subscriber's start
	dropped                  float64
	alerts                   float64 // alert events the hub published
	// the hub's read and write system calls and its threads' context
	// switches, per event it published
	readsPerEvent, writesPerEvent, switchesPerEvent float64
	log                                             *hubLog
}

// fleet runs, for each number of agents, the simulated agents and vigil
// as their hub, waits until the hub follows every agent, and measures over
// the window: the hub's CPU time (as a share of one core and per metric
// point taken in) and resident memory from /proc; every sample each agent
// published in the window, whether it reached a subscriber of the hub's
// own /events, and how long after its "ts" (which agents write to the
// millisecond, so latencies read up to 1 ms long).
func fleet(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ExitOnError)
	agentsFlag := fs.String("agents", "100,1000", "numbers of agents, one hub run each (and the relay after it); a number given again runs again: 1000,1000,1000 is three pairs, one after another")
	warm := fs.Duration("warm", 10*time.Second, "time after every agent is connected before measuring")
	measure := fs.Duration("measure", 30*time.Second, "measurement window")
	perf := fs.String("perf", "", "record the hub with perf(1) over each window into `prefix`-<agents>.data (-<agents>-<run> when a number is given again; the CPU figures then include perf's cost)")
	pprofOut := fs.String("pprof", "", "run, instead of the vigil binary, the same hub wired in this binary (serve-fleet) and save its CPU profile over each window and its heap after it to `prefix`-<agents>.cpu.pprof and .heap.pprof (-<agents>-<run> when a number is given again)")
	var hubEnv []string
	fs.Func("hubenv", "set `NAME=value` in the hub's environment only (repeatable), e.g. GOMAXPROCS=1 or GOMEMLIMIT=250MiB", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q: want NAME=value", v)
		}
		hubEnv = append(hubEnv, v)
		return nil
	})
	withVigil := fs.Bool("vigil", true, "run vigil as the hub (false: only the references)")
	netdata := fs.Bool("netdata", false, "after each hub, run a Netdata parent (Debian's netdata, on PATH) in its place: as many simulated Netdata children stream it the same forty values a second each, at the same instants, in Netdata's streaming protocol")
	netdataHealth := fs.Bool("netdatahealth", true, "run the Netdata parent's health checks on its children, as its stream.conf ships (false: none; a 1.37 parent gives each child's checks a thread of their own)")
	reference := fs.Bool("reference", true, "after each hub, run the reference in its place over the same agents and subscriber: a relay that only reads the agents' streams and writes their samples to the subscriber (serve-relay), warmed for at most 30s")
	hubConfig := fs.String("hubconfig", "", "YAML appended to the hub's config, e.g. `history: {enabled: false}`")
	hubLogs := fs.String("hublog", "", "write each hub's whole log (stderr: with GODEBUG=gctrace=1, its GC too) to `prefix`-<agents>.log (-<agents>-<run> when a number is given again)")
	fs.Parse(args)
	var sizes []int
	for _, f := range strings.Split(*agentsFlag, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 5000 {
			return fmt.Errorf("bad agent count %q (1 to 5000)", f)
		}
		sizes = append(sizes, n)
	}
	var rlim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rlim)
	if need := 2*slices.Max(sizes) + 256; rlim.Cur < uint64(need) {
		return fmt.Errorf("open-file limit %d: %d agents need %d; run `ulimit -n 20000` first", rlim.Cur, slices.Max(sizes), need)
	}
	if *netdata {
		if _, err := exec.LookPath("netdata"); err != nil {
			return fmt.Errorf("-netdata needs netdata on PATH (apt-get install netdata-core): %w", err)
		}
	}
	dir, bin, err := buildVigil()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var results []fleetResult
	for i, n := range sizes {
		var o fleetOutputs
		// Files are named by the agents, and by the run as well when a
		// number is given again, so that a run's do not replace another's.
		name := strconv.Itoa(n)
		if len(slices.DeleteFunc(slices.Clone(sizes), func(m int) bool { return m != n })) > 1 {
			name = fmt.Sprintf("%d-%d", n, i+1) // the i+1-th run
		}
		if *perf != "" {
			o.perf = fmt.Sprintf("%s-%s.data", *perf, name)
		}
		if *pprofOut != "" {
			o.pprof = fmt.Sprintf("%s-%s", *pprofOut, name)
		}
		o.env, o.config = hubEnv, *hubConfig
		if *hubLogs != "" {
			o.log = fmt.Sprintf("%s-%s.log", *hubLogs, name)
		}
		if *withVigil {
			r, err := measureFleet(bin, dir, n, *warm, *measure, o)
			if err != nil {
				return fmt.Errorf("%d agents: %w", n, err)
			}
			results = append(results, r)
		}
		if *netdata {
			r, err := measureNetdata(dir, n, *warm, *measure, *netdataHealth)
			if err != nil {
				return fmt.Errorf("%d agents, the Netdata parent: %w", n, err)
			}
			results = append(results, r)
		}
		if *reference {
			r, err := measureFleet(bin, dir, n, min(*warm, 30*time.Second), *measure, fleetOutputs{relay: true})
			if err != nil {
				return fmt.Errorf("%d agents, the relay: %w", n, err)
			}
			results = append(results, r)
		}
	}

	printFleet(results, *measure, *pprofOut != "", *perf != "")
	return nil
}

func (r fleetResult) name() string {
	if r.relay {
		return "relay (reference)"
	}
	if r.netdata && !r.netdataHealth {
		return "Netdata parent, no health checks (reference)"
	}
	if r.netdata {
		return "Netdata parent (reference)"
	}
	return "vigil"
}

// printFleet prints the runs' results as a table and notes.
func printFleet(results []fleetResult, measure time.Duration, pprof, perf bool) {
	hubKind := "vigil with upstreams_file, its own host source off"
	if pprof {
		hubKind = "not the vigil binary but the same parts wired in bench (serve-fleet), profiled"
	} else if perf {
		hubKind += ", recorded by perf"
	}
	fmt.Printf("Machine: %d CPUs, %s; load generator (the simulated agents and the hub's subscriber) in the same machine. "+
		"Each agent: one host sample a second of %d metrics, publish instants spread over the second; the hub: %s; %s window.\n\n",
		runtime.NumCPU(), runtime.Version(), len(hostMetrics), hubKind, measure)
	fmt.Println("| hub | agents | connected | samples published | received | missing | p50 latency | p99 latency | max latency | hub CPU (% of one core) | hub CPU / metric point | hub RSS (peak) | RSS / agent | load generator CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		if r.netdata {
			fmt.Printf("| %s | %d | %d | %d | n/a | n/a | n/a | n/a | n/a | %.1f%% | %.2f µs | %.1f MiB (%.1f MiB) | %.0f KiB | %.1f%% |\n",
				r.name(), r.agents, r.connected, r.published, r.cpuPercent, r.cpuPerPoint, r.rss/(1<<20), r.peak/(1<<20), r.rss/float64(r.agents)/1024, r.genPercent)
			continue
		}
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %s | %s | %s | %.1f%% | %.2f µs | %.1f MiB (%.1f MiB) | %.0f KiB | %.1f%% |\n",
			r.name(), r.agents, r.connected, r.published, r.received, r.missing,
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond),
			r.cpuPercent, r.cpuPerPoint, r.rss/(1<<20), r.peak/(1<<20), r.rss/float64(r.agents)/1024, r.genPercent)
	}
	fmt.Println()
	for _, r := range results {
		if r.netdata {
			fmt.Printf("- %s, %d children: it holds a value for %d of the %d seconds of its children wholly in the window (the uptime chart, read back from its API after the window); "+
				"%d children's streams ended by the parent; %d publish instants late; the rest of the machine used %.0f%% of a core. For each sample it took it made %.2f read and %.2f write system calls and its threads %.2f context switches. "+
				"It has no subscriber: the columns of what reached one are n/a.\n",
				r.name(), r.agents, r.stored, r.storedSeconds, r.cut, r.late, max(0, r.otherPercent), r.readsPerEvent, r.writesPerEvent, r.switchesPerEvent)
			for _, l := range r.log.first {
				fmt.Printf("  - e.g. `%s`\n", clip(l, 300))
			}
			continue
		}
		fmt.Printf("- %s, %d agents: it published %.0f samples/s (its agents' hosts and its upstream/* sources); "+
			"in the window %d agent streams opened, %d resets, %d streams ended by the hub; %d repeated, %d out-of-order ids and %d unknown samples on its stream, "+
			"its subscriber connected %d time(s) and got %d reset(s), %.0f events dropped by the hub, %.0f alert events; %d publish instants late; the rest of the machine used %.0f%% of a core. "+
			"For each event it published it made %.2f read and %.2f write system calls (its history's included, for vigil) and its threads %.2f context switches.\n",
			r.name(), r.agents, r.hubPublished, r.hubConns, r.resets, r.cut, r.dups, r.disorder, r.unknown, r.watcherConns, r.watcherRst, r.dropped, r.alerts, r.late, max(0, r.otherPercent),
			r.readsPerEvent, r.writesPerEvent, r.switchesPerEvent)
		for _, k := range slices.Sorted(maps.Keys(r.log.warnings)) {
			fmt.Printf("  - hub log: %d × %s\n", r.log.warnings[k], k)
		}
		for _, e := range r.watcherEnds {
			fmt.Printf("  - the hub's subscriber lost its stream at %s (the window opened at %.1fs)\n", e, r.windowAt.Seconds())
		}
		for _, l := range r.log.first {
			fmt.Printf("  - e.g. `%s`\n", clip(l, 300))
		}
	}
	results = slices.DeleteFunc(results, func(r fleetResult) bool { return r.relay || r.netdata })
	if len(results) > 1 {
		byAgents := func(x, y fleetResult) int { return x.agents - y.agents }
		a, b := slices.MinFunc(results, byAgents), slices.MaxFunc(results, byAgents)
		if a.agents == b.agents { // one number, run again (-agents 1000,1000)
			return
		}
		fmt.Printf("- from %d to %d agents: %.0f KiB of RSS and %.3f%% of a core per added agent.\n", a.agents, b.agents,
			(b.rss-a.rss)/float64(b.agents-a.agents)/1024, (b.cpuPercent-a.cpuPercent)/float64(b.agents-a.agents))
	}
}

// fleetOutputs are the files a run may leave ("" for none), and what the
// hub's environment adds.
type fleetOutputs struct {
	perf   string   // perf.data of the hub over the window
	pprof  string   // run serve-fleet and save its profiles under this prefix
	log    string   // the hub's log
	env    []string // NAME=value
	config string   // YAML for the hub's config, after the bench's
	relay  bool     // run the reference (serve-relay) instead of a hub
}

// startFleetHub starts the hub of a run in its folder: vigil following
// the simulated agents through an upstreams_file, or with out.pprof the
// same parts wired in this binary (serve-fleet).
func startFleetHub(bin, run string, sim *simFleet, out fleetOutputs, log *hubLog) (*proc, string, error) {
	if err := os.MkdirAll(run, 0o700); err != nil {
		return nil, "", err
	}
	targets := make([]string, len(sim.agents))
	for i := range targets {
		targets[i] = sim.url(i)
	}
	file, _ := json.Marshal([]map[string]any{{"targets": targets, "labels": map[string]string{"role": "web", "dc": "bench"}}})
	upFile := filepath.Join(run, "agents.json")
	cfg := filepath.Join(run, "hub.yaml")
	if err := os.WriteFile(upFile, file, 0o600); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(cfg, []byte("upstreams_file: "+upFile+"\nhost:\n  enabled: false\n"+out.config+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	if out.relay {
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		relay, err := startServer(self, "serve-relay", "127.0.0.1:0", upFile)
		if err != nil {
			return nil, "", err
		}
		return relay, "http://" + relay.addr, nil
	}
	if out.pprof != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Join(run, "data"), 0o700); err != nil {
			return nil, "", err
		}
		hub, err := startServer(self, "serve-fleet", "127.0.0.1:0", upFile, filepath.Join(run, "data"))
		if err != nil {
			return nil, "", err
		}
		return hub, "http://" + hub.addr, nil
	}
	return startHub(bin, run, cfg, out.env, log)
}

// count tallies, for each agent, the samples it published in the window
// (ids after heads0 up to heads1) that reached the hub's subscriber, the
// repeated ones, and returns their latencies.
func (r *fleetResult) count(w *hubWatcher, heads0, heads1 []uint64) []time.Duration {
	var lat []time.Duration
	for i, arr := range w.byAgent {
		lo, hi := heads0[i], heads1[i] // the window's samples: ids lo+1..hi
		r.published += int(hi - lo)
		got := map[uint64]bool{}
		for _, x := range arr {
			if x.seq <= lo || x.seq > hi {
				continue
			}
			if got[x.seq] {
				r.dups++
				continue
			}
			got[x.seq] = true
			lat = append(lat, x.lat)
		}
		r.received += len(got)
	}
	return lat
}

// waitConnected waits until the hub says every upstream is up, every
// agent has a stream open, and a sample of every agent came through.
// (The relay has no upstream sources: for it, the agents' streams and
// the samples through are enough.)
func waitConnected(ctx context.Context, sim *simFleet, w *hubWatcher, base string, relay bool) error {
	n := len(sim.agents)
	began := time.Now()
	deadline := began.Add(30*time.Second + time.Duration(n)*30*time.Millisecond)
	for {
		up, err := n, error(nil)
		if !relay {
			up, err = upstreamsUp(ctx, base)
		}
		var live int
		for _, a := range sim.agents {
			if a.live.Load() > 0 {
				live++
			}
		}
		if err == nil && up == n && live == n && w.seen.Load() == int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the hub reports %d of %d upstreams up (%v), %d agents have a stream, samples of %d came through",
				time.Since(began).Round(time.Second), up, n, err, live, w.seen.Load())
		}
		time.Sleep(time.Second)
	}
}

// profile starts recording the hub over the window as out asks — perf,
// or its CPU profile — and returns what waits for the recording and saves
// the heap profile after it.
func profile(hub *proc, base string, out fleetOutputs, measure time.Duration) (wait func() error, err error) {
	var perf *exec.Cmd
	if out.perf != "" {
		perf = exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(hub.cmd.Process.Pid), "-o", out.perf, "--", "sleep", strconv.Itoa(int(measure.Seconds())))
		perf.Stderr = os.Stderr
		if err := perf.Start(); err != nil {
			return nil, fmt.Errorf("perf: %w", err)
		}
	}
	var profiled chan error
	if out.pprof != "" {
		profiled = make(chan error, 1)
		go func() {
			profiled <- fetchProfile(base, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(measure.Seconds())), out.pprof+".cpu.pprof", measure+30*time.Second)
		}()
	}
	return func() error {
		if perf != nil {
			perf.Wait()
		}
		if profiled == nil {
			return nil
		}
		if err := <-profiled; err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := fetchProfile(base, "/debug/pprof/heap", out.pprof+".heap.pprof", 30*time.Second); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		return nil
	}, nil
}

// windowMetrics are the hub's own metrics a run reads at both ends of
// its window.
var windowMetrics = []string{`vigil_events_published_total{type="sample"}`, `vigil_upstream_events_dropped_total`, `vigil_subscribers_dropped_total`,
	`vigil_events_published_total{type="alert"}`}

// A fleetSnapshot is what the counters of a run say at one instant.
type fleetSnapshot struct {
	at                      time.Time
	metrics                 map[string]float64 // windowMetrics
	conns, resets, cut      int64              // the agents'
	late                    int64
	heads                   []uint64
	cpu, self, machineBusy  float64 // CPU seconds: the hub's, this process's, the machine's
	reads, writes, switches float64 // the hub's system calls and context switches
}

func snapshot(hub *proc, sim *simFleet, base string) fleetSnapshot {
	s := fleetSnapshot{
		metrics: hubMetrics(base, windowMetrics...),
		conns:   sim.sum(func(a *simAgent) *atomic.Int64 { return &a.conns }),
		resets:  sim.sum(func(a *simAgent) *atomic.Int64 { return &a.resets }),
		cut:     sim.sum(func(a *simAgent) *atomic.Int64 { return &a.cut }),
		late:    sim.late.Load(),
		heads:   sim.heads(),
		cpu:     hub.cpuSeconds(), self: selfCPUSeconds(), machineBusy: machineBusySeconds(),
		at: time.Now(),
	}
	s.reads, s.writes, s.switches = hub.syscalls()
	return s
}

// between sets what happened in the window from s0 to s1.
func (r *fleetResult) between(s0, s1 fleetSnapshot) {
	secs := s1.at.Sub(s0.at).Seconds()
	r.hubConns, r.resets, r.cut, r.late = s1.conns-s0.conns, s1.resets-s0.resets, s1.cut-s0.cut, s1.late-s0.late
	m0, m1 := s0.metrics, s1.metrics
	r.hubPublished = (m1[windowMetrics[0]] - m0[windowMetrics[0]]) / secs
	r.dropped = m1[windowMetrics[1]] - m0[windowMetrics[1]] + m1[windowMetrics[2]] - m0[windowMetrics[2]]
	r.alerts = m1[windowMetrics[3]] - m0[windowMetrics[3]]
	r.cpuPercent = 100 * (s1.cpu - s0.cpu) / secs
	r.genPercent = 100 * (s1.self - s0.self) / secs
	r.otherPercent = 100*(s1.machineBusy-s0.machineBusy)/secs - r.cpuPercent - r.genPercent
	r.perEvent(s0, s1, r.hubPublished*secs)
}

// perEvent sets the system calls and context switches from s0 to s1 for
// each of the events.
func (r *fleetResult) perEvent(s0, s1 fleetSnapshot, events float64) {
	if events > 0 {
		r.readsPerEvent = (s1.reads - s0.reads) / events
		r.writesPerEvent = (s1.writes - s0.writes) / events
		r.switchesPerEvent = (s1.switches - s0.switches) / events
	}
}

func measureFleet(bin, dir string, n int, warm, measure time.Duration, out fleetOutputs) (fleetResult, error) {
	r := fleetResult{agents: n, relay: out.relay, log: &hubLog{addr: make(chan string, 1), warnings: map[string]int{}}}
	if out.log != "" {
		f, err := os.Create(out.log)
		if err != nil {
			return r, err
		}
		defer f.Close()
		r.log.copyTo = f
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sim, err := startSimFleet(ctx, n)
	if err != nil {
		return r, err
	}
	defer sim.close()

	run := filepath.Join(dir, fmt.Sprintf("run-%d", n))
	defer os.RemoveAll(run)
	hub, base, err := startFleetHub(bin, run, sim, out, r.log)
	if err != nil {
		return r, err
	}
	defer hub.stop()

	w := &hubWatcher{n: n, byAgent: make([][]arrival, n), began: time.Now()}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.follow(wctx, base) })
	defer func() { wcancel(); wg.Wait() }()

	if err := waitConnected(ctx, sim, w, base, out.relay); err != nil {
		return r, err
	}
	time.Sleep(warm)

	profiled, err := profile(hub, base, out, measure)
	if err != nil {
		return r, err
	}
	s0 := snapshot(hub, sim, base)
	for time.Since(s0.at) < measure {
		time.Sleep(min(time.Second, measure-time.Since(s0.at)))
		r.peak = max(r.peak, hub.rssBytes())
	}
	s1 := snapshot(hub, sim, base)
	r.rss = hub.rssBytes()
	r.peak = max(r.peak, r.rss)
	if err := profiled(); err != nil {
		return r, err
	}
	s1.metrics = hubMetrics(base, windowMetrics...) // after the profiles, as before them
	r.between(s0, s1)
	for _, a := range sim.agents {
		if a.live.Load() > 0 {
			r.connected++
		}
	}

	time.Sleep(2 * time.Second) // for the window's last samples to arrive
	wcancel()
	wg.Wait()

	lat := r.count(w, s0.heads, s1.heads)
	r.missing = r.published - r.received
	slices.Sort(lat)
	if len(lat) > 0 {
		r.p50, r.p99, r.max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	if r.published > 0 {
		r.cpuPerPoint = (s1.cpu - s0.cpu) * 1e6 / float64(r.published*len(hostMetrics))
	}
	r.disorder, r.unknown, r.watcherConns, r.watcherRst = w.disorder, w.unknown, w.conns, w.resets
	r.watcherEnds = w.ends
	r.windowAt = s0.at.Sub(w.began)
	return r, nil
}
