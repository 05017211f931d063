package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The Netdata reference: issue 12's CPU goal is a Netdata parent's
// published cost, so the fleet benchmark can run a real Netdata parent
// (Debian's netdata, 1.37) on the same machine, in the same run, in the
// hub's place: simulated Netdata children stream it the same forty values
// a second each, at the same instants of the second, in Netdata's own
// streaming protocol (version 4: plain text, no compression, no
// replication), and the parent keeps them as it ships — its dbengine and
// its tiers, its health checks on every child — with its own collectors
// off, as vigil's host source is off in the hub.

// netdataStreamVersion is the protocol version the children speak: the
// text commands CHART, DIMENSION, BEGIN, SET and END, and labels; 5 adds
// compression, which vigil's agents do not do either.
const netdataStreamVersion = 4

// A netdataDim is one dimension of a chart, from one of hostMetrics.
type netdataDim struct {
	id      string
	divisor int64                   // SET carries value × divisor as an integer
	value   func([]float64) float64 // from the sample's values, in hostMetrics order
}

// A netdataChart is one chart a child sends every second.
type netdataChart struct {
	id, title, units, family, context, kind string
	dims                                    []netdataDim
}

// metric is the value of hostMetrics' metric name.
func metric(name string) func([]float64) float64 {
	for i, m := range hostMetrics {
		if m.name == name {
			return func(v []float64) float64 { return v[i] }
		}
	}
	panic("no metric " + name)
}

// netdataCharts carry a vigil host sample's forty values as the charts of
// a Netdata child's host (its proc and diskspace plugins), under the
// contexts Netdata's stock health checks watch: system.cpu, system.load,
// system.ram, mem.swap, disk.space, net.net and so on. A value with no
// Netdata chart of its own (cpu.percent, cpu.cores) goes in one chart
// more, so that each child sends forty points a second, as each agent does.
var netdataCharts = func() []netdataChart {
	pct := func(id, name string) netdataDim { return netdataDim{id, 10000, metric(name)} }
	num := func(id, name string) netdataDim { return netdataDim{id, 1, metric(name)} }
	cs := []netdataChart{
		{"system.cpu", "Total CPU utilization", "percentage", "cpu", "system.cpu", "stacked", []netdataDim{
			pct("user", "cpu.user_percent"), pct("system", "cpu.system_percent"),
			pct("iowait", "cpu.iowait_percent"), pct("steal", "cpu.steal_percent")}},
		{"cpu.summary", "CPU utilization and cores", "percentage", "cpu", "cpu.summary", "line", []netdataDim{
			pct("used", "cpu.percent"), num("cores", "cpu.cores")}},
	}
	for c := range 4 {
		cs = append(cs, netdataChart{fmt.Sprintf("cpu.cpu%d", c), "Core utilization", "percentage", "utilization", "cpu.cpu", "stacked",
			[]netdataDim{pct("used", fmt.Sprintf("cpu.percent{core=%d}", c))}})
	}
	cs = append(cs,
		netdataChart{"system.io", "Disk I/O", "KiB/s", "disk", "system.io", "area", []netdataDim{
			num("in", "disk.read_bytes_per_sec"), num("out", "disk.write_bytes_per_sec")}},
		netdataChart{"disk.vda", "Disk I/O bandwidth", "KiB/s", "vda", "disk.io", "area", []netdataDim{
			num("reads", "disk.read_bytes_per_sec{device=vda}"), num("writes", "disk.write_bytes_per_sec{device=vda}")}},
	)
	for _, m := range []string{"/", "/var", "/data"} {
		size, used := metric("fs.size_bytes{mount="+m+"}"), metric("fs.used_bytes{mount="+m+"}")
		id := "disk_space." + strings.ReplaceAll(m, "/", "_")
		cs = append(cs, netdataChart{id, "Disk space usage", "GiB", m, "disk.space", "stacked", []netdataDim{
			{"avail", 1, func(v []float64) float64 { return size(v) - used(v) }},
			{"used", 1, used},
			{"reserved_for_root", 10000, metric("fs.used_percent{mount=" + m + "}")}}})
	}
	swapTotal, swapUsed := metric("swap.total_bytes"), metric("swap.used_bytes")
	cs = append(cs,
		netdataChart{"system.active_processes", "System active processes", "processes", "processes", "system.active_processes", "line", []netdataDim{
			num("active", "host.procs")}},
		netdataChart{"system.uptime", "System uptime", "seconds", "uptime", "system.uptime", "line", []netdataDim{
			num("uptime", "host.uptime_seconds")}},
		netdataChart{"system.load", "System load average", "load", "load", "system.load", "line", []netdataDim{
			pct("load1", "load.1"), pct("load5", "load.5"), pct("load15", "load.15"), pct("load5_per_core", "load.5_per_core")}},
		netdataChart{"system.ram", "System RAM", "MiB", "ram", "system.ram", "stacked", []netdataDim{
			num("free", "mem.available_bytes"), num("used", "mem.used_bytes"), num("cached", "mem.total_bytes"), pct("buffers", "mem.used_percent")}},
		netdataChart{"net.eth0", "Bandwidth", "kilobits/s", "eth0", "net.net", "area", []netdataDim{
			num("received", "net.rx_bytes_per_sec{iface=eth0}"), num("sent", "net.tx_bytes_per_sec{iface=eth0}")}},
		netdataChart{"system.net", "Physical network interfaces aggregated bandwidth", "kilobits/s", "network", "system.net", "area", []netdataDim{
			num("InOctets", "net.rx_bytes_per_sec"), num("OutOctets", "net.tx_bytes_per_sec")}},
		netdataChart{"mem.swap", "System swap", "MiB", "swap", "mem.swap", "stacked", []netdataDim{
			{"free", 1, func(v []float64) float64 { return swapTotal(v) - swapUsed(v) }},
			num("used", "swap.used_bytes"), pct("used_percent", "swap.used_percent")}},
	)
	points := 0
	for _, c := range cs {
		points += len(c.dims)
	}
	if points != len(hostMetrics) {
		panic(fmt.Sprintf("netdataCharts carry %d points a second, an agent's sample %d", points, len(hostMetrics)))
	}
	return cs
}()

