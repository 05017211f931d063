package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"
	"gopkg.in/yaml.v3"

	"vigil/internal/vigiltest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// openStream opens an event stream and returns its events.
func openStream(t *testing.T, url string, header http.Header) <-chan sse.Event {
	t.Helper()
	resp, ch := vigiltest.SSE(t, url, header)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return ch
}

// startVigil runs the whole app in process on 127.0.0.1:0 and returns its
// base URL and a function that stops it and reports how long it took.
func startVigil(t *testing.T, args ...string) (string, func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	logs := &vigiltest.Buffer{}
	go func() {
		done <- run(ctx, env{
			args:      append([]string{"--addr", "127.0.0.1:0"}, args...),
			getenv:    func(string) string { return "" },
			stdout:    io.Discard,
			stderr:    logs,
			listening: func(a string) { addr <- a },
		})
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("vigil exited: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		t.Fatal("vigil did not start")
	}
	stopped := false
	stop := func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vigil: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("vigil did not stop\n%s", logs)
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	return base, stop
}

type sampleData struct {
	Seq     uint64             `json:"seq"`
	Type    string             `json:"type"`
	TS      time.Time          `json:"ts"`
	Source  string             `json:"source"`
	Metrics map[string]float64 `json:"metrics"`
}

func TestWholeAppStreamsHostSamples(t *testing.T) {
	data := t.TempDir()
	base, stop := startVigil(t, "--data", data)
	ch := openStream(t, base+"/events?source=host/*", nil)

	var first sampleData
	ev := vigiltest.Next(t, ch, "sample", 3*time.Second)
	if err := json.Unmarshal([]byte(ev.Data), &first); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.Source, "host/") || ev.LastEventID != strconv.FormatUint(first.Seq, 10) {
		t.Fatalf("first sample %+v, id %s", first, ev.LastEventID)
	}
	for _, k := range []string{"cpu.percent", "load.1", "mem.used_percent", "mem.available_bytes", "swap.used_percent",
		"disk.read_bytes_per_sec", "host.uptime_seconds", "host.procs"} {
		if _, ok := first.Metrics[k]; !ok {
			t.Errorf("first sample lacks %s", k)
		}
	}
	var second sampleData
	json.Unmarshal([]byte(vigiltest.Next(t, ch, "sample", 3*time.Second).Data), &second)
	if gap := second.TS.Sub(first.TS); second.Seq <= first.Seq || gap < 900*time.Millisecond || gap > 1100*time.Millisecond {
		t.Fatalf("second sample seq %d after %d, %s later; want about a second", second.Seq, first.Seq, gap)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, `data-testid="host-panel" `) && !strings.Contains(body, `data-source="`+first.Source+`"`) {
		t.Errorf("GET /: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz %d after samples flowed", code)
	}
	if code, body := get("/api/v1/series/" + first.Source + "/cpu.percent?window=1m"); code != 200 || !strings.Contains(body, `"points":[[`) {
		t.Errorf("series: %d %s", code, body)
	}
	if code, body := get("/api/v1/rules"); code != 200 || !strings.Contains(body, `"name":"HostHighCPU"`) {
		t.Errorf("default rules: %d %s", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{`vigil_samples_collected_total{source="` + first.Source + `"}`, `vigil_collect_duration_seconds_bucket{source="`,
		`vigil_collect_errors_total{source="`, "vigil_subscribers 1", `vigil_events_published_total{type="sample"}`, "vigil_subscribers_dropped_total"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Shut down with the stream still open: it must not hold vigil up.
	if took := stop(); took > 5*time.Second {
		t.Fatalf("shutdown took %s with an open stream", took)
	}
	for range ch { // the stream ends
	}

	// A new run with the same data directory: ids keep increasing, and the
	// old run's id gets a reset rather than a silent gap.
	base2, _ := startVigil(t, "--data", data)
	old := strconv.FormatUint(second.Seq, 10)
	ch2 := openStream(t, base2+"/events", http.Header{"Last-Event-Id": {old}})
	reset := vigiltest.Next(t, ch2, "reset", 3*time.Second)
	var rb struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal([]byte(reset.Data), &rb)
	resetID, _ := strconv.ParseUint(reset.LastEventID, 10, 64)
	if rb.Reason != "id from another run" || resetID <= second.Seq {
		t.Fatalf("reset %+v (reason %q)", reset, rb.Reason)
	}
	var third sampleData
	json.Unmarshal([]byte(vigiltest.Next(t, ch2, "sample", 3*time.Second).Data), &third)
	if third.Seq <= second.Seq {
		t.Fatalf("id %d after restart is not above %d", third.Seq, second.Seq)
	}
}

// TestSIGTERMStopsWithinFiveSeconds builds the real binary and stops it
// with a signal while a client holds the stream open.
func TestSIGTERMStopsWithinFiveSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vigil")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", t.TempDir())
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var url string
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), "url="); ok {
			url = strings.Fields(after)[0]
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	if url == "" {
		t.Fatal("no listening line")
	}
	ch := openStream(t, url+"/events", nil)
	vigiltest.Next(t, ch, "sample", 3*time.Second)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("exit took %s", took)
	}
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestTLSServesHTTP2(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	base, _ := startVigil(t, "--data", dir, "--tls-cert", cert, "--tls-key", key)
	url := strings.Replace(base, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"agent.internal"}, // not 127.0.0.1: a hub reaches it by its name (server_name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error; none means valid
	}{
		{"empty file keeps defaults", "", nil},
		{"full valid file", "addr: 0.0.0.0:9090\ninterval: 2s\nretention: 1h\nstream:\n  queue: 64\n  heartbeat: 5s\nhost:\n  exclude_interfaces: [lo, docker0]\n", nil},
		{"malformed YAML", "addr: [\n", []string{"cfg.yaml:"}},
		{"history in VictoriaMetrics", "history:\n  victoriametrics:\n    url: http://127.0.0.1:8428\n    labels: {vigil: hub-fra}\n", nil},
		{"bad VictoriaMetrics settings", "history:\n  victoriametrics:\n    url: 127.0.0.1:8428\n    labels: {source: x}\n    flush: 5m\n",
			[]string{"cfg.yaml:3: history.victoriametrics.url: want http(s)://host:port", "cfg.yaml:4: history.victoriametrics.labels: \"source\"", "cfg.yaml:5: history.victoriametrics.flush: 5m0s: want up to 1m"}},
		{"tab indentation", "stream:\n\tqueue: 3\n", []string{"cfg.yaml:2:"}},
		{"unknown key", "addr: :8080\nintervall: 1s\n", []string{"cfg.yaml:2: unknown key \"intervall\""}},
		{"unknown nested key", "stream:\n  queu: 3\n", []string{"cfg.yaml:2: unknown key \"queu\""}},
		{"bad duration", "interval: 1x\n", []string{"cfg.yaml:1:", "bad duration \"1x\""}},
		{"duration without unit", "retention: 600\n", []string{"cfg.yaml:1:", "give a unit"}},
		{"bad number", "stream:\n  queue: lots\n", []string{"cfg.yaml:2: bad value \"lots\": want a whole number"}},
		{"bad value", "stream:\n  queue: 0\n", []string{"cfg.yaml:2: stream.queue: must be at least 1"}},
		{"bad address", "addr: localhost\n", []string{"cfg.yaml:1: addr:"}},
		{"retention below interval", "interval: 10s\nretention: 5s\n", []string{"cfg.yaml:2: retention:"}},
		{"several problems at once", "interval: 1x\nwhat: 1\n", []string{"cfg.yaml:1:", "cfg.yaml:2: unknown key"}},
		{"heartbeat too long for proxies", "stream:\n  heartbeat: 60s\n", []string{"cfg.yaml:2: stream.heartbeat"}},
		{"valid services", "services:\n  - name: api\n    probe:\n      url: https://api.example.com/healthz\n      json_field: status\n      json_equals: ok\n    scrape:\n      urls: [http://10.0.0.1:9100/metrics, http://10.0.0.2:9100/metrics]\n      errors: 'status=~\"5..\"'\n", nil},
		{"service without probe or scrape", "services:\n  - name: api\n", []string{"cfg.yaml:2: services[0]: needs a probe"}},
		{"service with a bad URL", "services:\n  - name: api\n    probe:\n      url: ftp://x\n", []string{"cfg.yaml:4: services[0].probe.url:", "not an http:// or https:// URL"}},
		{"a bad URL in a list", "services:\n  - name: api\n    probe:\n      urls:\n        - http://ok\n        - ftp://bad\n", []string{"cfg.yaml:6: services[0].probe.urls[1]: \"ftp://bad\" is not"}},
		{"service with a bad regex", "services:\n  - name: api\n    probe:\n      url: http://x\n      body_regex: '('\n", []string{"cfg.yaml:5: services[0].probe.body_regex:"}},
		{"service with a bad selector", "services:\n  - name: api\n    scrape:\n      url: http://x/metrics\n      errors: code\n", []string{"cfg.yaml:5: services[0].scrape.errors: bad error selector"}},
		{"service timeout beyond the interval", "services:\n  - name: api\n    probe:\n      url: http://x\n      timeout: 5s\n", []string{"cfg.yaml:5: services[0].probe.timeout: 5s is longer than the interval 1s"}},
		{"duplicate service", "services:\n  - name: api\n    probe: {url: http://x}\n  - name: api\n    probe: {url: http://y}\n", []string{"cfg.yaml:4:", "declared twice"}},
		{"valid rules", "alerts:\n  rules:\n    - name: HighErrors\n      source: service/*\n      metric: http.error_percent\n      op: '>'\n      threshold: 5\n      clear: 2\n      for: 2m\n      aggregate: avg\n      window: 1m\n      annotations: {summary: 'errors at {{.Value}}'}\n", nil},
		{"rule without threshold", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n", []string{"cfg.yaml:3: alerts.rules[0].threshold: required"}},
		{"rule with a bad op", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '=>'\n      threshold: 1\n", []string{"cfg.yaml:5: alerts.rules[0].op:"}},
		{"rule with clear on the wrong side", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: 90\n      clear: 95\n", []string{"cfg.yaml:7: alerts.rules[0].clear: 95 is on the firing side"}},
		{"rule with a bad duration", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: 1\n      for: soon\n", []string{"cfg.yaml:7:", "bad duration"}},
		{"queue that cannot be allocated", "stream:\n  queue: 1099511627776\n  replay: 1099511627776\n", []string{"cfg.yaml:2: stream.queue: 1099511627776 is outside 1 to 16384", "cfg.yaml:3: stream.replay: 1099511627776 is outside"}},
		{"replay too large", "stream:\n  replay: 50000000\n", []string{"cfg.yaml:2: stream.replay: 50000000 is outside 256 to 1000000"}},
		{"interval too long", "interval: 2h\nretention: 4h\n", []string{"cfg.yaml:1: interval: 2h0m0s is outside 100ms to 1h"}},
		{"write timeout too long", "stream:\n  write_timeout: 1h\n", []string{"cfg.yaml:2: stream.write_timeout: 1h0m0s is outside 1s to 5m"}},
		{"a NATS URL of another scheme", "cluster:\n  name: a\n  nats:\n    urls: [http://127.0.0.1:4222]\n", []string{"cfg.yaml:4: cluster.nats.urls[0]: \"http://127.0.0.1:4222\": want nats://"}},
		{"two ways to sign in to NATS", "cluster:\n  name: a\n  nats:\n    urls: [nats://127.0.0.1:4222]\n    token: sesame\n    user: vigil\n    password: x\n", []string{"cfg.yaml:3: cluster.nats: give one of creds_file, token"}},
		{"an even number of stream copies", "cluster:\n  name: a\n  nats:\n    urls: [nats://127.0.0.1:4222]\n    replicas: 2\n", []string{"cfg.yaml:5: cluster.nats.replicas: 2: want 1, 3 or 5"}},
		{"a stream name with a dot", "cluster:\n  name: a\n  nats:\n    urls: [nats://127.0.0.1:4222]\n    stream: vigil.events\n", []string{"cfg.yaml:5: cluster.nats.stream: \"vigil.events\": a stream's name"}},
		{"a subject with a wildcard", "cluster:\n  name: a\n  nats:\n    urls: [nats://127.0.0.1:4222]\n    subject: vigil.>\n", []string{"cfg.yaml:5: cluster.nats.subject: \"vigil.>\": want tokens"}},
		{"a role that is not one", "cluster:\n  name: a\n  role: leader\n  nats:\n    urls: [nats://127.0.0.1:4222]\n", []string{"cfg.yaml:3: cluster.role: \"leader\": want replica"}},
		{"a lease too short", "cluster:\n  name: a\n  lease_ttl: 1s\n  nats:\n    urls: [nats://127.0.0.1:4222]\n", []string{"cfg.yaml:3: cluster.lease_ttl: 1s is outside 2s to 5m"}},
		{"a replica's name without NATS", "cluster:\n  name: fra-1\n", []string{"cfg.yaml:2: cluster.name: names a replica on NATS: it needs cluster.nats.urls"}},
		{"an agent without NATS", "cluster:\n  role: agent\n", []string{"cfg.yaml:2: cluster.role: an agent pushes into NATS: it needs cluster.nats.urls"}},
		{"a valid replica", "cluster:\n  name: fra-1\n  nats:\n    urls: [nats://127.0.0.1:4222, tls://nats.example.com]\n    token: sesame\n    replicas: 3\n", nil},
		{"retry too long", "stream:\n  retry: 10m\n", []string{"cfg.yaml:2: stream.retry: 10m0s is outside 100ms to 1m"}},
		{"rule window beyond the ring", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: 1\n      aggregate: avg\n      window: 1h\n", []string{"cfg.yaml:8:", "window: 1h0m0s is longer than the retention 10m0s"}},
		{"rule for too long", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: 1\n      for: 1000h\n", []string{"cfg.yaml:7:", "for: 1000h0m0s is outside 0s to 168h0m0s"}},
		{"a threshold that is not a number", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: high\n", []string{"cfg.yaml:6: bad value \"high\": want a number"}},
		{"an unclosed list on line 2", "a: 1\nb: [1, 2\nc: 3\n", []string{"cfg.yaml:2: did not find expected ',' or ']'"}},
		{"a list item among keys", "addr: :8080\n- item\n", []string{"cfg.yaml:2: did not find expected key"}},
		{"an unclosed list on line 1", "[1, 2\n", []string{"cfg.yaml:2:"}},
		{"receivers of every type", "alerts:\n  receivers:\n    - {name: chat, type: slack, url: https://hooks.slack.com/services/T0/B0/x}\n    - {name: tg, type: telegram, token: '123456789:AAH-example_token_0123456789abc', chat_id: '-1001234567890'}\n    - {name: pager, type: pagerduty, routing_key: R0123456789abcdef0123456789abcd}\n    - {name: push, type: ntfy, url: https://ntfy.sh/vigil-ops, token: tk_x}\n    - {name: mail, type: email, url: 'smtp://mail.example.com:587', from: vigil@example.com, to: [ops@example.com], username: vigil, password: x}\n", nil},
		{"a receiver with another type's field", "alerts:\n  receivers:\n    - name: chat\n      type: slack\n      url: https://hooks.slack.com/services/T0/B0/x\n      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", []string{"cfg.yaml:6: alerts.receivers[0].secret: a receiver of type slack does not take secret"}},
		{"a Telegram receiver without its chat", "alerts:\n  receivers:\n    - name: tg\n      type: telegram\n      token: '123456789:AAH-example_token_0123456789abc'\n", []string{"alerts.receivers[0].chat_id: want a chat id"}},
		{"a receiver's matcher that does not parse", "alerts:\n  receivers:\n    - name: chat\n      type: slack\n      url: https://hooks.slack.com/services/T0/B0/x\n      match: ['team=~\"(\"']\n", []string{"cfg.yaml:6: alerts.receivers[0].match:", "missing closing"}},
		{"a repeat too often", "alerts:\n  receivers:\n    - name: chat\n      type: slack\n      url: https://hooks.slack.com/services/T0/B0/x\n      repeat_interval: 10s\n", []string{"cfg.yaml:6: alerts.receivers[0].repeat_interval: 10s is shorter than 1m0s"}},
		{"a bad token in a list", "auth:\n  tokens:\n    - 0123456789abcdef0\n    - short\n", []string{"cfg.yaml:4: auth.tokens[1]: a token must be"}},
		{"a service window shorter than two intervals", "services:\n  - name: api\n    window: 1s\n    probe: {url: http://x}\n", []string{"cfg.yaml:3: services[0].window: 1s is outside 2s (two intervals) to 1h"}},
		{"a service interval too short", "services:\n  - name: api\n    interval: 10ms\n    probe: {url: http://x}\n", []string{"cfg.yaml:3: services[0].interval: 10ms is outside 100ms to 1h"}},
		{"a port out of range", "addr: 127.0.0.1:99999\n", []string{`cfg.yaml:1: addr: "127.0.0.1:99999": the port must be a number from 0 to 65535`}},
		{"a host name with a right-to-left override", "host:\n  name: \"web\u202egnp.exe\"\n", []string{"cfg.yaml:2: host.name:", "bidirectional"}},
		{"valid upstreams", "upstreams:\n  - url: http://web-1:8080\n    name: web-1\n    labels: {role: web}\n  - url: web-2:8080\nupstream_defaults:\n  token: 0123456789abcdef\n  labels: {dc: fra}\n", nil},
		{"an upstream without a URL", "upstreams:\n  - name: x\n", []string{"cfg.yaml:2: upstreams[0].url: required"}},
		{"an upstream URL that is not one", "upstreams:\n  - url: ftp://x\n", []string{"cfg.yaml:2: upstreams[0].url:", "not host:port or an http(s):// URL"}},
		{"an upstream URL with credentials", "upstreams:\n  - url: http://u:p@x:1\n", []string{"cfg.yaml:2: upstreams[0].url:", "carries credentials"}},
		{"an upstream followed twice", "upstreams:\n  - url: http://x:1\n  - url: x:1\n", []string{"cfg.yaml:3: upstreams[1].url:", "followed twice"}},
		{"two upstreams with one name", "upstreams:\n  - {url: http://x:1, name: a}\n  - {url: http://x:2, name: a}\n", []string{"cfg.yaml:3: upstreams[1].name:", "names two upstreams"}},
		{"a name that is another upstream's host:port", "upstreams:\n  - url: http://x:1\n  - {url: http://x:2, name: 'x:1'}\n", []string{"cfg.yaml:3: upstreams[1].name:", `"x:1" names two upstreams`}},
		{"an upstream name with a slash", "upstreams:\n  - {url: http://x:1, name: a/b}\n", []string{"cfg.yaml:2: upstreams[0].name:", "slashes"}},
		{"a bad label name", "upstreams:\n  - url: http://x:1\n    labels: {9lives: x}\n", []string{"cfg.yaml:3: upstreams[0].labels:", "label name"}},
		{"a short upstream token", "upstreams:\n  - url: http://x:1\n    token: short\n", []string{"cfg.yaml:3: upstreams[0].token: a token must be 16"}},
		{"a token and a token file", "upstreams:\n  - url: http://x:1\n    token: 0123456789abcdef\n    token_file: /nonexistent\n", []string{"upstreams[0].token_file: give token or token_file"}},
		{"a CA file that is not there", "upstreams:\n  - url: https://x:1\n    tls: {ca_file: /nonexistent/ca.pem}\n", []string{"cfg.yaml:3: upstreams[0].tls: ca_file:"}},
		{"an upstreams file that is not there", "upstreams_file: /nonexistent/agents.json\n", []string{"cfg.yaml:1: upstreams_file: /nonexistent/agents.json:"}},
		{"a short read token", "auth:\n  read_tokens: [short]\n", []string{"cfg.yaml:2: auth.read_tokens[0]: a token must be 16"}},
		{"agent_down_for too long", "alerts:\n  agent_down_for: 1000h\n", []string{"cfg.yaml:2: alerts.agent_down_for: 1000h0m0s is outside 0s to 168h"}},
		{"a huge queue says so once", "stream:\n  queue: 1099511627776\n", []string{"cfg.yaml:2: stream.queue: 1099511627776 is outside 1 to 16384"}},
		{"type problems beside range problems", "stream:\n  queue: lots\n  write_timeout: 1h\n", []string{"cfg.yaml:2: bad value \"lots\": want a whole number", "cfg.yaml:3: stream.write_timeout: 1h0m0s is outside 1s to 5m"}},
		{"a list where a number goes", "alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: [1]\n", []string{"cfg.yaml:6: a list here: want a number"}},
		{"a list as the whole file", "- a\n- b\n", []string{"cfg.yaml:1: a list here: want the settings as a mapping"}},
		{"unknown service key", "services:\n  - name: api\n    prob: {url: http://x}\n", []string{"cfg.yaml:3: unknown key \"prob\""}},
		{"scrape limits", "services:\n  - name: api\n    scrape:\n      url: http://x/metrics\n      follow_redirects: true\n      max_series: 1000000\n", nil},
		{"scrape max_series zero", "services:\n  - name: api\n    scrape:\n      url: http://x/metrics\n      max_series: 0\n", []string{"cfg.yaml:5: services[0].scrape.max_series: 0 is not between 1 and 1000000"}},
		{"scrape max_series too high", "services:\n  - name: api\n    scrape:\n      url: http://x/metrics\n      max_series: 1000001\n", []string{"cfg.yaml:5: services[0].scrape.max_series: 1000001 is not between 1 and 1000000"}},
		{"bad URL with credentials", "services:\n  - name: api\n    probe:\n      url: ftp://user:pw@x/?token=abc\n", []string{`"ftp://xxxxx:xxxxx@x/?token=xxxxx" is not an http:// or https:// URL`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "cfg.yaml")
			os.WriteFile(path, []byte(tt.yaml), 0o600)
			var out bytes.Buffer
			err := run(context.Background(), env{args: []string{"validate", "--config", path}, getenv: func(string) string { return "" }, stdout: &out, stderr: io.Discard})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				if !strings.Contains(out.String(), "ok") {
					t.Fatalf("output %q", out.String())
				}
				return
			}
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
	// A mistake in upstream_defaults is said once, where it is, not again
	// for every upstream that takes it.
	os.WriteFile(filepath.Join(dir, "cfg.yaml"), []byte("upstream_defaults:\n  token_file: /nonexistent/token\nupstreams:\n  - url: http://a:1\n  - url: http://b:1\n"), 0o600)
	if err := run(context.Background(), env{args: []string{"validate", "--config", filepath.Join(dir, "cfg.yaml")}, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}); err == nil ||
		strings.Count(err.Error(), "token_file") != 1 || !strings.Contains(err.Error(), "upstream_defaults.token_file") {
		t.Errorf("a bad upstream_defaults.token_file: %v", err)
	}
	// A configured URL's credentials are not shown back, even in an error.
	os.WriteFile(filepath.Join(dir, "cfg.yaml"), []byte("services:\n  - name: api\n    scrape:\n      url: http://user:pw@x:y:z/?token=abc\n"), 0o600)
	err := run(context.Background(), env{args: []string{"validate", "--config", filepath.Join(dir, "cfg.yaml")}, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
	if err == nil || strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "abc") {
		t.Errorf("unparseable URL with credentials: %v", err)
	}
	err = run(context.Background(), env{args: []string{"validate", "--config", filepath.Join(dir, "missing.yaml")}, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfg.yaml")
	os.WriteFile(path, []byte("addr: 127.0.0.1:1111\ninterval: 2s\nretention: 20m\ndata: /from/file\n"), 0o600)
	envs := map[string]string{"VIGIL_CONFIG": path, "VIGIL_INTERVAL": "3s", "VIGIL_DATA": "/from/env"}
	cfg, err := configure("serve", []string{"--data", "/from/flag"}, func(k string) string { return envs[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "127.0.0.1:1111" || cfg.interval != 3*time.Second || cfg.retention != 20*time.Minute || cfg.data != "/from/flag" {
		t.Fatalf("got addr %s interval %s retention %s data %s", cfg.addr, cfg.interval, cfg.retention, cfg.data)
	}
	_, err = configure("serve", nil, func(k string) string {
		if k == "VIGIL_INTERVAL" {
			return "soon"
		}
		return ""
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "VIGIL_INTERVAL") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, err := configure("serve", []string{"--interval", "0s"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("--interval 0s accepted")
	}
}

// TestDemo runs vigil --demo: the demo services appear as service tiles
// with traffic, labelled as demo data, with a per-instance breakdown.
func TestDemo(t *testing.T) {
	base, _ := startVigil(t, "--data", t.TempDir(), "--demo")
	ch := openStream(t, base+"/events?source=service/checkout&type=sample", nil)
	deadline := time.After(10 * time.Second)
	for {
		var s sampleData
		select {
		case ev := <-ch:
			json.Unmarshal([]byte(ev.Data), &s)
		case <-deadline:
			t.Fatal("no demo traffic within 10 s")
		}
		if s.Metrics["http.requests_per_sec"] > 0 && s.Metrics["instances.total"] == 3 {
			if _, ok := s.Metrics["http.latency_p99_seconds"]; !ok {
				t.Fatalf("no latency percentiles: %v", s.Metrics)
			}
			break
		}
	}
	get := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	page := get("/")
	if !strings.Contains(page, `data-testid="demo-badge"`) || !strings.Contains(page, `data-source="service/checkout" data-kind="service"`) {
		t.Error("dashboard does not show the demo as demo service tiles")
	}
	if n := strings.Count(get("/source/service/checkout"), `data-testid="instance"`); n != 3 {
		t.Errorf("checkout drill-down shows %d instances, want 3", n)
	}
	// The demo's incidents raise an alert: a rule watches its services
	// beside the host defaults.
	if rules := get("/api/v1/rules"); !strings.Contains(rules, `"name":"DemoServiceErrors"`) || !strings.Contains(rules, `"name":"HostHighCPU"`) {
		t.Errorf("rules with --demo: %s", rules)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), env{args: []string{"version"}, stdout: &out, stderr: io.Discard, getenv: os.Getenv}); err != nil || !strings.HasPrefix(out.String(), "vigil ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	err := run(context.Background(), env{args: []string{"frobnicate"}, stdout: io.Discard, stderr: io.Discard, getenv: os.Getenv})
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	if err := run(context.Background(), env{args: []string{"--nope"}, stdout: io.Discard, stderr: io.Discard, getenv: os.Getenv}); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("unknown flag: %v", err)
	}
}

// FuzzConfig feeds arbitrary YAML to the config loader: it never panics,
// and every error names the file.
func FuzzConfig(f *testing.F) {
	f.Add("addr: :8080\ninterval: 1s\n")
	f.Add("alerts:\n  rules:\n    - name: A\n      metric: m\n      op: '>'\n      threshold: 1\n      clear: 0\n      annotations: {summary: '{{.Value}}'}\n")
	f.Add("services:\n  - name: api\n    probe: {url: 'http://x', body_regex: '(a|b'}\n")
	f.Add("stream: [1, 2]\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := defaultConfig()
		root, problems, err := loadFile(path, &cfg)
		var p plan
		if err == nil {
			p, err = cfg.plan(origin{file: path, root: root, problems: problems})
		}
		if err != nil {
			for _, e := range unjoin(err) {
				if !strings.HasPrefix(e.Error(), path) {
					t.Fatalf("error without the file: %q", e)
				}
			}
			return
		}
		for i := range p.rules {
			if err := p.rules[i].Validate(); err != nil {
				t.Fatalf("valid config with invalid rules: %v", err)
			}
		}
	})
}

// TestTailCommand runs "vigil tail" against a running vigil: flags may
// follow the URL, --json prints the stream's JSON, and bad flags or
// filters are errors that name the problem.
func TestTailCommand(t *testing.T) {
	base, _ := startVigil(t, "--data", t.TempDir(), "--interval", "100ms")
	ctx, cancel := context.WithCancel(context.Background())
	out := &vigiltest.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, env{args: []string{"tail", base, "--type", "sample", "--json", "--source", "host/*"},
			getenv: func(string) string { return "" }, stdout: out, stderr: io.Discard})
	}()
	vigiltest.Eventually(t, 10*time.Second, "two lines from tail", func() bool { return strings.Count(out.String(), "\n") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail: %v", err)
	}
	ls := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(ls) < 2 {
		t.Fatalf("tail printed %q", out)
	}
	var prev uint64
	for _, l := range ls {
		var ev sampleData
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Type != "sample" || !strings.HasPrefix(ev.Source, "host/") || ev.Seq <= prev {
			t.Fatalf("line %q: %+v %v", l, ev, err)
		}
		prev = ev.Seq
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tail", base, "--color", "purple"}, "bad --color"},
		{[]string{"tail", base, "--from", "yesterday"}, "bad --from"},
		{[]string{"tail", base, "extra"}, "one URL"},
		{[]string{"tail", base, "--type", "nope"}, `unknown event type "nope"`},
	} {
		err := run(context.Background(), env{args: tc.args, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestServiceScrapeOptions(t *testing.T) {
	for _, tc := range []struct {
		yaml      string
		follow    bool
		maxSeries int
	}{
		{"name: api\nscrape: {url: http://x/metrics}\n", false, 0}, // 0: the collector's default
		{"name: api\nscrape: {url: http://x/metrics, follow_redirects: true, max_series: 50000}\n", true, 50000},
	} {
		var sc ServiceConfig
		if err := yaml.Unmarshal([]byte(tc.yaml), &sc); err != nil {
			t.Fatal(err)
		}
		o, errs := sc.options(time.Second)
		if len(errs) > 0 || o.Scrape.FollowRedirects != tc.follow || o.Scrape.MaxSeries != tc.maxSeries {
			t.Errorf("%q: %+v, %v", tc.yaml, o.Scrape, errs)
		}
	}
}

// TestHelpExitsZero: asking for help is not an error: the usage goes to
// stdout and the exit status is 0; a bad flag is an error, on stderr.
func TestHelpExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildVigil(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"tail", "--help"}, {"validate", "--help"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("vigil %v: %v (stderr %q)", args, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "Usage:") || stderr.Len() != 0 {
			t.Errorf("vigil %v: stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
		if args[0] == "validate" && !strings.Contains(stdout.String(), "vigil validate [--config FILE]") {
			t.Errorf("vigil validate --help is not about validate: %q", stdout.String())
		}
	}
	// A bad flag: said once, with where to look, without the whole usage.
	for _, args := range [][]string{{"--nope"}, {"validate", "--nope"}, {"tail", "--nope"}} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err == nil || cmd.ProcessState.ExitCode() != 2 || strings.Count(stderr.String(), "-nope") != 1 ||
			strings.Contains(stderr.String(), "Usage:") || !strings.Contains(stderr.String(), "--help") {
			t.Errorf("vigil %v: %v, stderr %q", args, err, stderr.String())
		}
	}
}

// TestValidateErrorsInLineOrder: vigil validate lists problems in the
// order of their lines, whichever part of the file they are in.
func TestValidateErrorsInLineOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.yaml")
	os.WriteFile(path, []byte("services:\n  - name: api\nauth:\n  tokens: [short]\nstream:\n  queue: 0\naddr: nowhere\n"), 0o600)
	err := run(context.Background(), env{args: []string{"validate", "--config", path}, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
	if err == nil {
		t.Fatal("accepted")
	}
	var lines []int
	for _, l := range strings.Split(err.Error(), "\n") {
		rest := strings.TrimPrefix(l, path+":")
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ':')])
		lines = append(lines, n)
	}
	if !slices.IsSorted(lines) || len(lines) != 4 {
		t.Fatalf("lines %v in:\n%s", lines, err)
	}
}

// TestProblemsNameWhereTheValueCameFrom: a value that a flag or the
// environment overrode is reported under that flag or variable, not at
// the file's line it replaced.
func TestProblemsNameWhereTheValueCameFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.yaml")
	os.WriteFile(path, []byte("interval: 1s\nlog:\n  level: info\n"), 0o600)
	envs := map[string]string{"VIGIL_LOG_LEVEL": "loud", "VIGIL_AUTH_TOKENS": "0123456789abcdef,short"}
	_, err := configure("serve", []string{"--config", path, "--interval", "50ms"}, func(k string) string { return envs[k] }, io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--interval: 50ms is outside 100ms to 1h", `VIGIL_LOG_LEVEL: "loud" is not one of`,
		"VIGIL_AUTH_TOKENS: auth.tokens[1]: a token must be 16 to 4096 characters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), path+":") {
		t.Errorf("a flag's problem pointed at the file: %q", err)
	}
}

// TestStartupErrorsAreReported: what stops vigil from starting — a port
// in use, a certificate that does not load, a data directory that cannot
// be made — is returned as an error that says so, never a panic, and
// what was opened before it is closed.
func TestStartupErrorsAreReported(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notPEM := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileInTheWay := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(fileInTheWay, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"--addr", busy.Addr().String()}, "address already in use"},
		{"bad certificate", []string{"--addr", "127.0.0.1:0", "--tls-cert", notPEM, "--tls-key", notPEM}, "tls:"},
		{"data directory under a file", []string{"--addr", "127.0.0.1:0", "--data", filepath.Join(fileInTheWay, "data")}, "data directory:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !slices.Contains(args, "--data") {
				args = append(args, "--data", t.TempDir())
			}
			err := run(context.Background(), env{args: args, getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}

// TestREADMEWholeFileIsTheDefaults: the README's "whole file, with the
// defaults" is read from README.md; it validates, and it plans exactly
// what no file at all does.
func TestREADMEWholeFileIsTheDefaults(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "The whole file, with the defaults:\n\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no \"whole file, with the defaults\" block")
	}
	path := filepath.Join(t.TempDir(), "whole.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	fromFile, err := configure("serve", []string{"--config", path}, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("the README's whole file does not validate: %v", err)
	}
	defaults, err := configure("serve", nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*plan{&fromFile, &defaults} { // an empty list is no list
		if len(p.tokens) == 0 {
			p.tokens = nil
		}
		if len(p.allowedHosts) == 0 {
			p.allowedHosts = nil
		}
		if len(p.readTokens) == 0 {
			p.readTokens = nil
		}
		if len(p.fileDefaults.Labels) == 0 {
			p.fileDefaults.Labels = nil
		}
	}
	if !reflect.DeepEqual(fromFile, defaults) {
		t.Fatalf("the README's whole file is not the defaults:\nfile:     %+v\ndefaults: %+v", fromFile, defaults)
	}
}

// TestListsFromTheCommandLine: comma-separated variables may have spaces
// after the commas, and a bad network says whether it came from the flag,
// the variable or the file's line.
func TestListsFromTheCommandLine(t *testing.T) {
	envs := map[string]string{"VIGIL_WEBHOOK_ALLOW_NET": "127.0.0.0/8, ::1/128", "VIGIL_ALLOWED_HOSTS": "a.example, b.example",
		"VIGIL_AUTH_TOKENS": "0123456789abcdef, fedcba9876543210"}
	p, err := configure("serve", nil, func(k string) string { return envs[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.allowNets) != 2 || p.allowNets[1].String() != "::1/128" || !slices.Equal(p.allowedHosts, []string{"a.example", "b.example"}) ||
		!slices.Equal(p.tokens, []string{"0123456789abcdef", "fedcba9876543210"}) {
		t.Fatalf("lists: %v %v %v", p.allowNets, p.allowedHosts, p.tokens)
	}

	path := filepath.Join(t.TempDir(), "cfg.yaml")
	os.WriteFile(path, []byte("alerts:\n  allow_networks: [10.0.0.0/8, bogus-in-file]\n"), 0o600)
	_, err = configure("serve", []string{"--config", path, "--webhook-allow-net", "bogus-flag"}, func(string) string { return "" }, io.Discard)
	for _, want := range []string{path + `:2: alerts.allow_networks[1]: "bogus-in-file"`, `--webhook-allow-net: "bogus-flag" is not a CIDR`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
	_, err = configure("serve", nil, func(k string) string { return map[string]string{"VIGIL_WEBHOOK_ALLOW_NET": "bogus"}[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `VIGIL_WEBHOOK_ALLOW_NET: "bogus" is not a CIDR`) {
		t.Errorf("from the variable: %v", err)
	}
}

// A replica's host is named after the replica unless host.name says
// otherwise: two replicas on one machine, or an agent, never publish one
// host under one name.
func TestReplicaNamesItsHost(t *testing.T) {
	noEnv := func(string) string { return "" }
	p, err := configure("serve", []string{"--nats", "nats://127.0.0.1:4222", "--cluster-name", "fra-1"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.host == nil || p.host.Name != "fra-1" {
		t.Fatalf("host %+v, want it named fra-1", p.host)
	}
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("host:\n  name: web-1\n"), 0o600)
	p, err = configure("serve", []string{"--config", cfg, "--nats", "nats://127.0.0.1:4222", "--cluster-name", "fra-1"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.host.Name != "web-1" {
		t.Fatalf("host named %q, want host.name's web-1", p.host.Name)
	}
}
