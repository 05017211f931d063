package templates

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"vigil/units"
)

func render(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var b bytes.Buffer
	if err := c.Render(templ.WithNonce(context.Background(), "n0nce"), &b); err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func testid(doc *goquery.Document, id string) *goquery.Selection {
	return doc.Find(`[data-testid="` + id + `"]`)
}

func sampleDashboard() Dashboard {
	return Dashboard{
		Page: Page{Title: "vigil", Version: "v1", LastEventID: 1795431473113815, Interval: time.Second, RenderedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), View: ViewState{Sort: "error"}},
		Hosts: []HostPanel{{
			Source: "host/web-1", Name: "web-1", Status: Status{State: "up"},
			Stats:       []Stat{{Label: "CPU", Metric: "cpu.percent", Value: 12.34, Known: true}, {Label: "Swap", Metric: "swap.used_percent"}},
			Charts:      []Chart{{Label: "CPU", Metric: "cpu.percent", Values: []float64{10, 20, 30}, Capacity: 600, Max: 100}},
			Filesystems: []Filesystem{{Mount: "/", UsedPercent: 42, SizeBytes: 1 << 30}},
		}},
		Tiles: []Tile{
			{Source: "service/api", Name: "api", Kind: "service", State: "firing", Status: Status{State: "up"},
				Service: ServiceStats{Rate: 1234, ErrorPercent: 7.5, P50: 0.012, P90: 0.05, P99: 0.2, P995: 0.3, Max: 1.5, HostsUp: 2, HostsTotal: 3},
				Rate:    Chart{Label: "rate", Metric: "http.requests_per_sec", Values: []float64{1000, 1234}, Capacity: 120}},
			{Source: "batch/nightly", Name: "nightly", Kind: "generic", State: "ok", Status: Status{State: "failed", Error: "connection refused"},
				Metrics: []Stat{{Metric: "jobs.done", Value: 3, Known: true}}},
		},
	}
}

