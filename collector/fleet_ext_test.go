package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// runFleet runs a fleet following the upstreams until the test ends,
// beside the hub's own sources.
func runFleet(t *testing.T, f *collector.Fleet, local ...collector.Source) {
	t.Helper()
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	store := collector.NewStore(time.Minute, time.Second)
	f.Store, f.Hub = store, hub
	f.Scheduler = &collector.Scheduler{Store: store, Hub: hub, Interval: 100 * time.Millisecond, Sources: local}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { f.Scheduler.Run(ctx); done <- struct{}{} }()
	go func() { f.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; hub.Close() })
}

// TestUpstreamSilentStreamIsDead: an agent whose stream goes silent —
// not even a heartbeat, as when its host vanishes without closing the
// connection — is taken for unreachable after the idle timeout, and
// said so.
func TestUpstreamSilentStreamIsDead(t *testing.T) {
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 5\n\n"))
		w.(http.Flusher).Flush()
		select { // a host gone: nothing more, and no end
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(release)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: silent.URL, Name: "gone"}}, IdleTimeout: 300 * time.Millisecond}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the silent agent taken for unreachable", func() bool {
		st := f.Status()
		return len(st) == 1 && !st[0].Connected && strings.Contains(st[0].Error, "nothing from the agent for 300ms")
	})
}

// TestUpstreamTalkingStreamIsAlive: a stream that keeps sending, if only
// heartbeats, is never taken for dead however long it runs past the idle
// timeout; once it falls silent it is.
func TestUpstreamTalkingStreamIsAlive(t *testing.T) {
	var opened atomic.Int32
	release := make(chan struct{})
	talking := make(chan struct{})
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opened.Add(1) > 1 {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 25 { // 2.5 s of heartbeats, two and a half idle timeouts
			fmt.Fprintf(w, "id: %d\n\n", i+1)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		close(talking)
		select { // then nothing more, and no end
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer agent.Close()
	defer close(release)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: agent.URL, Name: "chatty"}}, IdleTimeout: time.Second}
	runFleet(t, f)
	<-talking
	if st := f.Status(); len(st) != 1 || !st[0].Connected || opened.Load() != 1 {
		t.Fatalf("after 2.5 s of heartbeats: %+v, %d streams opened; want connected on the first", st, opened.Load())
	}
	vigiltest.Eventually(t, 10*time.Second, "the agent fallen silent taken for unreachable", func() bool {
		st := f.Status()
		return len(st) == 1 && !st[0].Connected && strings.Contains(st[0].Error, "nothing from the agent for 1s")
	})
}

// TestFleetConnectsAFewAtATime: after a hub starts, its agents are
// connected to a few at a time (MaxDials), not all in the same instant.
func TestFleetConnectsAFewAtATime(t *testing.T) {
	var mu sync.Mutex
	opening, most, served := 0, 0, 0
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		opening++
		most = max(most, opening)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // answering takes a while
		mu.Lock()
		opening--
		served++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 1\n\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close) // after the fleet's, which ends the streams
	var ups []collector.UpstreamOptions
	for i := range 12 {
		ups = append(ups, collector.UpstreamOptions{URL: fmt.Sprintf("%s/agents/%d", agent.URL, i)})
	}
	f := &collector.Fleet{Upstreams: ups, MaxDials: 3}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "all twelve connected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return served == 12
	})
	mu.Lock()
	defer mu.Unlock()
	if most > 3 {
		t.Fatalf("%d connections opening at once, more than MaxDials 3", most)
	}
}

