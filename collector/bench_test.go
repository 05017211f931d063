package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"vigil/stream"
)

func BenchmarkStoreAppend(b *testing.B) {
	s := NewStore(10*time.Minute, time.Second)
	m := make(map[string]float64, 40)
	for i := range 40 {
		m[fmt.Sprintf("metric.%d", i)] = float64(i)
	}
	metrics := MetricsOf(m)
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Append(Sample{Source: "host/a", Time: now.Add(time.Duration(i) * time.Second), Metrics: metrics})
	}
}

// BenchmarkHostCollect is one real sample of this machine.
func BenchmarkHostCollect(b *testing.B) {
	h, err := NewHost(HostOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	h.Prime(ctx)
	b.ReportAllocs()
	for b.Loop() {
		h.Collect(ctx)
	}
}

// exposition1000 is a target with 1,000 series: 100 request counters
// (method × path × code) and a histogram of 15 buckets for each of 60
// method × path pairs.
func exposition1000() string {
	var b strings.Builder
	n := 0
	for m := range 2 {
		for p := range 30 {
			for _, code := range []string{"200", "500"} {
				if n < 100 {
					fmt.Fprintf(&b, "http_requests_total{method=\"m%d\",path=\"/p%d\",code=%q} %d\n", m, p, code, 1000+n)
					n++
				}
			}
			for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "50", "100", "+Inf"} {
				fmt.Fprintf(&b, "http_request_duration_seconds_bucket{method=\"m%d\",path=\"/p%d\",le=%q} %d\n", m, p, le, 500+n)
				n++
			}
		}
	}
	for n < 1000 {
		fmt.Fprintf(&b, "process_other_metric{i=\"%d\"} %d\n", n, n)
		n++
	}
	return b.String()
}

// BenchmarkScrape1000Series is one scrape of a 1,000-series target over
// loopback: fetch, parse, increases, window and percentiles.
func BenchmarkScrape1000Series(b *testing.B) {
	body := exposition1000()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	now := time.Unix(1000, 0)
	svc, err := NewService(ServiceOptions{Name: "big", Scrape: &ScrapeOptions{URLs: []string{srv.URL}}, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		if _, err := svc.Collect(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseExposition1000Series is the parse alone.
func BenchmarkParseExposition1000Series(b *testing.B) {
	body := exposition1000()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseExposition(strings.NewReader(body), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFleetIngest is a hub taking one agent's host sample of 40
// metrics, as its JSON comes off the stream: decoded, kept in the ring,
// republished. The reference beside it is the agent's own cost of the
// same sample (BenchmarkStoreAppend and the hub's Publish).
func BenchmarkFleetIngest(b *testing.B) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	f := &Fleet{Store: NewStore(10*time.Minute, time.Second), Hub: hub, Scheduler: &Scheduler{}}
	f.init()
	f.ctx = context.Background()
	u := &upstream{opts: UpstreamOptions{URL: "http://a:1", Labels: map[string]string{"role": "web"}}, key: "http://a:1", name: "a", suffix: bodySuffix("a", map[string]string{"role": "web"}), names: &nameCache{}, fleet: f}
	f.ups[u.key] = &runningUpstream{u: u, cancel: func() {}, hosts: map[string]bool{}, cut: map[string]bool{}}
	metrics := make(map[string]float64, 40)
	for i := range 40 {
		metrics[fmt.Sprintf("metric.%d{x=%d}", i, i)] = float64(i) * 1.5
	}
	body, _ := json.Marshal(metrics)
	ts := time.Unix(1000, 0).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	b.ReportAllocs()
	for i := 1; b.Loop(); i++ {
		data := fmt.Appendf(nil, `{"seq":%d,"type":"sample","ts":%q,"source":"host/a","metrics":%s}`, i, ts, body)
		if err := u.take("sample", data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/40/1000, "µs/point")
}

// BenchmarkStoreRangeMinute reads the last minute of one series of a
// source holding ten minutes of 40 series that move at random: what an
// alert rule averaging a minute reads, each second, of every host.
func BenchmarkStoreRangeMinute(b *testing.B) {
	s := NewStore(10*time.Minute, time.Second)
	rng := rand.New(rand.NewPCG(1, 1))
	t0 := time.Unix(1000, 0)
	for i := range 700 {
		m := make(map[string]float64, 40)
		for k := range 40 {
			m[fmt.Sprintf("metric.%d", k)] = math.Round(rng.Float64()*100000) / 1000
		}
		s.Append(Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: MetricsOf(m)})
	}
	since := t0.Add(639 * time.Second)
	var pts []Point
	b.ReportAllocs()
	for b.Loop() {
		pts, _ = s.AppendRange(pts[:0], "host/a", "metric.7", since)
	}
	if len(pts) != 61 {
		b.Fatalf("%d points", len(pts))
	}
}
