package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"vigil/collector"
	"vigil/internal/vigiltest"
)

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a vigil process.
type proc struct {
	cmd  *exec.Cmd
	logs *vigiltest.Buffer
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{logs: &vigiltest.Buffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// stop ends the process with SIGTERM and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("vigil did not stop on SIGTERM\n%s", p.logs)
	}
}

var firstIDRe = regexp.MustCompile(`first_event_id=(\d+)`)

// firstID is the first event id of the process's run, from its log.
func (p *proc) firstID(t *testing.T) uint64 {
	t.Helper()
	var id uint64
	vigiltest.Eventually(t, 10*time.Second, "vigil listening", func() bool {
		m := firstIDRe.FindStringSubmatch(p.logs.String())
		if m != nil {
			id, _ = strconv.ParseUint(m[1], 10, 64)
		}
		return m != nil
	})
	return id
}

// flakyProxy forwards connections to target and cuts each after a random
// 100 ms to 1 s: a network that keeps dropping the hub's stream.
func flakyProxy(t *testing.T, target string) (addr string, cuts func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	acceptEach(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(up, c)
		go io.Copy(c, up)
		time.Sleep(100*time.Millisecond + rand.N(900*time.Millisecond))
		mu.Lock()
		n++
		mu.Unlock()
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// acceptEach runs handle on every connection ln accepts, each on its own
// goroutine and closed after, until the test ends.
func acceptEach(t *testing.T, ln net.Listener, handle func(c net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// streamEvent is what the fleet test reads of an event.
type streamEvent struct {
	Seq        uint64 `json:"seq"`
	Type       string `json:"type"`
	Source     string `json:"source"`
	Transition string `json:"transition"` // an alert's
	Upstream   *struct {
		Name string `json:"name"`
		Seq  uint64 `json:"seq"`
	} `json:"upstream"`
	Gap *struct {
		After, Resumed uint64
	} `json:"gap"`
}

// record follows url from lastEventID ("" now) until the stream ends or
// ctx is done, and returns what came.
type record struct {
	mu   sync.Mutex
	evs  []streamEvent
	done chan struct{}
}

func follow(ctx context.Context, url, lastEventID string) *record {
	r := &record{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				return
			}
			var e streamEvent
			if json.Unmarshal([]byte(ev.Data), &e) == nil && e.Type != "" {
				r.mu.Lock()
				r.evs = append(r.evs, e)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *record) events() []streamEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

// TestFleetMissesNothing: a hub follows three agent processes: a1
// directly, a2 through a proxy that cuts the connection every second or
// so, a3 directly — a3 is killed and started again, and then the hub
// itself is stopped and started again. Every sample of every agent that
// was published while the hub followed it reaches the hub's stream once,
// in order per agent — through the cuts and across the hub's restart — or
// lies behind a gap the hub announced for that agent (a3's restart: the
// new run cannot replay the old run's ids).
func TestFleetMissesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs four vigils")
	}
	bin := buildVigil(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	agents := map[string]string{"a1": freeAddr(t), "a2": freeAddr(t), "a3": freeAddr(t)}
	startAgent := func(name string) *proc {
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte("interval: 200ms\nhost: {name: "+name+"}\nalerts: {rules: []}\n"), 0o600)
		p := startProc(t, bin, "--addr", agents[name], "--data", filepath.Join(dir, name), "--config", cfg)
		p.firstID(t)
		return p
	}
	// What each agent published, as its own stream says.
	own := map[string][]*record{}
	watch := func(name string) {
		own[name] = append(own[name], follow(ctx, "http://"+agents[name]+"/events?type=sample&source=host/*", ""))
	}
	procs := map[string]*proc{}
	for _, name := range []string{"a1", "a2", "a3"} {
		procs[name] = startAgent(name)
		watch(name)
	}
	proxy, cuts := flakyProxy(t, agents["a2"])

	hubAddr := freeAddr(t)
	hubCfg := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hubCfg, []byte(fmt.Sprintf(`interval: 500ms
host: {enabled: false}
alerts: {rules: []}
upstreams:
  - {url: "http://%s", name: a1, labels: {role: web}}
  - {url: "http://%s", name: a2, labels: {role: db}}
  - {url: "http://%s", name: a3}
`, agents["a1"], proxy, agents["a3"])), 0o600)
	startHub := func() (*proc, *record) {
		p := startProc(t, bin, "--addr", hubAddr, "--data", filepath.Join(dir, "hub"), "--config", hubCfg)
		// From the start of the run: the first id less one.
		return p, follow(ctx, "http://"+hubAddr+"/events?type=sample,source", strconv.FormatUint(p.firstID(t)-1, 10))
	}
	hub, hubRec := startHub()
	var hubRecs []*record
	hubRecs = append(hubRecs, hubRec)
	fromHub := func(name string) int {
		n := 0
		for _, r := range hubRecs {
			for _, e := range r.events() {
				if e.Type == "sample" && e.Upstream != nil && e.Upstream.Name == name {
					n++
				}
			}
		}
		return n
	}
	vigiltest.Eventually(t, 20*time.Second, "samples of all three agents on the hub", func() bool {
		return fromHub("a1") > 5 && fromHub("a2") > 5 && fromHub("a3") > 5
	})

	// a3 dies and comes back: a new run, with ids the old one never had.
	procs["a3"].cmd.Process.Kill()
	procs["a3"].cmd.Wait()
	before := fromHub("a3")
	time.Sleep(time.Second) // a3 is down a while: the hub must notice and wait
	procs["a3"] = startAgent("a3")
	watch("a3")
	vigiltest.Eventually(t, 30*time.Second, "a3's new run on the hub", func() bool { return fromHub("a3") > before+10 })

	// The hub stops and starts again: it resumes each agent where it was.
	hub.stop(t)
	<-hubRec.done
	time.Sleep(time.Second) // the agents go on publishing meanwhile
	hub, hubRec = startHub()
	hubRecs = append(hubRecs, hubRec)
	counts := map[string]int{"a1": fromHub("a1"), "a2": fromHub("a2"), "a3": fromHub("a3")}
	vigiltest.Eventually(t, 30*time.Second, "every agent again on the restarted hub", func() bool {
		return fromHub("a1") > counts["a1"]+10 && fromHub("a2") > counts["a2"]+10 && fromHub("a3") > counts["a3"]+10
	})
	if cuts() < 3 {
		t.Fatalf("the proxy cut a2's stream %d times: too few to test anything", cuts())
	}
	hub.stop(t)
	for _, p := range procs {
		p.stop(t)
	}
	cancel()

	for name, wantGaps := range map[string]bool{"a1": false, "a2": false, "a3": true} {
		if gaps := checkAgent(t, name, own[name], hubRecs); (gaps > 0) != wantGaps {
			t.Errorf("%s: %d gaps announced", name, gaps)
		}
	}
}

// checkAgent compares what the hub republished of one agent with what the
// agent's own stream had, over the time the hub was following it.
func checkAgent(t *testing.T, name string, own []*record, hubRecs []*record) (gaps int) {
	t.Helper()
	var got []uint64 // the agent's ids, as the hub republished them, in order
	type gap struct{ after, resumed uint64 }
	var gapList []gap
	for _, r := range hubRecs {
		for _, e := range r.events() {
			switch {
			case e.Type == "sample" && e.Upstream != nil && e.Upstream.Name == name:
				got = append(got, e.Upstream.Seq)
			case e.Type == "source" && e.Source == "upstream/"+name && e.Gap != nil:
				gapList = append(gapList, gap{e.Gap.After, e.Gap.Resumed})
			}
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("%s: the hub republished %d after %d: out of order or twice", name, got[i], got[i-1])
		}
	}
	if len(got) == 0 {
		t.Fatalf("%s: nothing on the hub", name)
	}
	inGap := func(id uint64) bool {
		return slices.ContainsFunc(gapList, func(g gap) bool { return id > g.after && id <= g.resumed })
	}
	have := map[uint64]bool{}
	for _, id := range got {
		have[id] = true
	}
	missing, checked := 0, 0
	for _, r := range own {
		for _, e := range r.events() {
			if e.Seq < got[0] || e.Seq > got[len(got)-1] {
				continue // before the hub first followed, or after it last did
			}
			checked++
			if !have[e.Seq] && !inGap(e.Seq) {
				missing++
				if missing <= 5 {
					t.Errorf("%s: sample %d never reached the hub, and no gap covers it (gaps %v)", name, e.Seq, gapList)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("%s: only %d samples to check", name, checked)
	}
	if missing > 0 {
		t.Fatalf("%s: %d of %d samples missing", name, missing, checked)
	}
	t.Logf("%s: %d samples checked, %d on the hub, gaps %v", name, checked, len(got), gapList)
	return len(gapList)
}

// TestHubFileTokensAndAgentDown: a hub finds its agents in a file_sd
// file, reads it again when it changes, and reaches agents that need a
// read token with the one in upstream_defaults. An agent that goes away
// raises AgentDown, with the file's labels on it; an agent taken out of
// the file is followed no more.
func TestHubFileTokensAndAgentDown(t *testing.T) {
	const token = "read-token-0123456789"
	dir := t.TempDir()
	agentCfg := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		os.WriteFile(p, []byte("interval: 200ms\nhost: {name: "+name+"}\nalerts: {rules: []}\nauth: {read_tokens: ["+token+"]}\n"), 0o600)
		return p
	}
	b1, _ := startVigil(t, "--data", filepath.Join(dir, "b1"), "--config", agentCfg("b1"))
	b2, stopB2 := startVigil(t, "--data", filepath.Join(dir, "b2"), "--config", agentCfg("b2"))
	if resp, err := http.Get(b1 + "/events"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("an agent with read tokens answers a stream without one: %v %v", resp, err)
	}

	targets := filepath.Join(dir, "agents.json")
	writeTargets := func(urls ...string) {
		b, _ := json.Marshal([]map[string]any{{"targets": urls, "labels": map[string]string{"dc": "fra"}}})
		os.WriteFile(targets+".tmp", b, 0o600)
		os.Rename(targets+".tmp", targets) // as provisioning tools do
	}
	writeTargets(b1)
	hubCfg := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hubCfg, []byte(fmt.Sprintf(`interval: 200ms
host: {enabled: false}
upstreams_file: %s
upstream_defaults: {token: %s}
alerts: {agent_down_for: 1s}
`, targets, token)), 0o600)
	hub, _ := startVigil(t, "--data", filepath.Join(dir, "hub"), "--config", hubCfg)
	upstreams := func() map[string]bool {
		var snap struct {
			Events []struct {
				Source  string
				Metrics map[string]float64
			}
		}
		getJSONInto(t, hub+"/api/v1/snapshot", &snap)
		out := map[string]bool{}
		for _, e := range snap.Events {
			if v, ok := e.Metrics["upstream.up"]; ok {
				out[e.Source] = v == 1
			}
		}
		return out
	}
	name1, name2 := "upstream/"+b1[len("http://"):], "upstream/"+b2[len("http://"):] // host:port
	vigiltest.Eventually(t, 20*time.Second, "the hub reaches b1 with the token", func() bool { return upstreams()[name1] })

	writeTargets(b1, b2)
	vigiltest.Eventually(t, 30*time.Second, "the hub follows b2 once the file lists it", func() bool {
		u := upstreams()
		return u[name1] && u[name2]
	})

	stopB2()
	alertsNow := func() []struct {
		Rule, Source, State string
		Labels              map[string]string
	} {
		var body struct {
			Alerts []struct {
				Rule, Source, State string
				Labels              map[string]string
			}
		}
		getJSONInto(t, hub+"/api/v1/alerts", &body)
		return body.Alerts
	}
	vigiltest.Eventually(t, 30*time.Second, "AgentDown fires for b2, with the file's labels", func() bool {
		for _, a := range alertsNow() {
			if a.Rule == "AgentDown" && a.Source == name2 && a.State == "firing" && a.Labels["dc"] == "fra" {
				return true
			}
		}
		return false
	})

	writeTargets(b1) // b2 is taken out of the file
	vigiltest.Eventually(t, 30*time.Second, "the hub no longer follows b2", func() bool {
		u := upstreams()
		_, still := u[name2]
		return u[name1] && !still
	})
}

// TestHubReachesTLSAgents: an agent serving HTTPS with its own CA's
// certificate is followed with the CA file and the name its certificate
// carries; without the CA, the upstream says why it cannot connect.
func TestHubReachesTLSAgents(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	agent, _ := startVigil(t, "--data", filepath.Join(dir, "agent"), "--tls-cert", cert, "--tls-key", key, "--interval", "200ms")
	other, _ := startVigil(t, "--data", filepath.Join(dir, "other"), "--tls-cert", cert, "--tls-key", key, "--interval", "200ms")
	https := func(u string) string { return strings.Replace(u, "http://", "https://", 1) }
	hubCfg := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hubCfg, []byte(fmt.Sprintf(`host: {enabled: false}
upstreams:
  - {url: %q, name: trusted, tls: {ca_file: %q, server_name: agent.internal}}
  - {url: %q, name: untrusted}
`, https(agent), cert, https(other))), 0o600)
	hub, _ := startVigil(t, "--data", filepath.Join(dir, "hub"), "--config", hubCfg)
	vigiltest.Eventually(t, 20*time.Second, "the hub follows the agent over TLS, and says why it cannot without its CA", func() bool {
		resp, err := http.Get(hub + "/api/v1/snapshot?source=upstream/*")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var snap struct {
			Events []struct {
				Source  string
				Type    string
				State   string
				Error   string
				Metrics map[string]float64
			}
		}
		json.NewDecoder(resp.Body).Decode(&snap)
		ok := map[string]bool{}
		for _, e := range snap.Events {
			switch {
			case e.Source == "upstream/trusted" && e.Metrics["upstream.up"] == 1:
				ok["trusted"] = true
			case e.Source == "upstream/untrusted" && e.Type == "source" && strings.Contains(e.Error, "x509: ") && !strings.Contains(e.Error, "redirected"):
				ok["untrusted"] = true
			}
		}
		return ok["trusted"] && ok["untrusted"]
	})
}

// TestHubListsItsUpstreams runs an agent and a hub that follows it (and an
// address nothing answers on): /api/v1/upstreams on the hub lists both,
// the agent's with its host and labels; an agent, not a hub, lists none.
func TestHubListsItsUpstreams(t *testing.T) {
	dir := t.TempDir()
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte("host: {name: web-1}\n"), 0o644)
	agent, _ := startVigil(t, "--data", t.TempDir(), "--config", agentCfg)
	hubCfg := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hubCfg, []byte("upstreams:\n  - {url: '"+agent+"', name: web-1, labels: {role: web}}\n  - {url: 'http://127.0.0.1:9', name: nowhere}\n"), 0o644)
	hub, _ := startVigil(t, "--data", t.TempDir(), "--config", hubCfg)

	var out struct {
		Upstreams []collector.UpstreamStatus `json:"upstreams"`
	}
	vigiltest.Eventually(t, 10*time.Second, "the hub follows the agent and sees its host", func() bool {
		getJSONInto(t, hub+"/api/v1/upstreams", &out)
		return len(out.Upstreams) == 2 && out.Upstreams[1].Connected && len(out.Upstreams[1].Hosts) > 0 && out.Upstreams[0].Error != ""
	})
	if u := out.Upstreams[1]; u.Name != "web-1" || u.Labels["role"] != "web" || u.Hosts[0] != "host/web-1" || u.Position == 0 {
		t.Errorf("the agent's upstream: %+v", u)
	}
	if u := out.Upstreams[0]; u.Name != "nowhere" || u.Connected {
		t.Errorf("the unreachable upstream: %+v", u)
	}
	getJSONInto(t, agent+"/api/v1/upstreams", &out)
	if out.Upstreams == nil || len(out.Upstreams) != 0 {
		t.Errorf("an agent lists upstreams: %+v", out.Upstreams)
	}
}