func TestDashboardPage(t *testing.T) {
	doc := render(t, DashboardPage(sampleDashboard()))

	if got, _ := doc.Find("body").Attr("data-last-event-id"); got != "1795431473113815" {
		t.Errorf("last event id %q", got)
	}
	if nonce, _ := doc.Find(`script[src^="/static/app.js"]`).Attr("nonce"); nonce != "n0nce" {
		t.Errorf("script nonce %q", nonce)
	}
	if doc.Find("script:not([nonce])").Length() != 0 || doc.Find("[style]").Length() != 0 {
		t.Error("inline script without nonce or inline style: the CSP would block it")
	}
	if txt := testid(doc, "connection").Text(); !strings.Contains(txt, "not live") {
		t.Errorf("before the script runs the indicator must not claim live: %q", txt)
	}
	if testid(doc, "demo-badge").Length() != 0 {
		t.Error("demo badge on real data")
	}

	host := testid(doc, "host-panel")
	if host.Length() != 1 || host.AttrOr("data-source", "") != "host/web-1" {
		t.Fatalf("host panels: %d", host.Length())
	}
	if v := strings.TrimSpace(testid(doc, "value-cpu.percent").Text()); v != "12.3%" {
		t.Errorf("CPU value %q", v)
	}
	if v := strings.TrimSpace(testid(doc, "value-swap.used_percent").Text()); v != "–" {
		t.Errorf("unknown value shown as %q", v)
	}
	spark := doc.Find(`svg[data-spark="cpu.percent"]`)
	if d := spark.Find("path").AttrOr("d", ""); d != SparkPath([]float64{10, 20, 30}, 600, 100, SparkW, SparkH) || d == "" {
		t.Errorf("sparkline path %q", d)
	}
	if spark.AttrOr("data-values", "") != "10 20 30" || spark.AttrOr("data-cap", "") != "600" || spark.AttrOr("data-max", "") != "100" {
		t.Errorf("sparkline data for the script: %v", spark.Nodes[0].Attr)
	}
	if testid(doc, "filesystems").Find("tbody tr").Length() != 1 {
		t.Error("filesystem row missing")
	}

	tiles := testid(doc, "tile")
	if tiles.Length() != 2 {
		t.Fatalf("%d tiles", tiles.Length())
	}
	svc := tiles.Eq(0)
	if svc.AttrOr("data-kind", "") != "service" || !svc.HasClass("h-bad") {
		t.Errorf("service tile kind/health: %v", svc.Nodes[0].Attr)
	}
	if sym := strings.TrimSpace(svc.Find(`[data-testid="health-symbol"]`).Text()); sym != "!!" {
		t.Errorf("non-colour health cue %q", sym)
	}
	r, _ := strconv.ParseFloat(svc.Find("circle").AttrOr("r", ""), 64)
	if r != CircleRadius(1234) || r <= CircleMin || r >= CircleMax {
		t.Errorf("circle radius %v", r)
	}
	for id, want := range map[string]string{"rate": "1.2k/s", "error-percent": "7.5%", "p99": "200 ms", "tile-state": "firing"} {
		if got := strings.TrimSpace(svc.Find(`[data-testid="` + id + `"]`).Text()); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	if got := strings.Join(strings.Fields(svc.Find(`[data-testid="hosts-reporting"]`).Text()), " "); got != "2 of 3" {
		t.Errorf("hosts reporting %q", got)
	}
	gen := tiles.Eq(1)
	if gen.AttrOr("data-kind", "") != "generic" || gen.Find(`[data-metric="jobs.done"]`).Length() != 1 {
		t.Error("generic tile")
	}
	if st := gen.Find(`[data-testid="status"]`); !st.HasClass("status-failed") || st.AttrOr("title", "") != "connection refused" {
		t.Errorf("failed status badge %v", st.Nodes[0].Attr)
	}
	if testid(doc, "legend").Find("li").Length() != len(HealthBands)+1 {
		t.Error("legend incomplete")
	}
	if testid(doc, "no-alerts").Length() != 1 || testid(doc, "alert-count").Text() != "0" {
		t.Error("empty alerts panel")
	}
}

func TestDashboardFilterAndAlerts(t *testing.T) {
	d := sampleDashboard()
	d.View.Filter = "API"
	d.Demo = true
	d.Alerts = []Alert{{Rule: "HighErrorRate", Source: "service/api", State: "firing", Metric: "http.error_percent", Value: 7.5, Summary: "api errors above 5%"}}
	doc := render(t, DashboardPage(d))
	tiles := testid(doc, "tile")
	if _, hidden := tiles.Eq(0).Attr("hidden"); hidden {
		t.Error("matching tile hidden")
	}
	if _, hidden := tiles.Eq(1).Attr("hidden"); !hidden {
		t.Error("filtered-out tile shown")
	}
	if testid(doc, "filter").AttrOr("value", "") != "API" {
		t.Error("filter not kept in the input")
	}
	if testid(doc, "demo-badge").Length() != 1 {
		t.Error("demo data not labelled")
	}
	a := testid(doc, "alert")
	if a.Length() != 1 || a.AttrOr("data-state", "") != "firing" || !strings.Contains(a.Text(), "7.5%") {
		t.Errorf("alert row %q", a.Text())
	}
}

func TestSourcePage(t *testing.T) {
	utc := time.FixedZone("X", 0)
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, utc)
	rng := Range{Key: "1h", From: t0, To: t0.Add(time.Hour), Live: true}
	doc := render(t, SourcePage(Source{
		Page: Page{Title: "x", StreamQuery: "source=host/web-1"}, Name: "host/web-1",
		Status: Status{State: "failed", Error: "filesystem /mnt: input/output error"},
		Range:  rng,
		Plots: []Plot{
			{Title: "CPU", Unit: "percent", Max: 100, Series: []PlotSeries{
				{Label: "busy", Metric: "cpu.percent", Points: []Point{{t0, 10}, {t0.Add(30 * time.Minute), 50}}, Last: Value{V: 42.5, Known: true}},
				{Label: "user", Metric: "cpu.user_percent", Points: []Point{{t0, 5}}},
			}, Marks: []Mark{{At: t0.Add(12 * time.Minute), Kind: "firing", Rule: "HighCPU"}, {At: t0.Add(-time.Minute), Kind: "pending", Rule: "Early"}}},
			{Title: "Network", Unit: "byterate", Series: []PlotSeries{{Label: "in", Metric: "net.rx_bytes_per_sec", Points: []Point{{t0, 1500}}}}},
		},
	}))
	if doc.Find("body").AttrOr("data-stream-query", "") != "source=host/web-1" {
		t.Error("drill-down page must follow only its source")
	}
	if !strings.Contains(testid(doc, "last-error").Text(), "input/output error") {
		t.Error("last error not shown")
	}
	charts := testid(doc, "chart")
	if charts.Length() != 2 {
		t.Fatalf("%d charts, want one per plot", charts.Length())
	}
	cpu := charts.First()
	if got := cpu.Find("h3").Text(); got != "CPU" {
		t.Errorf("title %q", got)
	}
	if got := cpu.Find(".legend b[data-metric=\"cpu.percent\"]").Text(); strings.TrimSpace(got) != "42.5%" {
		t.Errorf("legend value %q, want the newest with its unit", got)
	}
	if got := strings.TrimSpace(cpu.Find(".legend b[data-metric=\"cpu.user_percent\"]").Text()); got != "–" {
		t.Errorf("a series without a newest value shows %q", got)
	}
	if n := cpu.Find("path.line").Length(); n != 2 {
		t.Errorf("%d lines, want one per series", n)
	}
	var labels []string
	cpu.Find(".axis text").Each(func(_ int, s *goquery.Selection) { labels = append(labels, s.Text()) })
	if got := strings.Join(labels, " "); got != "0% 50% 100% 03:00 03:10 03:20 03:30 03:40 03:50 04:00" {
		t.Errorf("axis labels %q: want the value axis in the unit and local times", got)
	}
	if got := charts.Eq(1).Find(".axis text").First().Text(); got != "0 B/s" {
		t.Errorf("a byte-rate axis starts at %q", got)
	}
	marks := cpu.Find("line.mark")
	if marks.Length() != 1 || !strings.Contains(marks.Find("title").Text(), "HighCPU firing at Dec 1 03:12:00") {
		t.Errorf("marks: %d, %q; want the one in range, with its rule", marks.Length(), marks.Find("title").Text())
	}
	if got := cpu.AttrOr("data-series", ""); got != `[{"metric":"cpu.percent","label":"busy"},{"metric":"cpu.user_percent","label":"user"}]` {
		t.Errorf("data-series %s", got)
	}
	if cur := testid(doc, "ranges").Find("[aria-current]"); cur.AttrOr("href", "") != "?range=1h" {
		t.Errorf("current range link %q", cur.AttrOr("href", ""))
	}
}

