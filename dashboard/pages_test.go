package dashboard

import (
	"compress/gzip"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"vigil/collector"
	"vigil/stream"
)

func getPage(t *testing.T, url string) (*http.Response, *goquery.Document) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, doc
}

func TestIndexPage(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }, Version: "v9"})
	for i := range 5 {
		ts := now.Add(time.Duration(i-4) * time.Second)
		a.store.Append(collector.Sample{Source: "host/web-1", Time: ts, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": float64(10 * i), "fs.used_percent{mount=/}": 50, "fs.size_bytes{mount=/}": 1 << 30})})
		a.store.Append(collector.Sample{Source: "service/quiet", Time: ts, Metrics: collector.MetricsOf(map[string]float64{"http.requests_per_sec": 5, "http.error_percent": 0})})
		a.store.Append(collector.Sample{Source: "service/busy", Time: ts, Metrics: collector.MetricsOf(map[string]float64{"http.requests_per_sec": 5000, "http.error_percent": 0.5})})
		a.store.Append(collector.Sample{Source: "service/broken", Time: ts, Metrics: collector.MetricsOf(map[string]float64{"http.requests_per_sec": 1, "http.error_percent": 50})})
		a.store.Append(collector.Sample{Source: "queue/jobs", Time: ts, Metrics: collector.MetricsOf(map[string]float64{"depth": 3})})
	}
	a.store.SetStatus("queue/jobs", collector.StateFailed, "scrape: connection refused", now)
	a.publish(t, "host/web-1", 1)

	resp, doc := getPage(t, a.srv.URL+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	nonce := doc.Find(`script[src^="/static/app.js"]`).AttrOr("nonce", "")
	if resp.StatusCode != 200 || nonce == "" || !strings.Contains(csp, "script-src 'nonce-"+nonce+"'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("status %d, CSP %q, nonce %q", resp.StatusCode, csp, nonce)
	}
	if got := doc.Find("body").AttrOr("data-last-event-id", ""); got != "1" {
		t.Errorf("page resumes from %q, want 1 (the last published id)", got)
	}
	if doc.Find(`[data-testid="host-panel"][data-source="host/web-1"]`).Length() != 1 {
		t.Error("host panel missing")
	}
	if v := doc.Find(`svg[data-spark="cpu.percent"]`).AttrOr("data-values", ""); v != "0 10 20 30 40" {
		t.Errorf("CPU sparkline from the ring: %q", v)
	}
	var order []string
	doc.Find(`[data-testid="tile"]`).Each(func(_ int, s *goquery.Selection) { order = append(order, s.AttrOr("data-source", "")) })
	// Default sort: error band first, then volume, then name.
	if strings.Join(order, " ") != "service/broken service/busy service/quiet queue/jobs" {
		t.Errorf("tile order %v", order)
	}
	if s := doc.Find(`[data-source="queue/jobs"] [data-testid="status"]`); !s.HasClass("status-failed") {
		t.Error("failed generic source not marked")
	}

	_, doc = getPage(t, a.srv.URL+"/?sort=name&q=bu")
	order = nil
	doc.Find(`[data-testid="tile"]:not([hidden])`).Each(func(_ int, s *goquery.Selection) { order = append(order, s.AttrOr("data-source", "")) })
	if strings.Join(order, " ") != "service/busy" || doc.Find(`#sort option[selected]`).AttrOr("value", "") != "name" {
		t.Errorf("view state from the URL: visible %v", order)
	}
}

// TestServicePageChartsEachSeriesOnce: a service with one instance has
// the same figures as that instance; its page charts them once, the
// service's, and keeps what only the instance has. With two instances,
// each instance's are charted too.
func TestServicePageChartsEachSeriesOnce(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }})
	a.store.Append(collector.Sample{Source: "service/one", Time: now, Metrics: collector.MetricsOf(map[string]float64{
		"http.error_percent": 1, "http.error_percent{instance=a:1}": 1, "probe.status_code{instance=a:1}": 200})})
	a.store.Append(collector.Sample{Source: "service/two", Time: now, Metrics: collector.MetricsOf(map[string]float64{
		"http.error_percent": 1, "http.error_percent{instance=a:1}": 0, "http.error_percent{instance=b:1}": 2})})
	charts := func(source string) []string {
		_, doc := getPage(t, a.srv.URL+"/source/"+source)
		var out []string
		doc.Find(`[data-testid="chart"] .legend b`).Each(func(_ int, s *goquery.Selection) {
			out = append(out, s.AttrOr("data-metric", ""))
		})
		return out
	}
	if got := charts("service/one"); !slices.Equal(got, []string{"http.error_percent", "probe.status_code{instance=a:1}"}) {
		t.Errorf("one instance: %q", got)
	}
	if got := charts("service/two"); len(got) != 3 || got[1] != "http.error_percent{instance=a:1}" {
		t.Errorf("two instances: %q", got)
	}
}