// TestHostileAgentBounded: what an agent sends that a hub must not keep —
// an unreadable source name, a name without a kind, thousands of metrics
// in a sample, an unreadable metric name — is dropped and said in the
// upstream's error; the agent's good events still come in.
func TestHostileAgentBounded(t *testing.T) {
	many := map[string]float64{}
	for i := range collector.MaxUpstreamMetrics + 1 {
		many[fmt.Sprintf("m.%d", i)] = 1
	}
	manyJSON, _ := json.Marshal(many)
	frames := []string{
		`{"seq":1,"type":"sample","source":"host/evil\u202eexe","metrics":{"a":1}}`,
		`{"seq":2,"type":"sample","source":"nokind","metrics":{"a":1}}`,
		`{"seq":3,"type":"sample","source":"host/many","metrics":` + string(manyJSON) + `}`,
		`{"seq":4,"type":"sample","source":"host/odd","metrics":{"bad\u0007name":1}}`,
		`{"seq":5,"type":"sample","source":"host/good","metrics":{"cpu.percent":5}}`,
	}
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, f := range frames {
			fmt.Fprintf(w, "id: %d\nevent: sample\ndata: %s\n\n", i+1, f)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: agent.URL, Name: "x"}}}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the good sample in, the others dropped", func() bool {
		_, good := f.Store.Latest("host/good")
		st := f.Status()
		return good && len(st) == 1 && strings.Contains(st[0].Error, "dropped")
	})
	for _, src := range f.Store.Sources() {
		if src != "host/good" && !strings.HasPrefix(src, "upstream/") {
			t.Errorf("kept %q", src)
		}
	}
}

// TestUpstreamTakenOutOfTheFile: an agent the file lists no more is
// followed no more; its host, its connection and a service no other agent
// runs go from the hub.
func TestUpstreamTakenOutOfTheFile(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "id: 1\nevent: sample\ndata: {\"seq\":1,\"type\":\"sample\",\"source\":\"host/a\",\"metrics\":{\"cpu.percent\":5}}\n\n")
		fmt.Fprint(w, "id: 2\nevent: sample\ndata: {\"seq\":2,\"type\":\"sample\",\"source\":\"service/api\",\"metrics\":{\"instances.up\":1},\"traffic\":{\"requests\":5,\"errors\":0,\"seconds\":1}}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close)
	file := filepath.Join(t.TempDir(), "agents.json")
	os.WriteFile(file, []byte(`[{"targets": ["`+agent.URL+`"]}]`), 0o600)
	f := &collector.Fleet{File: file, FileInterval: 50 * time.Millisecond}
	runFleet(t, f)
	has := func(src string) bool { _, ok := f.Store.Latest(src); return ok }
	up := "upstream/" + strings.TrimPrefix(agent.URL, "http://")
	vigiltest.Eventually(t, 10*time.Second, "the agent's host, service and connection on the hub", func() bool {
		return has("host/a") && has("service/api") && has(up)
	})
	os.WriteFile(file, []byte(`[]`), 0o600)
	vigiltest.Eventually(t, 10*time.Second, "all three gone", func() bool {
		return !has("host/a") && !has("service/api") && !has(up) && len(f.Status()) == 0
	})
}

// TestAgentHostIsTheHubs: an agent whose host has the name of the hub's
// own is refused, said in its upstream's error, rather than its samples
// mixed into the hub's host's series.
func TestAgentHostIsTheHubs(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: 1\nevent: sample\ndata: %s\n\n", `{"seq":1,"type":"sample","source":"host/vm","metrics":{"cpu.percent":99}}`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close)
	own := collector.SourceFunc{SourceName: "host/vm", Fn: func(context.Context) (map[string]float64, error) {
		return map[string]float64{"cpu.percent": 1}, nil
	}}
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: agent.URL, Name: "web-1"}}}
	runFleet(t, f, own)
	vigiltest.Eventually(t, 10*time.Second, "the agent's host refused", func() bool {
		st := f.Status()
		return len(st) == 1 && strings.Contains(st[0].Error, "host/vm is this hub's own")
	})
	vigiltest.Eventually(t, 10*time.Second, "the upstream down: nothing it sends is taken", func() bool {
		smp, _ := f.Store.Latest("upstream/web-1")
		up, ok := smp.Metrics.Get("upstream.up")
		return ok && up == 0
	})
	pts, _ := f.Store.Range("host/vm", "cpu.percent", time.Time{})
	for _, p := range pts {
		if p.V != 1 {
			t.Fatalf("the agent's sample is in the hub's host's series: %v", pts)
		}
	}
}

