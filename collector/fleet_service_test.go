package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFleetPercentilesFromMergedBuckets: one service on three agents,
// its traffic split unevenly — most requests fast on one host, a few
// slow ones on another. Each agent scrapes its instance (VictoriaMetrics
// buckets, 18 a decade) and sends its counts, as a sample's JSON; the hub
// merges them. The merged p99 is within one bucket of the exact p99 of
// every observation; the average of the agents' p99s — what Turbine
// shows — is nowhere near it.
func TestFleetPercentilesFromMergedBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lognormal := func(median, sigma float64) func(int) float64 {
		return func(int) float64 { return median * math.Exp(sigma*rng.NormFloat64()) }
	}
	agents := []struct {
		name   string
		n      int
		median float64
	}{{"web-1", 9000, 0.010}, {"web-2", 900, 0.040}, {"web-3", 100, 0.800}}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	hub := &fleetService{name: "service/api", window: time.Minute, hosts: map[string]*hostTraffic{}, now: clock.Now}
	var all []float64
	var agentP99s []float64
	for _, a := range agents {
		in := newInstance(t, true)
		svc, err := NewService(ServiceOptions{Name: "api", Window: time.Minute, Now: clock.Now, Scrape: &ScrapeOptions{URLs: []string{in.srv.URL}}})
		if err != nil {
			t.Fatal(err)
		}
		in.serve(1, 0, func(int) float64 { return 0.001 })
		if _, err := svc.Collect(context.Background()); err != nil { // a baseline
			t.Fatal(err)
		}
		lat := lognormal(a.median, 0.5)
		var mine []float64
		in.serve(a.n, 0, func(i int) float64 { v := lat(i); mine = append(mine, v); return v })
		all = append(all, mine...)
		clock.Advance(10 * time.Second)
		m, err := svc.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		agentP99s = append(agentP99s, m["http.latency_p99_seconds"])
		tr, _ := svc.Traffic()
		// As the hub gets it: the sample's JSON.
		b, _ := json.Marshal(SampleBody{Metrics: m, Traffic: &tr})
		ev, err := decodeAgentEvent(b, &nameCache{})
		if err != nil {
			t.Fatal(err)
		}
		ev.Type, ev.Source = "sample", "service/api"
		hub.take(a.name, ev, clock.Now())
	}
	m, err := hub.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	exact := all[int(math.Ceil(0.99*float64(len(all))))-1]
	merged := m["http.latency_p99_seconds"]
	bucket := exact * (math.Pow(10, 1.0/18) - 1) // the width of a bucket around exact
	if math.Abs(merged-exact) > bucket {
		t.Errorf("merged p99 %.4fs, exact %.4fs: more than one bucket (%.4fs) apart", merged, exact, bucket)
	}
	avg := (agentP99s[0] + agentP99s[1] + agentP99s[2]) / 3
	if math.Abs(avg-exact) < 10*bucket {
		t.Errorf("the average of the agents' p99s, %.4fs, is close to the exact %.4fs: the data does not show averaging is wrong", avg, exact)
	}
	t.Logf("exact p99 %.4fs, merged %.4fs, average of per-agent p99s %v = %.4fs", exact, merged, fmt.Sprintf("%.4f", agentP99s), avg)
	if m["hosts.up"] != 3 || m["hosts.total"] != 3 || m["http.requests_per_sec"] != 1000 {
		t.Errorf("hosts %v of %v, rate %v", m["hosts.up"], m["hosts.total"], m["http.requests_per_sec"])
	}
}

// TestFleetServiceHosts: a host whose samples stop is not up and is named
// in the service's error; so is a host whose agent reports the service
// failing; counts that are not counts (negative, NaN, errors beyond
// requests) are not taken; a host the hub stops following is forgotten.
func TestFleetServiceHosts(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := &fleetService{name: "service/api", window: 30 * time.Second, hosts: map[string]*hostTraffic{}, now: clock.Now}
	sample := func(host string, tr *Traffic) {
		s.take(host, agentEvent{Type: "sample", Source: "service/api", Metrics: MetricsOf(map[string]float64{"instances.up": 1, "instances.total": 2}), Traffic: tr}, clock.Now())
	}
	for range 5 {
		sample("a", &Traffic{Requests: 100, Errors: 5, Seconds: 1, Latency: map[string]float64{"0...0.1": 100}})
		sample("b", &Traffic{Requests: 10, Errors: 50, Seconds: 1}) // more errors than requests: capped
		sample("c", &Traffic{Requests: -7, Errors: math.NaN(), Seconds: 1})
		clock.Advance(time.Second)
	}
	m, err := s.Collect(context.Background())
	if err != nil || m["hosts.up"] != 3 || m["http.requests_per_sec"] != 110 || m["http.error_percent"] != 100*(25.0+50)/550 {
		t.Fatalf("all up: %v %v", m, err)
	}
	if m["http.requests_per_sec{host=c}"] != 0 || m["instances.up"] != 3 || m["instances.total"] != 6 {
		t.Fatalf("per host: %v", m)
	}
	s.take("b", agentEvent{Type: "source", Source: "service/api", SourceState: SourceState{State: StateFailed, Error: "scrape x: refused"}}, clock.Now())
	clock.Advance(10 * time.Second) // a, b and c stop sending
	sample("a", &Traffic{Requests: 100, Seconds: 1})
	m, err = s.Collect(context.Background())
	if m["hosts.up"] != 1 || m["up{host=b}"] != 0 || m["up{host=a}"] != 1 || err == nil ||
		!strings.Contains(err.Error(), "host b: no sample since") || !strings.Contains(err.Error(), "host c: no sample since") {
		t.Fatalf("stale hosts: %v %v", m, err)
	}
	sample("b", &Traffic{Requests: 1, Seconds: 1})
	if _, err := s.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "host b: scrape x: refused") {
		t.Fatalf("failing host: %v", err)
	}
	s.forget("b")
	s.forget("c")
	if m, err := s.Collect(context.Background()); err != nil || m["hosts.total"] != 1 {
		t.Fatalf("after forgetting: %v %v", m, err)
	}
}

// TestBadUpstreamsFileCountedOnce: a bad upstreams file is counted and
// logged once for each bad content, not each time it is looked at.
func TestBadUpstreamsFileCountedOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agents.json")
	f := &Fleet{File: file}
	f.init()
	look := func(content string, want uint64) {
		t.Helper()
		os.WriteFile(file, []byte(content), 0o600)
		for range 3 {
			f.readFile(nil)
		}
		if got := f.fileErrors.Get(); got != want {
			t.Fatalf("after %q, looked at three times: %d errors counted, want %d", content, got, want)
		}
	}
	look(`[{"targets": "x"}]`, 1)
	look(`[{"targets": "y"}]`, 2)
	look(`[]`, 2)
	look(`[{"targets": "x"}]`, 3) // bad again after a good one
}