// TestServiceMaxIsABoundWhenFromBuckets: a scraped service's max latency
// is a histogram bucket's top, and its tile says so ("≤ 1 s"); a probed
// one's is the slowest probe measured, shown as it is.
func TestServiceMaxIsABoundWhenFromBuckets(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }})
	a.store.Append(collector.Sample{Source: "service/scraped", Time: now, Metrics: collector.MetricsOf(map[string]float64{
		"http.requests_per_sec": 10, "http.latency_max_seconds": 1, "scrape.up{instance=a:1}": 1})})
	a.store.Append(collector.Sample{Source: "service/probed", Time: now, Metrics: collector.MetricsOf(map[string]float64{
		"http.requests_per_sec": 1, "http.latency_max_seconds": 0.0123, "probe.up{instance=a:1}": 1})})
	for source, want := range map[string][2]string{"service/scraped": {"≤ 1 s", "latency-bound"}, "service/probed": {"12 ms", "latency"}} {
		_, doc := getPage(t, a.srv.URL+"/source/"+source)
		max := doc.Find(`[data-testid="max"]`)
		if got := strings.TrimSpace(max.Text()); got != want[0] || max.AttrOr("data-fmt", "") != want[1] {
			t.Errorf("%s: max %q as %q, want %q as %q", source, got, max.AttrOr("data-fmt", ""), want[0], want[1])
		}
	}
}

func TestSourcePageAndStatic(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }})
	a.store.Append(collector.Sample{Source: "host/web-1", Time: now, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 1, "load.1": 2})})
	a.store.SetStatus("host/web-1", collector.StateFailed, "filesystem /mnt: input/output error", now)

	resp, doc := getPage(t, a.srv.URL+"/source/host/web-1")
	if resp.StatusCode != 200 || doc.Find(`[data-testid="chart"] path.line`).Length() != 2 ||
		!strings.Contains(doc.Find(`[data-testid="last-error"]`).Text(), "input/output error") {
		t.Fatalf("drill-down: %d", resp.StatusCode)
	}
	if r, err := http.Get(a.srv.URL + "/source/host/nope"); err != nil || r.StatusCode != 404 {
		t.Errorf("unknown source: %v %v", r.StatusCode, err)
	}

	r, err := http.Get(a.srv.URL + "/static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	etag := r.Header.Get("ETag")
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") || etag == "" || !strings.Contains(string(body), "EventSource") {
		t.Fatalf("app.js: %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), etag)
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/static/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != 304 {
		t.Errorf("revalidation: %d", r.StatusCode)
	}
	// The charting library, with its licence, from this binary; gzipped
	// for a browser that takes it; no notes beside it.
	req, _ = http.NewRequest("GET", a.srv.URL+"/static/vendor/uplot/uPlot.iife.min.js", nil)
	req.Header.Set("Accept-Encoding", "br, gzip;q=0.8")
	if r, err := http.DefaultTransport.RoundTrip(req); err != nil || r.StatusCode != 200 || r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("uPlot gzipped: %v %v", r, err)
	} else {
		z, _ := gzip.NewReader(r.Body)
		b, _ := io.ReadAll(z)
		if !strings.HasPrefix(string(b), "/*! https://github.com/leeoniya/uPlot") || r.ContentLength >= int64(len(b)) {
			t.Errorf("uPlot: %d bytes gzipped to %d", len(b), r.ContentLength)
		}
	}
	req.Header.Set("Accept-Encoding", "gzip;q=0")
	if r, _ := http.DefaultTransport.RoundTrip(req); r.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip refused, still sent as %q", r.Header.Get("Content-Encoding"))
	}
	if r, _ := http.Get(a.srv.URL + "/static/vendor/uplot/LICENSE"); r.StatusCode != 200 {
		t.Errorf("uPlot's licence: %d", r.StatusCode)
	}
	if r, _ := http.Get(a.srv.URL + "/static/vendor/uplot/README.md"); r.StatusCode != 404 {
		t.Errorf("notes: %d", r.StatusCode)
	}
	if r, _ := http.Get(a.srv.URL + "/static/nope.js"); r.StatusCode != 404 {
		t.Errorf("missing asset: %d", r.StatusCode)
	}
	// Nothing on the page comes from another origin.
	_, doc = getPage(t, a.srv.URL+"/")
	external := regexp.MustCompile(`^(https?:)?//`)
	doc.Find("[src], [href]").Each(func(_ int, s *goquery.Selection) {
		for _, attr := range []string{"src", "href"} {
			if v, ok := s.Attr(attr); ok && external.MatchString(v) {
				t.Errorf("external reference %s=%q", attr, v)
			}
		}
	})
}
