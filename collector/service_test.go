package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

const exposition = `# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a \"quoted\" \\ x\nnewline"} 1027 1395066363000
http_requests_total{code="500"} 3
http_request_duration_seconds_bucket{le="0.1"} 10
http_request_duration_seconds_bucket{le="+Inf"} 12
  up   1
nan_metric NaN
inf_metric -Inf
empty_labels{} 2.5e3
`

func TestParseExposition(t *testing.T) {
	got, err := ParseExposition(strings.NewReader(exposition), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("%d samples: %+v", len(got), got)
	}
	if got[0].Label("path") != "/a \"quoted\" \\ x\nnewline" || got[0].Label("code") != "200" || got[0].Value != 1027 {
		t.Errorf("escaped labels: %+v", got[0])
	}
	if got[3].Label("le") != "+Inf" || got[4].Name != "up" || !math.IsNaN(got[5].Value) || !math.IsInf(got[6].Value, -1) || got[7].Value != 2500 {
		t.Errorf("values: %+v", got[3:])
	}
	for _, bad := range []string{
		"no_value\n",
		"x{a=\"1\" 2\n",
		"x{a=1} 2\n",
		"x{=\"1\"} 2\n",
		"x{a=\"1} 2\n",
		"x 1 2 3\n",
		"x one\n",
		"x 1 yesterday\n",
		"{a=\"1\"} 2\n",
		"7x 1\n",
	} {
		_, err := ParseExposition(strings.NewReader("ok 1\n"+bad), 0)
		if !errors.Is(err, ErrExposition) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
	_, err = ParseExposition(strings.NewReader("x 1\n"+strings.Repeat("y", MaxExpositionLine+1)+" 1\n"), 0)
	if !errors.Is(err, ErrExposition) {
		t.Errorf("overlong line: %v", err)
	}
}

func FuzzParseExposition(f *testing.F) {
	f.Add(exposition)
	f.Add("a{b=\"c\\\"\"} 1\n")
	f.Add("x_bucket{vmrange=\"1.000e-03...1.136e-03\"} 5\n")
	f.Add("x_bucket{le=\"NaN\"} 1\nx_bucket{le=\"nan\"} 1\n")
	f.Add("x_bucket{vmrange=\"NaN...1\"} 1\n")
	f.Add("a 1\nb 2\nc 3\nd 4\ne 5\nf 6\n")
	f.Add("x{" + strings.Repeat("n", MaxLabelNameBytes+1) + "=\"" + strings.Repeat("v", MaxLabelValueBytes+1) + "\"} 1\n")
	const limit = 5 // small, so that fuzzed inputs reach it
	f.Fuzz(func(t *testing.T, text string) {
		samples, err := ParseExposition(strings.NewReader(text), limit)
		var tooMany *SeriesLimitError
		if err != nil && !errors.Is(err, ErrExposition) && !errors.As(err, &tooMany) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if len(samples) > limit || (tooMany != nil && len(samples) != limit) {
			t.Fatalf("%d samples under a limit of %d, error %v", len(samples), limit, err)
		}
		// An error says where and what, and does not carry the body.
		if err != nil && len(err.Error()) > 120 {
			t.Fatalf("error of %d bytes: %.200q", len(err.Error()), err)
		}
		for _, s := range samples {
			if s.Name == "" || len(s.Labels) > MaxLabels {
				t.Fatalf("bad sample %+v", s)
			}
			for _, l := range s.Labels {
				if len(l.Name) > MaxLabelNameBytes || len(l.Value) > MaxLabelValueBytes {
					t.Fatalf("label over the limits: %d-byte name, %d-byte value", len(l.Name), len(l.Value))
				}
				lo, hi, _ := strings.Cut(l.Value, "...")
				if (l.Name == "le" && isNaN(l.Value)) || (l.Name == "vmrange" && (isNaN(lo) || isNaN(hi))) {
					t.Fatalf("NaN bucket bound accepted: %+v", s)
				}
			}
		}
		// Whatever parses can be fed to a scraper without a panic.
		sc := &scraper{opts: ScrapeOptions{Requests: DefaultRequestsMetric, Latency: DefaultLatencyMetric}, errSel: mustSelector(t, DefaultErrorSelector)}
		sc.increases(samples, time.Unix(1, 0))
		sc.increases(samples, time.Unix(2, 0))
	})
}

func isNaN(s string) bool {
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && math.IsNaN(v)
}

func mustSelector(t testing.TB, s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestSelector(t *testing.T) {
	smp := func(labels ...Label) PromSample { return PromSample{Labels: labels} }
	tests := []struct {
		sel  string
		s    PromSample
		want bool
	}{
		{`code=~"5.."`, smp(Label{"code", "503"}), true},
		{`code=~"5.."`, smp(Label{"code", "5030"}), false}, // anchored
		{`code=~"5.."`, smp(Label{"status", "500"}), true}, // the default also reads "status"
		{`code=~"5.."`, smp(Label{"code", "200"}), false},
		{`code=~"5.."`, smp(), false},
		{`outcome="error"`, smp(Label{"outcome", "error"}), true},
		{`outcome!="ok"`, smp(Label{"outcome", "error"}), true},
		{`code!~"2.."`, smp(Label{"code", "404"}), true},
		{`status="5.."`, smp(Label{"status", "500"}), false}, // = is literal
	}
	for _, tt := range tests {
		if got := mustSelector(t, tt.sel).Match(tt.s); got != tt.want {
			t.Errorf("%s on %v = %v", tt.sel, tt.s.Labels, got)
		}
	}
	for _, bad := range []string{"", "code", `code=5`, `code=~"("`, `1x="a"`} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	// 100 observations spread evenly over (0, 1]: ten per 0.1 bucket.
	cum := map[float64]float64{math.Inf(1): 100}
	for i := 1; i <= 10; i++ {
		cum[float64(i)/10] = float64(10 * i)
	}
	h := histogramFromLE(cum)
	for q, want := range map[float64]float64{0.5: 0.5, 0.9: 0.9, 0.99: 0.99, 0.25: 0.25, 1: 1} {
		if got := h.Quantile(q); math.Abs(got-want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if h.Max() != 1 {
		t.Errorf("max %v", h.Max())
	}
	// Observations beyond the last finite bucket: the quantile stops at it.
	h = histogramFromLE(map[float64]float64{0.1: 1, math.Inf(1): 10})
	if got := h.Quantile(0.9); got != 0.1 {
		t.Errorf("rank in +Inf: %v", got)
	}
	if !math.IsNaN(Histogram{}.Quantile(0.5)) {
		t.Error("empty histogram has a quantile")
	}
	// Merging adds buckets.
	a := histogramFromLE(map[float64]float64{0.1: 90, 1: 90})
	b := histogramFromLE(map[float64]float64{0.1: 0, 1: 10})
	a.Add(b)
	if a.Total() != 100 || a.Quantile(0.5) > 0.1 {
		t.Errorf("merged: total %v p50 %v", a.Total(), a.Quantile(0.5))
	}
}

// instance is an HTTP server exposing a VictoriaMetrics/metrics set, as a
// service instrumented with that library would.
type instance struct {
	mu  sync.Mutex
	set *metrics.Set
	srv *httptest.Server
	vm  bool // VictoriaMetrics vmrange histogram instead of Prometheus le buckets
}

func newInstance(t *testing.T, vm bool) *instance {
	in := &instance{set: metrics.NewSet(), vm: vm}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.mu.Lock()
		defer in.mu.Unlock()
		in.set.WritePrometheus(w)
	}))
	t.Cleanup(in.srv.Close)
	return in
}

// serve records n requests with latencies from lat(i) and the given share
// of 500s.
func (in *instance) serve(n int, errShare float64, lat func(i int) float64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	errs := int(math.Round(float64(n) * errShare))
	in.set.GetOrCreateCounter(`http_requests_total{code="200"}`).Add(n - errs)
	in.set.GetOrCreateCounter(`http_requests_total{code="500"}`).Add(errs)
	for i := range n {
		if in.vm {
			in.set.GetOrCreateHistogram(`http_request_duration_seconds`).Update(lat(i))
		} else {
			in.set.GetOrCreatePrometheusHistogram(`http_request_duration_seconds`).Update(lat(i))
		}
	}
}

// restart loses every counter, as a process restart does.
func (in *instance) restart() {
	in.mu.Lock()
	in.set = metrics.NewSet()
	in.mu.Unlock()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func uniform(n int) func(int) float64 {
	return func(i int) float64 { return (float64(i) + 0.5) / float64(n) }
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
	}
}

func TestScrapeRatesAndQuantiles(t *testing.T) {
	for _, vm := range []bool{false, true} {
		t.Run(fmt.Sprintf("vmrange=%v", vm), func(t *testing.T) {
			in := newInstance(t, vm)
			clock := &fakeClock{t: time.Unix(1000, 0)}
			svc, err := NewService(ServiceOptions{Name: "api", Scrape: &ScrapeOptions{URLs: []string{in.srv.URL}}, Window: time.Minute, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			in.serve(100, 0, uniform(100)) // before vigil looks: only a baseline
			if m, err := svc.Collect(context.Background()); err != nil || m["instances.up"] != 1 {
				t.Fatalf("first scrape: %v %v", m, err)
			}
			in.serve(1000, 0.1, uniform(1000))
			clock.Advance(10 * time.Second)
			m, err := svc.Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			near(t, "rate", m["http.requests_per_sec"], 100, 1e-9)
			near(t, "error %", m["http.error_percent"], 10, 1e-9)
			// Uniform latencies over (0, 1]: p = quantile. le buckets
			// (0.5, 1) are exact at these points; vmrange buckets are
			// 18 a decade (each 13.6% wide), so interpolating inside one
			// is within 7%.
			tol := 1e-6
			if vm {
				tol = 0.07
			}
			near(t, "p50", m["http.latency_p50_seconds"], 0.5, tol*0.5+1e-6)
			near(t, "p90", m["http.latency_p90_seconds"], 0.9, tol*0.9+0.01)
			near(t, "p99", m["http.latency_p99_seconds"], 0.99, tol*0.99+0.01)
			near(t, "p99.5", m["http.latency_p99_5_seconds"], 0.995, tol+0.01)
			near(t, "max", m["http.latency_max_seconds"], 1, 0.05)
			if m["http.requests_per_sec{instance="+strings.TrimPrefix(in.srv.URL, "http://")+"}"] != m["http.requests_per_sec"] {
				t.Error("per-instance rate missing")
			}

			// A restart resets every counter: the next increase counts
			// from zero and no rate goes negative. (As with Prometheus, a
			// counter that is back above its old value by the next scrape
			// hides its reset.)
			in.restart()
			in.serve(50, 0.5, func(int) float64 { return 0.001 })
			clock.Advance(10 * time.Second)
			m, _ = svc.Collect(context.Background())
			near(t, "rate across the reset", m["http.requests_per_sec"], 1050.0/20, 1e-9)
			near(t, "error % across the reset", m["http.error_percent"], 100*(100.0+25)/1050, 1e-9)
		})
	}
}

func TestScrapeNewAndVanishedSeries(t *testing.T) {
	var mu sync.Mutex
	body := "http_requests_total{code=\"200\"} 100\nhttp_requests_total{code=\"500\"} 10\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	svc, _ := NewService(ServiceOptions{Name: "api", Scrape: &ScrapeOptions{URLs: []string{srv.URL}}, Window: 5 * time.Second, Now: clock.Now})
	svc.Collect(context.Background())
	mu.Lock() // code 500 vanishes; 503 appears with a large count
	body = "http_requests_total{code=\"200\"} 150\nhttp_requests_total{code=\"503\"} 9000\n"
	mu.Unlock()
	clock.Advance(5 * time.Second)
	m, _ := svc.Collect(context.Background())
	near(t, "rate", m["http.requests_per_sec"], 10, 1e-9) // 50 over 5 s; the new series is a baseline
	near(t, "error %", m["http.error_percent"], 0, 1e-9)
	mu.Lock()
	body = "http_requests_total{code=\"200\"} 150\nhttp_requests_total{code=\"503\"} 9010\n"
	mu.Unlock()
	clock.Advance(5 * time.Second)
	m, _ = svc.Collect(context.Background())
	near(t, "rate once the window moved on", m["http.requests_per_sec"], 2, 1e-9)
	near(t, "error % from the new series", m["http.error_percent"], 100, 1e-9)
}

func TestScrapeMergesInstancesByBuckets(t *testing.T) {
	fast, slow := newInstance(t, false), newInstance(t, false)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	svc, _ := NewService(ServiceOptions{Name: "api", Window: time.Minute, Now: clock.Now,
		Scrape: &ScrapeOptions{URLs: []string{fast.srv.URL, slow.srv.URL, down.URL}}})
	fast.serve(1, 0, uniform(1))
	slow.serve(1, 0, uniform(1))
	svc.Collect(context.Background())
	fast.serve(900, 0, func(int) float64 { return 0.004 })
	slow.serve(100, 1, func(int) float64 { return 2 })
	clock.Advance(10 * time.Second)
	m, err := svc.Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("down instance not reported: %v", err)
	}
	if m["instances.up"] != 2 || m["instances.total"] != 3 {
		t.Errorf("instances %v of %v", m["instances.up"], m["instances.total"])
	}
	near(t, "merged rate", m["http.requests_per_sec"], 100, 1e-9)
	near(t, "merged error %", m["http.error_percent"], 10, 1e-9)
	// Merged buckets: p50 is a fast request. Averaging the instances' p50s
	// would have said about a second.
	if p50 := m["http.latency_p50_seconds"]; p50 > 0.005 {
		t.Errorf("merged p50 = %v, want a fast request's", p50)
	}
	if p99 := m["http.latency_p99_seconds"]; p99 < 1 || p99 > 2.5 {
		t.Errorf("merged p99 = %v, want a slow request's", p99)
	}
}

// TestServiceTraffic: a sample carries what its collect saw as counts —
// the increases of every instance that answered, the buckets merged, the
// seconds covered — for a hub to merge with other hosts'; the first
// scrape, a baseline, carries none.
func TestServiceTraffic(t *testing.T) {
	fast, slow := newInstance(t, false), newInstance(t, true)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	svc, _ := NewService(ServiceOptions{Name: "api", Window: time.Minute, Now: clock.Now,
		Scrape: &ScrapeOptions{URLs: []string{fast.srv.URL, slow.srv.URL}}})
	fast.serve(5, 0, uniform(5))
	slow.serve(5, 0, uniform(5))
	svc.Collect(context.Background())
	if _, ok := svc.Traffic(); ok {
		t.Fatal("a baseline scrape has traffic")
	}
	fast.serve(900, 0, func(int) float64 { return 0.004 })
	slow.serve(100, 0.5, func(int) float64 { return 2 })
	clock.Advance(10 * time.Second)
	svc.Collect(context.Background())
	tr, ok := svc.Traffic()
	if !ok || tr.Requests != 1000 || tr.Errors != 50 || tr.Seconds != 10 {
		t.Fatalf("traffic %+v %v", tr, ok)
	}
	h, err := HistogramOf(tr.Latency)
	if err != nil {
		t.Fatal(err)
	}
	if h.Total() != 1000 || h.Quantile(0.5) > 0.005 || h.Quantile(0.99) < 1 {
		t.Fatalf("latency buckets %v: total %v p50 %v p99 %v", tr.Latency, h.Total(), h.Quantile(0.5), h.Quantile(0.99))
	}
}

// TestHistogramBucketsRoundTrip: a histogram written as Traffic.Latency
// reads back the same, +Inf included; a bucket that is not lo...hi, or a
// count that is not a number of observations, is refused.
func TestHistogramBucketsRoundTrip(t *testing.T) {
	h := Histogram{0.1: {Lo: 0, Count: 3}, 0.25: {Lo: 0.1, Count: 2}, math.Inf(1): {Lo: 0.25, Count: 1}}
	back, err := HistogramOf(h.Buckets())
	if err != nil || !reflect.DeepEqual(back, h) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []map[string]float64{{"0.1": 1}, {"0.2...0.1": 1}, {"a...b": 1}, {"0...1": -1}, {"0...1": math.NaN()}, {"NaN...1": 1}, {"-Inf...1": 1}} {
		if _, err := HistogramOf(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestScrapeBadTargets(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	handlers := map[string]http.HandlerFunc{
		"garbage": func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>not metrics</html>\n") },
		"empty":   func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "# nothing here\nother_metric 1\n") },
		"status":  func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) },
		"huge": func(w http.ResponseWriter, r *http.Request) {
			for range 2000 {
				fmt.Fprintln(w, "http_requests_total{code=\"200\",pad=\""+strings.Repeat("x", 1000)+"\"} 1")
			}
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		},
		// The connection ends within a line: a failed read, not a
		// malformed exposition.
		"cut": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			fmt.Fprint(w, "http_requests_total{code=\"200\"} 1\nhttp_requests_total{code=\"5")
		},
	}
	want := map[string]string{"garbage": "body: malformed exposition", "empty": "body: no series", "status": "status: 500",
		"huge": "body: larger than", "slow": "timeout", "cut": "network: reading the body: unexpected EOF"}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			timeout := 10 * time.Second // a megabyte read under the race detector on a busy machine
			if name == "slow" {
				timeout = 300 * time.Millisecond
			}
			svc, _ := NewService(ServiceOptions{Name: name, Scrape: &ScrapeOptions{URLs: []string{srv.URL}, Timeout: timeout, MaxBytes: 1 << 20}})
			m, err := svc.Collect(context.Background())
			if err == nil || !strings.Contains(err.Error(), want[name]) {
				t.Fatalf("error %v, want %q", err, want[name])
			}
			if m["scrape.up{instance="+strings.TrimPrefix(srv.URL, "http://")+"}"] != 0 || m["instances.up"] != 0 {
				t.Errorf("failed target counted up: %v", m)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	var mu sync.Mutex
	status, body := 200, `{"status":{"db":"ok"}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	set := func(s int, b string) { mu.Lock(); status, body = s, b; mu.Unlock() }
	svc, _ := NewService(ServiceOptions{Name: "web", Window: time.Minute, Probe: &ProbeOptions{
		URLs: []string{srv.URL}, Timeout: time.Second, BodyRegex: regexp.MustCompile(`"db"`), JSONField: "status.db", JSONEquals: "ok"}})
	inst := "{instance=" + strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://") + "}"

	m, err := svc.Collect(context.Background())
	if err != nil || m["probe.up"+inst] != 1 || m["probe.status_code"+inst] != 200 || m["instances.up"] != 1 {
		t.Fatalf("healthy probe: %v %v", m, err)
	}
	for _, k := range []string{"probe.connect_seconds", "probe.ttfb_seconds", "probe.total_seconds"} {
		if v, ok := m[k+inst]; !ok || v < 0 || v > 1 {
			t.Errorf("%s = %v, %v", k, v, ok)
		}
	}
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{503, body, "status: got 503"},
		{200, `{"status":{"cache":"ok"}}`, "body: does not match"},
		{200, `{"db": 1}`, "body: field status.db missing"},
		{200, `{"status":{"db":"down"}}`, `body: field status.db: want "ok", got a different string`},
		{200, `{"status":{"db":["down"]}}`, `body: field status.db: want "ok", got an array`},
		{200, `not json "db"`, "body: not JSON (at byte 2)"},
		{200, `{"status":{"db":"down"`, "body: not JSON (ends early"},
	} {
		set(tc.status, tc.body)
		m, err := svc.Collect(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || m["probe.up"+inst] != 0 {
			t.Errorf("%d %q: error %v, want %q", tc.status, tc.body, err, tc.want)
		}
		// The error says what was wanted, never what the target answered.
		if err != nil && (strings.Contains(err.Error(), "down") || strings.Contains(err.Error(), "'o'")) {
			t.Errorf("%d %q: error quotes the body: %v", tc.status, tc.body, err)
		}
	}
	set(200, `{"status":{"db":"ok"}}`)
	m, _ = svc.Collect(context.Background())
	// Without a scrape the probes are the traffic: 7 of 9 failed.
	near(t, "probe error %", m["http.error_percent"], 100*7.0/9, 1e-9)
	if m["http.latency_max_seconds"] <= 0 || m["http.latency_p50_seconds"] > m["http.latency_max_seconds"] {
		t.Errorf("probe latency percentiles: %v", m)
	}
}

func TestProbeFailureReasons(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	hang := make(chan struct{})
	defer close(hang)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	defer untrusted.Close()
	redirect := httptest.NewServer(http.RedirectHandler("http://elsewhere.invalid/", http.StatusFound))
	defer redirect.Close()
	for _, tc := range []struct{ url, want string }{
		{closed.URL, "refused"},
		{slow.URL, "timeout"},
		{untrusted.URL, "tls"},
		{redirect.URL, "status: got 302"}, // redirects are not followed
		{"http://vigil-test.invalid/", "dns"},
	} {
		timeout := 5 * time.Second // a TLS handshake under -race on a loaded machine takes its time
		if tc.want == "timeout" {
			timeout = 500 * time.Millisecond
		}
		svc, _ := NewService(ServiceOptions{Name: "x", Probe: &ProbeOptions{URLs: []string{tc.url}, Timeout: timeout}})
		_, err := svc.Collect(context.Background())
		if tc.want == "dns" && err != nil && strings.Contains(err.Error(), "timeout") {
			continue // a resolver that cannot be reached at all times out instead
		}
		if err == nil || !strings.Contains(err.Error(), "probe "+tc.url+": "+tc.want) {
			t.Errorf("%s: %v, want reason %s", tc.url, err, tc.want)
		}
	}
}

func TestProbeCertificateExpiry(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport)
	svc, _ := NewService(ServiceOptions{Name: "tls", Probe: &ProbeOptions{URLs: []string{srv.URL}, Transport: tr, Timeout: time.Second}})
	m, err := svc.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	inst := "{instance=" + strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://") + "}"
	want := srv.Certificate().NotAfter.Sub(time.Now()).Hours() / 24
	near(t, "cert days", m["probe.cert_expiry_days"+inst], want, 1)
	if _, ok := m["probe.tls_seconds"+inst]; !ok {
		t.Error("TLS handshake time missing")
	}
}

func TestNewServiceRejectsBadOptions(t *testing.T) {
	for _, o := range []ServiceOptions{
		{},
		{Name: "x"},
		{Name: "x", Probe: &ProbeOptions{}},
		{Name: "x", Scrape: &ScrapeOptions{}},
		{Name: "x", Scrape: &ScrapeOptions{URLs: []string{"http://a"}, Errors: "code"}},
	} {
		if _, err := NewService(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