// A netdataChild is one simulated Netdata child streaming to the parent.
type netdataChild struct {
	agent *simAgent // the values, as the vigil agent of the same index takes them
	name  string    // h0001
	conn  net.Conn
	buf   []byte
	last  time.Time   // the previous sample's time, for BEGIN's microseconds
	ready atomic.Bool // connected: conn is set
	sent  atomic.Int64
	err   atomic.Pointer[error]
}

// connect opens the child's stream: the STREAM request, the parent's
// answer, and every chart's definition.
func (c *netdataChild) connect(addr, key, guid string) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	q := fmt.Sprintf("key=%s&hostname=%s&registry_hostname=%s&machine_guid=%s&update_every=1&os=linux&timezone=Etc/UTC&abbrev_timezone=UTC&utc_offset=0&hops=1&ml_capable=0&ml_enabled=0&mc_version=0&tags=&ver=%d",
		key, c.name, c.name, guid, netdataStreamVersion)
	fmt.Fprintf(conn, "STREAM %s HTTP/1.1\r\nUser-Agent: netdata/v1.37.1\r\nAccept: */*\r\n\r\n", q)
	conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
	answer := make([]byte, 256)
	n, err := conn.Read(answer)
	if err != nil {
		conn.Close()
		return fmt.Errorf("the parent's answer: %w", err)
	}
	if want := "Hit me baby, push them over with the version=" + strconv.Itoa(netdataStreamVersion); string(answer[:n]) != want {
		conn.Close()
		return fmt.Errorf("the parent answered %q, want %q", answer[:n], want)
	}
	conn.SetReadDeadline(time.Time{})
	var b []byte
	for _, ch := range netdataCharts {
		b = fmt.Appendf(b, "CHART %s '' '%s' '%s' '%s' '%s' '%s' 1000 1 '' 'bench' ''\n", ch.id, ch.title, ch.units, ch.family, ch.context, ch.kind)
		for _, d := range ch.dims {
			b = fmt.Appendf(b, "DIMENSION %s '' absolute 1 %d ''\n", d.id, d.divisor)
		}
	}
	if _, err := conn.Write(b); err != nil {
		conn.Close()
		return err
	}
	c.conn = conn
	c.ready.Store(true)
	go io.Copy(io.Discard, conn) // what a parent may say back (nothing, at version 4)
	return nil
}

