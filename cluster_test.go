package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// switchProxy forwards each new connection to the target of the moment:
// a load balancer in front of the replicas.
type switchProxy struct {
	ln     net.Listener
	target atomic.Value // string
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln}
	p.target.Store(target)
	acceptEach(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", p.target.Load().(string))
		if err != nil {
			return
		}
		defer up.Close()
		go func() { io.Copy(up, c); up.Close() }()
		io.Copy(c, up)
	})
	return p
}

func (p *switchProxy) url() string { return "http://" + p.ln.Addr().String() }

// startReplicaProc runs a vigil process as a replica on NATS, sampling
// its host (named after the replica) five times a second, with more of
// the config file if given.
func startReplicaProc(t *testing.T, bin, natsURL, name string, more ...string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte("interval: 200ms\nhost:\n  name: "+name+"\n"+strings.Join(more, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startProc(t, bin, "--addr", addr, "--data", filepath.Join(dir, "data"), "--config", cfg,
		"--nats", natsURL, "--cluster-name", name)
	vigiltest.Eventually(t, 15*time.Second, name+" ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p, addr
}

// A client follows replica a through a load balancer; a is killed with
// kill -9; the client reconnects, through the balancer, to b with its last
// id and gets every event of the shared stream once, in order: ids one
// after the other, no reset, the same as a client that followed b all
// along.
func TestReplicaKilledClientResumesOnAnother(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	a, addrA := startReplicaProc(t, bin, n.URL, "rep-a")
	_, addrB := startReplicaProc(t, bin, n.URL, "rep-b")
	lb := newSwitchProxy(t, addrA)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onB := follow(ctx, "http://"+addrB+"/events", "")
	first := follow(ctx, lb.url()+"/events", "")
	vigiltest.Eventually(t, 10*time.Second, "events through the balancer", func() bool { return len(first.events()) >= 10 })

	a.cmd.Process.Kill() // kill -9
	a.cmd.Wait()
	<-first.done
	lb.target.Store(addrB)
	got := first.events()
	last := got[len(got)-1].Seq
	again := follow(ctx, lb.url()+"/events", strconv.FormatUint(last, 10))
	vigiltest.Eventually(t, 10*time.Second, "events from b", func() bool { return len(again.events()) >= 20 })
	cancel()
	<-again.done
	<-onB.done

	got = append(got, again.events()...)
	for i, ev := range got {
		if ev.Type == "reset" {
			t.Fatalf("event %d is a reset: the client's position was lost", i)
		}
		if i > 0 && ev.Seq != got[i-1].Seq+1 {
			t.Fatalf("event %d: id %d after %d; every id of the stream once, in order, was expected", i, ev.Seq, got[i-1].Seq)
		}
	}
	byB := map[uint64]string{}
	for _, ev := range onB.events() {
		byB[ev.Seq] = ev.Source
	}
	matched := 0
	for _, ev := range got {
		if src, ok := byB[ev.Seq]; ok {
			matched++
			if src != ev.Source {
				t.Fatalf("id %d is %s for the client and %s on b", ev.Seq, ev.Source, src)
			}
		}
	}
	if matched < 20 {
		t.Fatalf("only %d of the client's %d events were seen on b", matched, len(got))
	}
	sources := map[string]int{}
	for _, ev := range got {
		sources[ev.Source]++
	}
	if sources["host/rep-a"] == 0 || sources["host/rep-b"] == 0 {
		t.Fatalf("sources on the stream %v: want both replicas' hosts", sources)
	}
	// b's ring took a's samples from the stream: its series API lists them.
	resp, err := http.Get("http://" + addrB + "/api/v1/series")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"host/rep-a"`) {
		t.Fatalf("b's series do not include a's host: %.300s", body)
	}
}

// withRules is a replica's config with a short lease, the rules given
// (YAML list items) and one webhook receiver at receiver.
func withRules(receiver, rules string) string {
	return `cluster:
  lease_ttl: 2s
alerts:
  allow_networks: [127.0.0.0/8]
  rules:` + rules + `
  receivers:
    - name: ops
      url: ` + receiver + `/hook
      secret: ` + alerts.NewSecret() + `
`
}

// The replica that evaluates the rules is killed with kill -9 while an
// alert is pending: the other takes the alert lease and the alert fires
// exactly once, when its for has passed, and its webhook is delivered
// once.
func TestAlertLeaderKilledFiresOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	rc := vigiltest.NewReceiver(t, nil)
	rules := withRules(rc.URL, `
    - name: Up
      source: host/rep-b
      metric: host.uptime_seconds
      op: ">"
      threshold: 0
      for: 4s`)
	a, _ := startReplicaProc(t, bin, n.URL, "rep-a", rules)
	vigiltest.Eventually(t, 10*time.Second, "rep-a to evaluate", func() bool {
		return strings.Contains(a.logs.String(), "this replica holds the alert lease")
	})
	b, addrB := startReplicaProc(t, bin, n.URL, "rep-b", rules)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onB := follow(ctx, "http://"+addrB+"/events?type=alert", "")
	count := func(kind string) int {
		k := 0
		for _, ev := range onB.events() {
			if ev.Transition == kind {
				k++
			}
		}
		return k
	}
	vigiltest.Eventually(t, 15*time.Second, "the alert pending", func() bool { return count("pending") == 1 })

	a.cmd.Process.Kill() // kill -9, the lease not given up
	a.cmd.Wait()
	vigiltest.Eventually(t, 15*time.Second, "the alert firing, from rep-b", func() bool { return count("firing") == 1 })
	vigiltest.Eventually(t, 15*time.Second, "the firing webhook", func() bool { return len(rc.Requests()) >= 1 })
	if !strings.Contains(b.logs.String(), "this replica holds the alert lease") {
		t.Fatalf("rep-b did not take the lease:\n%s", b.logs)
	}
	cancel()
	<-onB.done
	if p, f := count("pending"), count("firing"); p != 1 || f != 1 {
		t.Fatalf("on the stream: pending %d times, firing %d times; want once each", p, f)
	}
	if got := rc.Requests(); len(got) != 1 || !strings.Contains(string(got[0].Body), `"type":"alert.firing"`) {
		t.Fatalf("receiver got %d requests, want one alert.firing", len(got))
	}
}

// An agent the replicas cannot dial pushes into NATS (cluster.role:
// agent): its host appears on a replica, in its stream and its ring, while
// the agent serves its own stream with its own ids.
func TestAgentPushesIntoNATS(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	_, addrR := startReplicaProc(t, bin, n.URL, "rep-a")
	_, addrE := startReplicaProc(t, bin, n.URL, "edge-1", "cluster:\n  role: agent\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onR := follow(ctx, "http://"+addrR+"/events?source=host/edge-1", "")
	onE := follow(ctx, "http://"+addrE+"/events?source=host/edge-1", "")
	vigiltest.Eventually(t, 15*time.Second, "edge-1's samples on the replica and the agent", func() bool {
		return len(onR.events()) >= 5 && len(onE.events()) >= 5
	})
	cancel()
	<-onR.done
	<-onE.done
	r, e := onR.events(), onE.events()
	if r[0].Seq == e[0].Seq {
		t.Fatalf("the replica's ids are the agent's (%d): the agent numbers its own stream, the replica the shared one", r[0].Seq)
	}
	resp, err := http.Get("http://" + addrR + "/api/v1/series")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"host/edge-1"`) {
		t.Fatalf("the replica's series do not include the agent's host: %.300s", body)
	}
}

// The replica that evaluates is cut off from NATS after an alert fired:
// the other takes the lease, and no webhook is sent twice — not by the
// new holder, which read the alert's state, nor by the one cut off, which
// stopped evaluating; an alert that goes pending before the cut fires
// once, from the new holder. Healed, the first replica does not take the
// lease back.
func TestReplicaCutOffFromNATSSendsNoDuplicate(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	rc := vigiltest.NewReceiver(t, nil)
	rules := withRules(rc.URL, `
    - name: Now
      source: host/rep-b
      metric: host.uptime_seconds
      op: ">"
      threshold: 0
    - name: Later
      source: host/rep-b
      metric: host.uptime_seconds
      op: ">"
      threshold: 0
      for: 8s`)
	proxy := vigiltest.NewCutProxy(t, strings.TrimPrefix(n.URL, "nats://"))
	a, _ := startReplicaProc(t, bin, "nats://"+proxy.Addr(), "rep-a", rules)
	vigiltest.Eventually(t, 10*time.Second, "rep-a to evaluate", func() bool {
		return strings.Contains(a.logs.String(), "this replica holds the alert lease")
	})
	b, addrB := startReplicaProc(t, bin, n.URL, "rep-b", rules)
	firing := func(rule string) int {
		k := 0
		for _, r := range rc.Requests() {
			if strings.Contains(string(r.Body), `"type":"alert.firing"`) && strings.Contains(string(r.Body), `"rule":"`+rule+`"`) {
				k++
			}
		}
		return k
	}
	vigiltest.Eventually(t, 15*time.Second, "Now firing, from rep-a", func() bool { return firing("Now") == 1 })
	// Cut once the webhook is done in the shared outbox: acknowledged,
	// then recorded. (A replica cut off between the receiver's answer and
	// its acknowledgement leaves the webhook to another, which sends it
	// again with the same webhook-id: at least once.)
	vigiltest.Eventually(t, 10*time.Second, "Now's webhook recorded as delivered", func() bool {
		var out struct{ Deliveries []alerts.Delivery }
		getJSON(t, "http://"+addrB+"/api/v1/receivers/cfg-ops/deliveries", &out)
		return len(out.Deliveries) == 1 && out.Deliveries[0].State == alerts.DeliveryDelivered
	})

	proxy.Cut()
	vigiltest.Eventually(t, 15*time.Second, "rep-b to take the lease", func() bool {
		return strings.Contains(b.logs.String(), "this replica holds the alert lease")
	})
	defer func() {
		if t.Failed() {
			t.Logf("B:\n%s\nA:\n%s", b.logs, a.logs)
		}
	}()
	vigiltest.Eventually(t, 20*time.Second, "Later firing, from rep-b", func() bool { return firing("Later") == 1 })
	proxy.Heal()
	if got := len(rc.Requests()); got != 2 || firing("Now") != 1 {
		t.Fatalf("receiver got %d requests (Now firing %d times); want Now and Later once each", got, firing("Now"))
	}
	if strings.Count(a.logs.String(), "evaluating the alert rules: this replica holds the alert lease") != 1 {
		t.Fatalf("rep-a took the lease again:\n%s", a.logs)
	}
}

// counter reads one counter of a vigil's /metrics, 0 when absent.
func counter(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Every replica has the same services configured; the one that holds the
// alert lease probes them, and the others show its samples. When it dies,
// the next holder probes.
func TestServicesAreProbedByTheLeaseHolder(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	target := vigiltest.NewReceiver(t, nil) // answers 200 to every probe
	cfg := "cluster:\n  lease_ttl: 2s\nalerts:\n  allow_networks: [127.0.0.0/8]\nservices:\n  - name: api\n    probe:\n      url: " + target.URL + "/health\n"
	a, addrA := startReplicaProc(t, bin, n.URL, "rep-a", cfg)
	vigiltest.Eventually(t, 10*time.Second, "rep-a to hold the lease", func() bool {
		return strings.Contains(a.logs.String(), "sampling the services")
	})
	_, addrB := startReplicaProc(t, bin, n.URL, "rep-b", cfg)
	const probes = `vigil_samples_collected_total{source="service/api"}`
	start := counter(t, addrA, probes)
	vigiltest.Eventually(t, 10*time.Second, "rep-a probing", func() bool { return counter(t, addrA, probes) >= start+5 })
	if got := counter(t, addrB, probes); got != 0 {
		t.Fatalf("rep-b probed the service %v times while rep-a held the lease", got)
	}
	vigiltest.Eventually(t, 10*time.Second, "rep-a's samples of service/api on rep-b", func() bool {
		resp, err := http.Get("http://" + addrB + "/api/v1/series")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"service/api"`)
	})

	a.cmd.Process.Kill()
	a.cmd.Wait()
	vigiltest.Eventually(t, 15*time.Second, "rep-b probing once it holds the lease", func() bool { return counter(t, addrB, probes) >= 3 })
}

// An agent that pushes into NATS is a source upstream/<agent> on the
// replicas: up while it pushes; killed, it is down and AgentDown fires.
func TestPushingAgentDownFires(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	_, addrR := startReplicaProc(t, bin, n.URL, "rep-a", "cluster:\n  agent_idle: 1s\nalerts:\n  agent_down_for: 1s\n")
	e, _ := startReplicaProc(t, bin, n.URL, "edge-1", "cluster:\n  role: agent\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onR := follow(ctx, "http://"+addrR+"/events?source=upstream/edge-1", "")
	vigiltest.Eventually(t, 15*time.Second, "upstream/edge-1 up on the replica", func() bool {
		for _, ev := range onR.events() {
			if ev.Type == "sample" {
				return true
			}
		}
		return false
	})
	e.cmd.Process.Kill()
	e.cmd.Wait()
	vigiltest.Eventually(t, 20*time.Second, "AgentDown firing for edge-1", func() bool {
		for _, ev := range onR.events() {
			if ev.Type == "alert" && ev.Transition == "firing" {
				return true
			}
		}
		return false
	})
}

// Replicas of a hub: every replica has the same upstreams; the lease
// holder follows them and saves where it stands in NATS. Killed, the next
// holder resumes each agent there: every sample the agent published
// between the first and the last the replicas passed on is on the stream
// once — none lost in the takeover, none twice (what the next holder
// published again carries the agent's id, which the stream keeps once).
func TestHubReplicasFollowAgentsOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	agentDir := t.TempDir()
	agentCfg := filepath.Join(agentDir, "vigil.yaml")
	os.WriteFile(agentCfg, []byte("interval: 200ms\nhost:\n  name: agent-1\n"), 0o600)
	agentAddr := freeAddr(t)
	startProc(t, bin, "--addr", agentAddr, "--data", filepath.Join(agentDir, "data"), "--config", agentCfg)
	vigiltest.Eventually(t, 15*time.Second, "the agent ready", func() bool {
		resp, err := http.Get("http://" + agentAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	truth := follow(ctx, "http://"+agentAddr+"/events?source=host/agent-1", "")

	ups := "cluster:\n  lease_ttl: 2s\nupstreams:\n  - url: http://" + agentAddr + "\n    name: agent-1\n"
	a, _ := startReplicaProc(t, bin, n.URL, "rep-a", ups)
	vigiltest.Eventually(t, 15*time.Second, "rep-a to follow the agent", func() bool {
		return strings.Contains(a.logs.String(), "following the upstreams")
	})
	b, addrB := startReplicaProc(t, bin, n.URL, "rep-b", ups)
	onB := follow(ctx, "http://"+addrB+"/events?source=host/agent-1", "")
	samples := func() []streamEvent {
		var out []streamEvent
		for _, ev := range onB.events() {
			if ev.Type == "sample" && ev.Upstream != nil {
				out = append(out, ev)
			}
		}
		return out
	}
	vigiltest.Eventually(t, 15*time.Second, "the agent's samples through rep-a", func() bool { return len(samples()) >= 5 })
	if strings.Contains(b.logs.String(), "following the upstreams") {
		t.Fatal("rep-b follows the upstreams while rep-a holds the lease")
	}
	// rep-b's fleet is rep-a's, as rep-a shared it.
	vigiltest.Eventually(t, 10*time.Second, "agent-1 connected in rep-b's /api/v1/upstreams", func() bool {
		resp, err := http.Get("http://" + addrB + "/api/v1/upstreams")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"name":"agent-1"`) && strings.Contains(string(body), `"connected":true`)
	})

	a.cmd.Process.Kill()
	a.cmd.Wait()
	vigiltest.Eventually(t, 15*time.Second, "rep-b to follow the agent", func() bool {
		return strings.Contains(b.logs.String(), "following the upstreams")
	})
	before := len(samples())
	vigiltest.Eventually(t, 15*time.Second, "the agent's samples through rep-b", func() bool { return len(samples()) >= before+10 })
	cancel()
	<-onB.done
	<-truth.done

	got := samples()
	seen := map[uint64]int{}
	for _, ev := range got {
		seen[ev.Upstream.Seq]++
	}
	lo, hi := got[0].Upstream.Seq, got[len(got)-1].Upstream.Seq
	published := 0
	for _, ev := range truth.events() {
		if ev.Type != "sample" || ev.Seq < lo || ev.Seq > hi {
			continue
		}
		published++
		if seen[ev.Seq] != 1 {
			t.Fatalf("the agent's sample %d is on the replicas' stream %d times (want once); %d of the agent's samples in %d..%d", ev.Seq, seen[ev.Seq], published, lo, hi)
		}
	}
	if published != len(got) {
		t.Fatalf("the replicas passed on %d samples, the agent published %d in %d..%d", len(got), published, lo, hi)
	}
}

// Webhooks go through the outbox the replicas share in NATS: a webhook
// whose first attempt failed is retried by the other replica after the
// one that tried it is killed with kill -9, and delivered once; the
// receivers API answers the same on both replicas before that, and a
// receiver subscribed through the one left is verified.
func TestWebhookRetriedByTheReplicaThatIsUp(t *testing.T) {
	n := vigiltest.StartNATS(t)
	bin := buildVigil(t)
	var up atomic.Bool
	rc := vigiltest.NewReceiver(t, func(w http.ResponseWriter, _ vigiltest.Request, _ int) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	rules := withRules(rc.URL, `
    - name: Now
      source: host/rep-b
      metric: host.uptime_seconds
      op: ">"
      threshold: 0`)
	a, addrA := startReplicaProc(t, bin, n.URL, "rep-a", rules)
	vigiltest.Eventually(t, 10*time.Second, "rep-a to evaluate", func() bool {
		return strings.Contains(a.logs.String(), "this replica holds the alert lease")
	})
	_, addrB := startReplicaProc(t, bin, n.URL, "rep-b", rules)
	deliveries := func(addr string) []alerts.Delivery {
		var out struct{ Deliveries []alerts.Delivery }
		getJSON(t, "http://"+addr+"/api/v1/receivers/cfg-ops/deliveries", &out)
		return out.Deliveries
	}
	vigiltest.Eventually(t, 20*time.Second, "the first attempt failed, as rep-b sees it", func() bool {
		ds := deliveries(addrB)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryQueued && len(ds[0].Attempts) == 1
	})
	if got := deliveries(addrA); len(got) != 1 || len(got[0].Attempts) != 1 {
		t.Fatalf("rep-a answers %+v", got)
	}
	a.cmd.Process.Kill() // kill -9
	a.cmd.Wait()
	up.Store(true)
	vigiltest.Eventually(t, 20*time.Second, "the webhook delivered, by rep-b", func() bool {
		ds := deliveries(addrB)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryDelivered && len(ds[0].Attempts) == 2
	})
	got := rc.Requests()
	if len(got) != 2 || got[0].Header.Get("webhook-id") != got[1].Header.Get("webhook-id") {
		t.Fatalf("receiver got %d requests; want the failed attempt and the retry, with one webhook-id", len(got))
	}

	// A receiver subscribed through rep-b: verified by the challenge,
	// and listed the same way.
	echo := vigiltest.NewReceiver(t, func(w http.ResponseWriter, req vigiltest.Request, _ int) {
		var ev struct{ Data struct{ Challenge string } }
		json.Unmarshal(req.Body, &ev)
		json.NewEncoder(w).Encode(map[string]string{"challenge": ev.Data.Challenge})
	})
	resp, err := http.Post("http://"+addrB+"/api/v1/receivers", "application/json", strings.NewReader(`{"url":"`+echo.URL+`/in"}`))
	if err != nil {
		t.Fatal(err)
	}
	var made alerts.Receiver
	json.NewDecoder(resp.Body).Decode(&made)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || made.ID == "" {
		t.Fatalf("create receiver: %s", resp.Status)
	}
	vigiltest.Eventually(t, 10*time.Second, "the new receiver active", func() bool {
		var r alerts.Receiver
		getJSON(t, "http://"+addrB+"/api/v1/receivers/"+made.ID, &r)
		return r.Status == alerts.ReceiverActive
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