func TestSparkPath(t *testing.T) {
	if p := SparkPath(nil, 10, 100, 120, 30); p != "" {
		t.Errorf("empty: %q", p)
	}
	// Newest at the right edge; values at the top of the scale at y=0.
	if p := SparkPath([]float64{0, 100}, 3, 100, 120, 30); p != "M60.0,30.0L120.0,0.0" {
		t.Errorf("two points: %q", p)
	}
	// More values than capacity: only the newest capacity are drawn;
	// out-of-range values are clamped.
	if p := SparkPath([]float64{5, 200, -1}, 2, 100, 120, 30); p != "M0.0,0.0L120.0,30.0" {
		t.Errorf("clamped: %q", p)
	}
	// Auto scale: the largest value is the top.
	if p := SparkPath([]float64{1, 2}, 2, 0, 10, 10); p != "M0.0,5.0L10.0,0.0" {
		t.Errorf("auto: %q", p)
	}
}

// TestTileSaysOneThingOfEach: a tile without alerts shows no alert
// state (an "ok" beside a red critical circle read as a contradiction),
// and the words for a source whose collect fails ("failing") and for a
// service with many errors ("erroring") are not one word.
func TestTileSaysOneThingOfEach(t *testing.T) {
	var b strings.Builder
	tile := Tile{Source: "service/api", Name: "api", Kind: "service", State: "ok", Status: Status{State: "up"},
		Service: ServiceStats{Rate: 10, ErrorPercent: 50}}
	if err := TileView(tile, false).Render(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	doc, _ := goquery.NewDocumentFromReader(strings.NewReader(b.String()))
	if n := doc.Find(`[data-testid="tile-state"]`).Length(); n != 0 {
		t.Errorf("a tile without alerts shows an alert state: %q", doc.Find(`[data-testid="tile-state"]`).Text())
	}
	words := map[string]bool{}
	for _, band := range HealthBands {
		words[band.Word] = true
	}
	if words["failing"] {
		t.Error(`a health band says "failing", as a source whose collect fails does`)
	}
}

func TestHealthAndCircle(t *testing.T) {
	for _, tt := range []struct {
		err  float64
		word string
	}{{0, "healthy"}, {0.99, "healthy"}, {1, "degraded"}, {5, "erroring"}, {19.9, "erroring"}, {20, "critical"}, {100, "critical"}} {
		if got := HealthOf(tt.err).Word; got != tt.word {
			t.Errorf("HealthOf(%v) = %s, want %s", tt.err, got, tt.word)
		}
	}
	prev := 0.0
	for _, rate := range []float64{0, 1, 10, 100, 1000, 10000} {
		r := CircleRadius(rate)
		if r < prev || r < CircleMin || r > CircleMax {
			t.Errorf("CircleRadius(%v) = %v after %v", rate, r, prev)
		}
		prev = r
	}
	if CircleRadius(1e9) != CircleMax {
		t.Error("radius not capped")
	}
}

// TestNamesIsolatedFromBidiTricks: a name from a source may carry a
// right-to-left override (U+202E) to disguise itself or what follows
// ("web‮gnp.exe" reads "webexe.png"). No element shows one: names are
// rendered with the override replaced, and in elements with dir="auto"
// (their own bidi isolate).
func TestNamesIsolatedFromBidiTricks(t *testing.T) {
	const rlo = "\u202e"
	d := sampleDashboard()
	d.Hosts[0].Name = "web" + rlo + "1"
	d.Hosts[0].Filesystems[0].Mount = "/mnt/" + rlo + "gpj.exe"
	d.Tiles[0].Name = "api" + rlo + "evil"
	d.Tiles[1].Metrics[0].Metric = "jobs" + rlo + ".done"
	d.Alerts = []Alert{{Rule: "R" + rlo + "x", Source: "service/" + rlo + "api", State: "firing", Summary: "s" + rlo + "s"}}
	src := Source{Name: "service/" + rlo + "api", Status: Status{State: "failed", Error: "e" + rlo + "rr"},
		Instances: []Instance{{Name: "10.0.0.1:" + rlo + "80", Metrics: map[string]float64{}}}}
	for name, doc := range map[string]*goquery.Document{"dashboard": render(t, DashboardPage(d)), "source": render(t, SourcePage(src))} {
		if strings.Contains(doc.Find("body").Text(), rlo) {
			t.Errorf("%s: a right-to-left override is shown", name)
		}
		n := 0
		doc.Find("body *").Each(func(_ int, el *goquery.Selection) {
			own := el.Contents().FilterFunction(func(_ int, c *goquery.Selection) bool { return goquery.NodeName(c) == "#text" }).Text()
			if !strings.Contains(own, "\ufffd") || goquery.NodeName(el) == "script" {
				return
			}
			n++
			if el.Closest(`[dir="auto"]`).Length() == 0 {
				t.Errorf("%s: <%s> shows %q without dir=auto", name, goquery.NodeName(el), own)
			}
		})
		if n < 4 {
			t.Fatalf("%s: %d names shown with the override replaced", name, n)
		}
	}
}

// TestPlotValueAxisHasDistinctLabels: a percentage axis over a tenth of a
// percent shows its ticks with the decimals they need.
func TestPlotValueAxisHasDistinctLabels(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	r := Range{From: t0, To: t0.Add(10 * time.Minute)}
	g := Geometry(Plot{Unit: "percent", Series: []PlotSeries{{Points: []Point{{t0, 0.02}, {t0.Add(time.Minute), 0.07}}}}}, r, time.UTC)
	var got []string
	for _, tk := range g.YTicks {
		got = append(got, tk.Label)
	}
	if strings.Join(got, " ") != "0% 0.05% 0.1%" {
		t.Errorf("ticks %q", got)
	}
	g = Geometry(Plot{Unit: "latency", Series: []PlotSeries{{Points: []Point{{t0, 0.3}}}}}, r, time.UTC)
	if g.YTicks[2].Label != "500 ms" || g.XTicks[0].Label != "03:00" || len(g.XTicks) != 6 {
		t.Errorf("latency ticks %+v, times %+v", g.YTicks, g.XTicks)
	}
	// The middle of 0 to 5 is 2.5, not 2; bytes in powers of two; uptime
	// in whole units.
	for _, c := range []struct {
		unit string
		hi   float64
		want string
	}{
		{"number", 3, "0 2.5 5"},
		{"latency", 0.004, "0 ms 2.5 ms 5 ms"},
		{"byterate", 47.7 * 1024 * 1024, "0 B/s 32 MiB/s 64 MiB/s"},
		{"bytes", 0, "0 B 512 B 1 KiB"},
		{"duration", 2500, "0s 30m 0s 1h 0m"},
	} {
		g = Geometry(Plot{Unit: c.unit, Series: []PlotSeries{{Points: []Point{{t0, c.hi}}}}}, r, time.UTC)
		var got []string
		for _, tk := range g.YTicks {
			got = append(got, tk.Label)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s up to %v: ticks %q, want %q", c.unit, c.hi, got, c.want)
		}
	}
}

// A chart's caption is its newest sample's value — after a clock set
// back, not the chart's last by time — and the chart's last when the
// newest sample lacks the metric.
func TestChartCaption(t *testing.T) {
	c := Chart{Metric: "cpu.percent", Values: []float64{5, 10, 12}}
	if got, want := lastValue(c), units.Format("cpu.percent", 12); got != want {
		t.Errorf("without the newest sample's value: %q, want %q", got, want)
	}
	c.Last = Value{V: 5, Known: true}
	if got, want := lastValue(c), units.Format("cpu.percent", 5); got != want {
		t.Errorf("with it: %q, want %q", got, want)
	}
	if got := lastValue(Chart{Metric: "cpu.percent"}); got != "–" {
		t.Errorf("no value: %q", got)
	}
}