// sample sends one second's values: every chart in one write, as a
// child's sender thread sends a collection's buffer.
func (c *netdataChild) sample() {
	if !c.ready.Load() || c.err.Load() != nil {
		return
	}
	now := time.Now()
	vals := c.agent.values(now)
	b := c.buf[:0]
	for _, ch := range netdataCharts {
		b = append(b, "BEGIN "...)
		b = append(b, ch.id...)
		if !c.last.IsZero() {
			b = append(b, ' ')
			b = strconv.AppendInt(b, now.Sub(c.last).Microseconds(), 10)
		}
		b = append(b, '\n')
		for _, d := range ch.dims {
			b = append(b, "SET "...)
			b = append(b, d.id...)
			b = append(b, " = "...)
			b = strconv.AppendInt(b, int64(math.Round(d.value(vals)*float64(d.divisor))), 10)
			b = append(b, '\n')
		}
		b = append(b, "END\n"...)
	}
	c.buf, c.last = b, now
	c.conn.SetWriteDeadline(now.Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.err.Store(&err)
		return
	}
	c.sent.Add(1)
}

// netdataParent is a Netdata parent started for a run, in its folder.
type netdataParent struct {
	*proc
	base string // http://127.0.0.1:port
	key  string // the API key its children stream with
}

// startNetdataParent starts Debian's netdata as a parent that accepts
// children with one API key: dbengine, its default tiers, health on for
// every child as stream.conf ships it, and every collector of its own
// off. Its files and logs stay in dir.
func startNetdataParent(dir string, health bool) (*netdataParent, error) {
	bin, err := exec.LookPath("netdata")
	if err != nil {
		return nil, fmt.Errorf("the Netdata reference needs netdata on PATH (apt-get install netdata-core): %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, d := range []string{"etc", "cache", "lib", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	key := "b3e7c0de-0000-4000-8000-" + fmt.Sprintf("%012d", time.Now().UnixNano()%1e12)
	plugins := ""
	for _, p := range []string{"proc", "diskspace", "cgroups", "tc", "idlejitter", "checks", "apps", "python.d", "charts.d", "go.d",
		"fping", "ebpf", "timex", "perf", "slabinfo", "nfacct", "cups", "statsd", "netdata monitoring"} {
		plugins += "\t" + p + " = no\n"
	}
	conf := fmt.Sprintf(`[global]
	run as user = %s
	hostname = bench-parent
[db]
	mode = dbengine
	update every = 1
[directories]
	config = %[2]s/etc
	stock config = /usr/lib/netdata/conf.d
	cache = %[2]s/cache
	lib = %[2]s/lib
	log = %[2]s/log
	home = %[2]s/lib
[logs]
	debug = /dev/null
	error = %[2]s/log/error.log
	access = none
	health = %[2]s/log/health.log
[web]
	bind to = 127.0.0.1:%[3]d
[registry]
	enabled = no
[statsd]
	enabled = no
[plugins]
	enable running new plugins = no
%[4]s`, currentUser(), dir, port, plugins)
	childHealth := "auto" // as stream.conf ships: on while a child is connected
	if !health {
		childHealth = "no"
	}
	stream := fmt.Sprintf("[%s]\n\tenabled = yes\n\tdefault memory mode = dbengine\n\thealth enabled by default = %s\n\tallow from = *\n", key, childHealth)
	if err := os.WriteFile(filepath.Join(dir, "netdata.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "stream.conf"), []byte(stream), 0o600); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "log", "stdout.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-D", "-c", filepath.Join(dir, "netdata.conf"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	go func() { cmd.Wait(); out.Close() }()
	p := &netdataParent{proc: &proc{cmd: cmd, addr: fmt.Sprintf("127.0.0.1:%d", port)}, key: key}
	p.base = "http://" + p.addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := p.info(); err == nil {
			return p, nil
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("netdata did not answer on %s (its log: %s)", p.addr, filepath.Join(dir, "log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

// info is the parent's /api/v1/info: the hosts it holds.
func (p *netdataParent) info() (mirrored []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/api/v1/info", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Mirrored []string `json:"mirrored_hosts"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Mirrored, err
}

// stored counts the seconds from after to before (Unix seconds) for which
// the parent holds host's uptime, a value that differs every second.
func (p *netdataParent) stored(host string, after, before int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s/host/%s/api/v1/data?chart=system.uptime&after=%d&before=%d&points=%d&group=average&format=csv&options=seconds",
		p.base, host, after, before, before-after)
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", u, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		_, v, ok := strings.Cut(sc.Text(), ",")
		if _, err := strconv.ParseFloat(v, 64); ok && err == nil {
			n++
		}
	}
	return n, sc.Err()
}

// measureNetdata runs n simulated children into a Netdata parent and
// measures it as measureFleet measures a hub: its CPU and memory over the
// window, and afterwards how many of the window's seconds it stored for
// each child.
func measureNetdata(dir string, n int, warm, measure time.Duration, health bool) (fleetResult, error) {
	r := fleetResult{agents: n, netdata: true, netdataHealth: health, log: &hubLog{warnings: map[string]int{}}}
	run := filepath.Join(dir, fmt.Sprintf("netdata-%d", n))
	defer os.RemoveAll(run)
	parent, err := startNetdataParent(run, health)
	if err != nil {
		return r, err
	}
	defer parent.stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	// A 1.37 parent sets a new child's host up (its health checks read
	// from their files for each host) before it answers: the children
	// connect a few at a time, and it is given a second each. Each one
	// streams from when it is connected.
	children := make([]*netdataChild, n)
	for i := range children {
		a := newSimAgent(i, now)
		children[i] = &netdataChild{agent: a, name: strings.TrimPrefix(a.name, "host/")}
	}
	var late atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { everySecond(ctx, n, &late, func(i int) { children[i].sample() }) })
	defer func() { cancel(); wg.Wait() }()

	defer func() {
		for _, c := range children {
			if c.ready.Load() {
				c.conn.Close()
			}
		}
	}()
	var connectErr atomic.Pointer[error]
	var next atomic.Int64
	var connecting sync.WaitGroup
	for range 8 {
		connecting.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && connectErr.Load() == nil; i = int(next.Add(1)) - 1 {
				c := children[i]
				if err := c.connect(parent.addr, parent.key, fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)); err != nil {
					err = fmt.Errorf("child %s: %w", c.name, err)
					connectErr.Store(&err)
				}
			}
		})
	}
	connecting.Wait()
	if e := connectErr.Load(); e != nil {
		return r, *e
	}
	deadline := time.Now().Add(30*time.Second + time.Duration(n)*time.Second)
	for {
		hosts, err := parent.info()
		if err == nil && len(hosts) >= n+1 { // its own and every child
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("after %s the parent holds %d of %d children (%v)", time.Since(now).Round(time.Second), max(0, len(hosts)-1), n, err)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(warm)

	sent := func() []int64 {
		out := make([]int64, n)
		for i, c := range children {
			out[i] = c.sent.Load()
		}
		return out
	}
	snap := func() fleetSnapshot {
		s := fleetSnapshot{cpu: parent.cpuSeconds(), self: selfCPUSeconds(), machineBusy: machineBusySeconds(), late: late.Load(), at: time.Now()}
		s.reads, s.writes, s.switches = parent.syscalls()
		return s
	}
	s0, sent0 := snap(), sent()
	for time.Since(s0.at) < measure {
		time.Sleep(min(time.Second, measure-time.Since(s0.at)))
		r.peak = max(r.peak, parent.rssBytes())
	}
	s1, sent1 := snap(), sent()
	r.rss = parent.rssBytes()
	r.peak = max(r.peak, r.rss)
	r.between(s0, s1)
	for i, c := range children {
		r.published += int(sent1[i] - sent0[i])
		if e := c.err.Load(); e != nil {
			r.cut++ // the parent ended its stream
			if len(r.log.first) < 3 {
				r.log.first = append(r.log.first, fmt.Sprintf("child %s: %v", c.name, *e))
			}
		} else {
			r.connected++
		}
	}
	r.hubPublished = float64(r.published) / s1.at.Sub(s0.at).Seconds()
	r.perEvent(s0, s1, float64(r.published))
	if r.published > 0 {
		r.cpuPerPoint = (s1.cpu - s0.cpu) * 1e6 / float64(r.published*len(hostMetrics))
	}

	// The seconds wholly inside the window, once the parent has had two
	// seconds to take the last of them.
	time.Sleep(2 * time.Second)
	after, before := s0.at.Unix()+1, s1.at.Unix()-1
	r.storedSeconds = int(before-after) * n
	for _, c := range children {
		k, err := parent.stored(c.name, after, before)
		if err != nil {
			return r, err
		}
		r.stored += k
	}
	return r, nil
}