// TestHostsOfAnUnreachableAgent: the hosts of an agent the hub lost are
// failed, saying that their agent is unreachable, rather than up with
// values that no longer move; the next sample of each marks it up again.
func TestHostsOfAnUnreachableAgent(t *testing.T) {
	var mu sync.Mutex
	down, seq := false, 0
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		isDown := down
		seq++
		n := seq
		mu.Unlock()
		if isDown {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %d\nevent: sample\ndata: {\"seq\":%d,\"type\":\"sample\",\"source\":\"host/web-1\",\"metrics\":{\"cpu.percent\":5}}\n\n", n, n)
		w.(http.Flusher).Flush()
		if n == 1 { // the first stream ends at once, and the agent refuses until the test lets it back
			mu.Lock()
			down = true
			mu.Unlock()
			return
		}
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: agent.URL, Name: "web-1"}}}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the host failed with its agent", func() bool {
		st, _ := f.Store.Status("host/web-1")
		return st.State == collector.StateFailed && strings.Contains(st.Error, "its agent (upstream web-1) is unreachable since")
	})
	mu.Lock()
	down = false
	mu.Unlock()
	vigiltest.Eventually(t, 10*time.Second, "the host up with its next sample", func() bool {
		st, _ := f.Store.Status("host/web-1")
		return st.State == collector.StateUp
	})
}

// TestUpstreamInConfigAndFile: an agent both in the config and in the
// file is followed once, as the config says (its name and labels), and
// of two upstreams that go by one name only the first is followed.
func TestUpstreamInConfigAndFile(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(agent.Close)
	other := strings.Replace(agent.URL, "127.0.0.1", "localhost", 1)
	file := filepath.Join(t.TempDir(), "agents.json")
	os.WriteFile(file, []byte(`[{"targets": ["`+agent.URL+`"], "labels": {"role": "file"}}]`), 0o600)
	f := &collector.Fleet{File: file, FileInterval: 50 * time.Millisecond, Upstreams: []collector.UpstreamOptions{
		{URL: agent.URL, Name: "db-1", Labels: map[string]string{"role": "db"}},
		{URL: other, Name: "db-1"},
	}}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the agent followed", func() bool {
		st := f.Status()
		return len(st) == 1 && st[0].Connected
	})
	st := f.Status()
	if len(st) != 1 || st[0].Name != "db-1" || st[0].Labels["role"] != "db" || st[0].URL != agent.URL {
		t.Fatalf("upstreams: %+v, want the config's db-1 alone", st)
	}
}

// TestUpstreamHTTPToHTTPS: an http:// URL of an agent that speaks https
// is said so, not only "400 Bad Request".
func TestUpstreamHTTPToHTTPS(t *testing.T) {
	agent := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(agent.Close)
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: strings.Replace(agent.URL, "https://", "http://", 1), Name: "a"}}}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the error says the agent speaks https", func() bool {
		st := f.Status()
		return len(st) == 1 && strings.Contains(st[0].Error, "it speaks https; give an https:// URL")
	})
}

// TestUnreachedUpstreamHasNoHosts: an agent never reached lists its
// hosts as an empty list, not null, in /api/v1/upstreams.
func TestUnreachedUpstreamHasNoHosts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing answers there
	f := &collector.Fleet{Upstreams: []collector.UpstreamOptions{{URL: "http://" + addr, Name: "x"}}}
	runFleet(t, f)
	vigiltest.Eventually(t, 10*time.Second, "the upstream listed", func() bool { return len(f.Status()) == 1 })
	b, err := json.Marshal(f.Status()[0])
	if err != nil || !strings.Contains(string(b), `"hosts":[]`) {
		t.Fatalf("an upstream never reached: %s %v, want \"hosts\":[]", b, err)
	}
}
