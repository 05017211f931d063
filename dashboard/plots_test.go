package dashboard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"vigil/alerts"
	"vigil/collector"
	"vigil/history"
	"vigil/stream"
	"vigil/units"
)

// TestChartsGroupMetricsReadably: a family's metrics share a chart with
// short series labels; a labelled metric's series share one chart of its
// name, "by" the label; families come first, in their order, and every
// chart holds one unit.
func TestChartsGroupMetricsReadably(t *testing.T) {
	got := groupPlots([]string{
		"custom.queue_depth", "http.latency_p99_seconds", "http.latency_p50_seconds", "http.latency_max_seconds",
		"http.latency_p99_5_seconds{instance=127.0.0.1:1}", "http.latency_p99_5_seconds{instance=127.0.0.1:2}",
		"http.requests_per_sec", "probe.status_code{instance=a:1}", "disk.write_bytes_per_sec", "disk.read_bytes_per_sec",
		"cpu.percent{core=0}", "cpu.percent", "custom.temp{zone=a,sensor=2}", "host.uptime_seconds",
	})
	var lines []string
	for _, p := range got {
		var ss []string
		for _, s := range p.Series {
			ss = append(ss, s.Label)
		}
		lines = append(lines, fmt.Sprintf("%s [%s]: %s", p.Title, p.Unit, strings.Join(ss, ", ")))
	}
	want := []string{
		"Requests [rate]: requests",
		"Latency [latency]: p50, p99, max",
		"CPU [percent]: busy",
		"Disk I/O [byterate]: read, write",
		"Uptime [duration]: uptime",
		"custom.queue_depth [number]: value",
		"Latency p99.5 by instance [latency]: 127.0.0.1:1, 127.0.0.1:2",
		"CPU by core [percent]: 0",
		"Probe status code by instance [number]: a:1",
		"custom.temp by zone, sensor [number]: a, 2",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("charts:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got[2].Max != 100 || got[0].Max != 0 {
		t.Errorf("a percentage chart tops at 100, others scale: %v %v", got[3].Max, got[0].Max)
	}
}

// TestSourcePageChartsTheRange: ?range= picks how far back the charts go
// (from the history beyond the ring), ?from=&to= a zoomed span; alert
// transitions in the range are marked on every chart; and the journal
// answers GET /api/v1/alerts/transitions.
func TestSourcePageChartsTheRange(t *testing.T) {
	now := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	ctx := context.Background()
	db, err := alerts.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, h := newHistoryApp(t, now, Options{Journal: db})
	a.store.RecordInto(h)
	start := now.Add(-3 * time.Hour)
	for i := range 3 * 3600 {
		a.store.Append(collector.Sample{Source: "host/web-1", Time: start.Add(time.Duration(i) * time.Second),
			Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 50, "load.1": 1})})
	}
	fired := now.Add(-2 * time.Hour)
	if err := db.SaveTransitions(ctx, []alerts.Transition{{Kind: alerts.StateFiring, Alert: alerts.Alert{
		Fingerprint: "f1", Rule: "HighCPU", Source: "host/web-1", Metric: "cpu.percent", State: alerts.StateFiring, UpdatedAt: fired}}}); err != nil {
		t.Fatal(err)
	}

	page := func(q string) *goquery.Selection {
		t.Helper()
		resp, doc := getPage(t, a.srv.URL+"/source/host/web-1"+q)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", q, resp.StatusCode)
		}
		return doc.Find(`[data-testid="charts"]`)
	}
	span := func(s *goquery.Selection) time.Duration {
		var from, to int64
		fmt.Sscan(s.AttrOr("data-from", ""), &from)
		fmt.Sscan(s.AttrOr("data-to", ""), &to)
		return time.Duration(to-from) * time.Millisecond
	}
	def := page("")
	if span(def) != 10*time.Minute || def.AttrOr("data-range", "") != "10m" || def.Find("line.mark").Length() != 0 {
		t.Errorf("default: %s, %q, %d marks", span(def), def.AttrOr("data-range", ""), def.Find("line.mark").Length())
	}
	six := page("?range=6h")
	if _, live := six.Attr("data-live"); span(six) != 6*time.Hour || !live || six.Find("line.mark").Length() != 1 ||
		six.Find(`[data-testid="chart"]`).First().Find("line.mark-firing").Length() != 1 { // on the chart of the alert's metric only
		t.Errorf("6h: %s, live %v, %d marks", span(six), live, six.Find("line.mark").Length())
	}
	// 3 hours of a flat line at half the chart: its points from the history.
	d := six.Find(`[data-testid="chart"]`).First().Find("path.line").AttrOr("d", "")
	if !strings.HasPrefix(d, "M528.0,104.0L") || strings.Count(d, "L") < 80 || strings.Count(d, "M") != 1 ||
		strings.Count(d, ",104.0") != strings.Count(d, ",") {
		t.Errorf("6h CPU line %q: want 3 h of points at 50%%", d)
	}
	zoom := page(fmt.Sprintf("?from=%d&to=%d", fired.Add(-time.Minute).Unix(), fired.Add(time.Minute).Unix()))
	if _, live := zoom.Attr("data-live"); span(zoom) != 2*time.Minute || live || zoom.Find(`[data-testid="zoomed"]`).Length() != 1 ||
		zoom.Find("line.mark").Length() != 1 {
		t.Errorf("zoomed: %s, live %v", span(zoom), live)
	}
	if bad := page("?range=2y"); span(bad) != 10*time.Minute {
		t.Errorf("an unknown range: %s, want the default", span(bad))
	}

	var out struct {
		Transitions []alerts.Mark `json:"transitions"`
	}
	if code := getJSON(t, a.srv.URL+"/api/v1/alerts/transitions?source=host/web-1&window=6h", &out); code != 200 ||
		len(out.Transitions) != 1 || out.Transitions[0].Rule != "HighCPU" || !out.Transitions[0].At.Equal(fired) {
		t.Fatalf("transitions: %d %+v", code, out.Transitions)
	}
	var e errorBody
	for q, want := range map[string]string{"?window=1h": "give ?source=", "?source=host/web-1&from=soon": "bad from"} {
		if code := getJSON(t, a.srv.URL+"/api/v1/alerts/transitions"+q, &e); code != 400 || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %d %q", q, code, e.Error)
		}
	}
}

// TestChartsWhenTheHistoryCannotBeRead: with VictoriaMetrics unreachable,
// the series API says so with a 502 (not the asker's fault), and the page
// says so above charts that show what the ring holds.
func TestChartsWhenTheHistoryCannotBeRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	vm, err := history.NewVictoria(history.VictoriaOptions{URL: closed, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }, History: vm})
	for i := 60; i > 0; i-- {
		a.store.Append(collector.Sample{Source: "host/web-1", Time: now.Add(-time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 50})})
	}
	var e errorBody
	if code := getJSON(t, a.srv.URL+"/api/v1/series/host/web-1/cpu.percent?window=1h", &e); code != http.StatusBadGateway || !strings.Contains(e.Error, "the history cannot be read: victoriametrics") {
		t.Errorf("series over an hour: %d %q", code, e.Error)
	}
	resp, doc := getPage(t, a.srv.URL+"/source/host/web-1?range=1h")
	msg := doc.Find(`[data-testid="charts-error"]`).Text()
	d := doc.Find(`[data-testid="chart"] path.line`).AttrOr("d", "")
	if resp.StatusCode != 200 || !strings.Contains(msg, "cannot be read") || !strings.Contains(msg, "last minutes in memory") || strings.Count(d, "L") < 50 {
		t.Errorf("page: %d, %q, line %q", resp.StatusCode, msg, d)
	}
}

// TestFamiliesShareAUnit: a chart has one value axis, so a family's
// metrics are of one unit, and no metric is in two families.
func TestFamiliesShareAUnit(t *testing.T) {
	seen := map[string]string{}
	for _, f := range families {
		for _, m := range f.members {
			if u, u0 := units.Of(m.metric), units.Of(f.members[0].metric); u != u0 {
				t.Errorf("%s: %s is %s, %s is %s", f.title, m.metric, u, f.members[0].metric, u0)
			}
			if other, ok := seen[m.metric]; ok {
				t.Errorf("%s in %s and %s", m.metric, other, f.title)
			}
			seen[m.metric] = f.title
		}
	}
}
