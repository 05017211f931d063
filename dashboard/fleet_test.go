package dashboard

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"vigil/collector"
	"vigil/stream"
	"vigil/templates"
)

// newFleetApp is a hub's dashboard: agents web-1 (role=web, dc=fra),
// web-2 (role=web, dc=ams, unreachable since 10:00, its host's last sample
// kept), db-1 (role=db, connected, its host failing), cache-1 (never
// reached: no host), new-1 (not reached yet), and the hub's own host.
func newFleetApp(t *testing.T) (*testApp, time.Time) {
	now := time.Date(2026, 12, 1, 10, 5, 0, 0, time.Local)
	down := time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local)
	status := []collector.UpstreamStatus{
		{Name: "cache-1", Labels: map[string]string{"role": "cache"}, Since: down, Error: "dial tcp 10.0.0.9:8080: connection refused", Hosts: []string{}},
		{Name: "db-1", Labels: map[string]string{"role": "db", "dc": "fra"}, Connected: true, Since: down, Hosts: []string{"host/db-1"}},
		{Name: "new-1", Since: now, Hosts: []string{}},
		{Name: "web-1", Labels: map[string]string{"role": "web", "dc": "fra"}, Connected: true, Since: down, Hosts: []string{"host/web-1"}},
		{Name: "web-2", Labels: map[string]string{"role": "web", "dc": "ams"}, Since: down, Error: "the stream ended", Hosts: []string{"host/web-2"}},
	}
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now },
		Fleet: fleetFunc(func() []collector.UpstreamStatus { return status })})
	host := func(name string, cpu, mem, root, data float64) {
		for i := range 3 {
			a.store.Append(collector.Sample{Source: "host/" + name, Time: now.Add(time.Duration(i-2) * time.Second), Metrics: collector.MetricsOf(map[string]float64{
				"cpu.percent": cpu + float64(i), "mem.used_percent": mem, "fs.used_percent{mount=/}": root, "fs.used_percent{mount=/data}": data,
				"net.rx_bytes_per_sec": 1000, "net.tx_bytes_per_sec": 24, "load.1": 3, "load.5_per_core": 0.25, "host.uptime_seconds": 90000,
			})})
		}
	}
	host("web-1", 10, 30, 20, 95) // the fullest disk: pressure 95
	host("web-2", 80, 20, 10, 10)
	host("db-1", 50, 60, 10, 10)
	host("hub", 20, 70, 40, 10)
	a.store.Append(collector.Sample{Source: "upstream/web-1", Time: now, Metrics: collector.MetricsOf(map[string]float64{"upstream.up": 1})})
	a.store.Append(collector.Sample{Source: "service/api", Time: now, Metrics: collector.MetricsOf(map[string]float64{"http.requests_per_sec": 5})})
	a.store.SetStatus("host/db-1", collector.StateFailed, "filesystem /data: input/output error", down)
	return a, now
}

func rowOrder(doc *goquery.Document, sel string) string {
	var names []string
	doc.Find(sel).Each(func(_ int, s *goquery.Selection) {
		names = append(names, strings.TrimSpace(s.Find(`[data-testid="row-name"]`).Text()))
	})
	return strings.Join(names, " ")
}

func TestFleetTable(t *testing.T) {
	a, now := newFleetApp(t)
	_, doc := getPage(t, a.srv.URL+"/")
	if doc.Find(`[data-testid="host-panel"]`).Length() != 0 || doc.Find(`[data-testid="fleet-table"]`).Length() != 1 {
		t.Fatal("a hub shows host panels, or no table")
	}
	// Worst first: unreachable, failing, waiting, then by the highest of
	// CPU, memory and disk (web-1's disk at 95%); ties by name.
	if got := rowOrder(doc, `[data-testid="host-row"]`); got != "cache-1 web-2 db-1 new-1 web-1 hub" {
		t.Errorf("default order: %s", got)
	}
	if th := doc.Find(`th:has([data-testid="sort-worst"])`); th.AttrOr("aria-sort", "") != "descending" {
		t.Errorf("the state column is not marked as the order")
	}
	row := func(name string) *goquery.Selection {
		return doc.Find(`[data-testid="host-row"]`).FilterFunction(func(_ int, s *goquery.Selection) bool {
			return strings.TrimSpace(s.Find(`[data-testid="row-name"]`).Text()) == name
		})
	}
	web2 := row("web-2")
	if web2.AttrOr("data-state", "") != "unreachable" || !strings.Contains(web2.Find(".since").Text(), "since 10:00:00") ||
		web2.Find(".c-state").AttrOr("title", "") != "the stream ended" || web2.AttrOr("data-upstream", "") != "web-2" {
		t.Errorf("unreachable row: state %q, %q", web2.AttrOr("data-state", ""), web2.Find(".c-state").Text())
	}
	// Its last values are kept, and shown as such (faded by its class).
	if web2.Find(`[data-testid="row-cpu"]`).Text() != "82%" || !web2.HasClass("row-unreachable") {
		t.Errorf("unreachable row's last CPU: %q", web2.Find(`[data-testid="row-cpu"]`).Text())
	}
	cache := row("cache-1")
	if cache.AttrOr("data-host", "") != "upstream/cache-1" || cache.AttrOr("data-state", "") != "unreachable" ||
		cache.Find(`a`).AttrOr("href", "") != "/source/upstream/cache-1" || cache.Find(`[data-testid="row-cpu"]`).Text() != "–" {
		t.Errorf("an agent not reached: host %q state %q", cache.AttrOr("data-host", ""), cache.AttrOr("data-state", ""))
	}
	if s := row("new-1").AttrOr("data-state", ""); s != "waiting" {
		t.Errorf("an agent not reached yet: %q", s)
	}
	db := row("db-1")
	if db.AttrOr("data-state", "") != "failed" || db.Find(`[data-testid="row-state"]`).Text() != "failing" || !strings.Contains(db.Find(".c-state").AttrOr("title", ""), "input/output") {
		t.Errorf("failing host: %q", db.Find(".c-state").Text())
	}
	web1 := row("web-1")
	for id, want := range map[string]string{"row-cpu": "12%", "row-mem": "30%", "row-disk": "95%", "row-net": "1 KiB/s", "row-load": "0.25", "row-uptime": "1d 1h"} {
		if got := web1.Find(`[data-testid="` + id + `"]`).Text(); got != want {
			t.Errorf("web-1 %s = %q, want %q", id, got, want)
		}
	}
	if web1.Find("a").AttrOr("href", "") != "/source/host/web-1" || web1.Find(".label").Text() != "dc=frarole=web" ||
		web1.AttrOr("data-labels", "") != `{"dc":"fra","role":"web"}` || web1.Find("svg").AttrOr("data-values", "") != "10 11 12" {
		t.Errorf("web-1 row: link %q, labels %q", web1.Find("a").AttrOr("href", ""), web1.Find(".label").Text())
	}
	// The page script skips, on the stream, the sample the page shows.
	if got := web1.AttrOr("data-ts", ""); got != strconv.FormatInt(now.UnixMilli(), 10) {
		t.Errorf("web-1's sample time %q", got)
	}
	if hub := row("hub"); hub.AttrOr("data-upstream", "x") != "" || hub.AttrOr("data-state", "") != "up" {
		t.Errorf("the hub's own host: %q", hub.AttrOr("data-state", ""))
	}
	if got := strings.Join(strings.Fields(doc.Find(`[data-testid="fleet-sum"]`).Text()), " "); got != "2 unreachable · 1 failing" {
		t.Errorf("summary %q", got)
	}
	// The agents' connections are in the rows, not tiles; services are.
	var tiles []string
	doc.Find(`[data-testid="tile"]`).Each(func(_ int, s *goquery.Selection) { tiles = append(tiles, s.AttrOr("data-source", "")) })
	if strings.Join(tiles, " ") != "service/api" {
		t.Errorf("tiles %v", tiles)
	}
	// On a hub, ?sort= is the table's; the tiles' select is ?tiles=.
	if doc.Find(`#sort`).AttrOr("name", "") != "tiles" {
		t.Errorf("the tiles' order is %q", doc.Find(`#sort`).AttrOr("name", ""))
	}
	if got := doc.Find(`[data-testid="sort-cpu"]`).AttrOr("href", ""); got != "?sort=cpu" {
		t.Errorf("CPU header links to %q", got)
	}
}

func TestFleetTableSortGroupFilter(t *testing.T) {
	a, _ := newFleetApp(t)
	for _, c := range []struct{ query, order string }{
		// The highest first; the unreachable agent's CPU is not known now,
		// nor is anything of the agents without a host: last, by name.
		{"?sort=cpu", "db-1 hub web-1 cache-1 new-1 web-2"},
		{"?sort=mem", "hub db-1 web-1 cache-1 new-1 web-2"},
		{"?sort=disk", "web-1 hub db-1 cache-1 new-1 web-2"},
		{"?sort=name", "cache-1 db-1 hub new-1 web-1 web-2"},
		{"?sort=nonsense", "cache-1 web-2 db-1 new-1 web-1 hub"},
	} {
		_, doc := getPage(t, a.srv.URL+"/"+c.query)
		if got := rowOrder(doc, `[data-testid="host-row"]`); got != c.order {
			t.Errorf("%s: %s, want %s", c.query, got, c.order)
		}
	}
	_, doc := getPage(t, a.srv.URL+"/?sort=cpu")
	if doc.Find(`th:has([data-testid="sort-cpu"])`).AttrOr("aria-sort", "") != "descending" ||
		doc.Find(`th:has([data-testid="sort-worst"])`).AttrOr("aria-sort", "") != "none" {
		t.Error("aria-sort does not follow ?sort=")
	}

	// Grouped by role: groups by value, those without the label last;
	// each group in the order asked for.
	_, doc = getPage(t, a.srv.URL+"/?group=role&sort=name")
	var groups []string
	doc.Find(`[data-testid="fleet-group"]`).Each(func(_ int, g *goquery.Selection) {
		groups = append(groups, g.AttrOr("data-group", "")+":"+strings.ReplaceAll(rowOrder(goquery.NewDocumentFromNode(g.Nodes[0]), `[data-testid="host-row"]`), " ", ","))
	})
	if got := strings.Join(groups, " "); got != "cache:cache-1 db:db-1 web:web-1,web-2 :hub,new-1" {
		t.Errorf("grouped by role: %s", got)
	}
	if got := doc.Find(`.group-head`).Last().Text(); !strings.Contains(got, "no role") || !strings.Contains(got, "2 hosts") {
		t.Errorf("last group's head %q", got)
	}
	if doc.Find(`#group option[selected]`).AttrOr("value", "") != "role" || doc.Find(`#group option`).Length() != 3 {
		t.Errorf("group choice: %d options", doc.Find(`#group option`).Length())
	}
	if got := doc.Find(`[data-testid="sort-cpu"]`).AttrOr("href", ""); got != "?group=role&sort=cpu" {
		t.Errorf("a header keeps the grouping: %q", got)
	}

	// Filters: a word is part of a name or a label's value; key=value is a
	// label exactly; every word must match. Rows are hidden, not left out,
	// so the page can show them again as the filter changes.
	for _, c := range []struct{ q, shown, count string }{
		{"web", "web-2 web-1", "2 of 6"},
		{"role=web", "web-2 web-1", "2 of 6"},
		{"ROLE=Web dc=ams", "web-2", "1 of 6"},
		{"fra", "db-1 web-1", "2 of 6"},
		{"role=we", "", "0 of 6"},
		{"", "cache-1 web-2 db-1 new-1 web-1 hub", "6"},
	} {
		_, doc := getPage(t, a.srv.URL+"/?q="+strings.ReplaceAll(c.q, " ", "+"))
		if got := rowOrder(doc, `[data-testid="host-row"]:not([hidden])`); got != c.shown {
			t.Errorf("q=%s: shown %q, want %q", c.q, got, c.shown)
		}
		if got := strings.TrimSpace(doc.Find(`[data-testid="fleet-count"]`).Text()); strings.Join(strings.Fields(got), " ") != c.count {
			t.Errorf("q=%s: count %q", c.q, got)
		}
		if doc.Find(`[data-testid="host-row"]`).Length() != 6 {
			t.Errorf("q=%s: rows left out", c.q)
		}
	}
	// Tiles have no labels: key=value leaves them; other words filter them.
	for q, shown := range map[string]int{"role=web": 1, "api": 1, "web": 0} {
		_, doc := getPage(t, a.srv.URL+"/?q="+q)
		if n := doc.Find(`[data-testid="tile"]:not([hidden])`).Length(); n != shown {
			t.Errorf("q=%s: %d tiles shown, want %d", q, n, shown)
		}
	}
}

// TestNotAHubKeepsHostPanels: without a Fleet the page is as it was:
// host panels, ?sort= for the tiles, no table.
func TestNotAHubKeepsHostPanels(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }})
	a.store.Append(collector.Sample{Source: "host/web-1", Time: now, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 1})})
	a.store.Append(collector.Sample{Source: "upstream/x", Time: now, Metrics: collector.MetricsOf(map[string]float64{"upstream.up": 1})})
	_, doc := getPage(t, a.srv.URL+"/?sort=name")
	if doc.Find(`[data-testid="fleet"]`).Length() != 0 || doc.Find(`[data-testid="host-panel"]`).Length() != 1 ||
		doc.Find(`#sort`).AttrOr("name", "") != "sort" || doc.Find(`#sort option[selected]`).AttrOr("value", "") != "name" ||
		doc.Find(`[data-testid="tile"][data-source="upstream/x"]`).Length() != 1 {
		t.Fatal("a vigil that is not a hub does not show its usual page")
	}
}

// TestServiceAcrossHosts: a service a hub merged says how many of its
// hosts are up on its tile, and its page breaks it down by host.
func TestServiceAcrossHosts(t *testing.T) {
	a, now := newFleetApp(t)
	a.store.Append(collector.Sample{Source: "service/checkout", Time: now, Metrics: collector.MetricsOf(map[string]float64{
		"http.requests_per_sec": 30, "http.error_percent": 1, "hosts.up": 1, "hosts.total": 2, "instances.up": 3, "instances.total": 4,
		"http.requests_per_sec{host=web-1}": 25, "http.error_percent{host=web-1}": 0.4, "http.latency_p99_seconds{host=web-1}": 0.120,
		"instances.up{host=web-1}": 3, "up{host=web-1}": 1,
		"http.requests_per_sec{host=web-2}": 5, "up{host=web-2}": 0,
	})})
	_, doc := getPage(t, a.srv.URL+"/")
	tile := doc.Find(`[data-testid="tile"][data-source="service/checkout"]`)
	if got := strings.Join(strings.Fields(tile.Find(`[data-testid="hosts-reporting"]`).Text()), " "); got != "1 of 2" {
		t.Errorf("tile: hosts %q", got)
	}
	if tile.Find(`[data-metric="hosts.up"]`).Length() != 1 {
		t.Error("the tile's hosts are not kept live")
	}
	resp, doc := getPage(t, a.srv.URL+"/source/service/checkout")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	var rows []string
	doc.Find(`[data-testid="service-host"]`).Each(func(_ int, s *goquery.Selection) {
		var cells []string
		s.Find("th, td").Each(func(_ int, c *goquery.Selection) { cells = append(cells, strings.TrimSpace(c.Text())) })
		rows = append(rows, strings.Join(cells, "|")+"|"+s.Find("a").AttrOr("href", ""))
	})
	want := []string{ // down first
		"web-2|down|5/s|–|–|–|/source/host/web-2",
		"web-1|up|25/s|0.4%|120 ms|3|/source/host/web-1",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("per-host table:\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	// A service that is not merged has no host table.
	_, doc = getPage(t, a.srv.URL+"/source/service/api")
	if doc.Find(`[data-testid="service-hosts"]`).Length() != 0 {
		t.Error("a host table for a service of one vigil")
	}
}

func TestHostFigures(t *testing.T) {
	for _, c := range []struct {
		m               map[string]float64
		disk, net, load templates.Value
		name            string
	}{
		{map[string]float64{}, templates.Value{}, templates.Value{}, templates.Value{}, "nothing"},
		{map[string]float64{"fs.used_percent{mount=/}": 10, "fs.used_percent{mount=/a}": 70, "fs.used_bytes{mount=/b}": 99e9},
			templates.Value{V: 70, Known: true}, templates.Value{}, templates.Value{}, "the fullest filesystem"},
		{map[string]float64{"net.tx_bytes_per_sec": 5, "load.1": 4}, templates.Value{}, templates.Value{V: 5, Known: true}, templates.Value{V: 4, Known: true}, "load.1 without cores"},
		{map[string]float64{"net.rx_bytes_per_sec": 1, "net.tx_bytes_per_sec": 5, "load.1": 4, "load.5_per_core": 0.5}, templates.Value{},
			templates.Value{V: 6, Known: true}, templates.Value{V: 0.5, Known: true}, "per core first"},
	} {
		_, _, disk, net, load, _ := hostFigures(collector.MetricsOf(c.m))
		if disk != c.disk || net != c.net || load != c.load {
			t.Errorf("%s: disk %v net %v load %v", c.name, disk, net, load)
		}
	}
}

// A sample from a clock ahead of the hub's — one a day ahead, for a
// moment — is kept by the store, whose points come in time order, but a
// host's sparklines and their captions end at now: they show what came
// last, not a value the store holds at the end of a day.
func TestSparklinesEndAtNow(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 5, 0, 0, time.Local)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	store := collector.NewStore(10*time.Minute, time.Second)
	s := New(Options{Hub: hub, Store: store, Interval: time.Second, Now: func() time.Time { return now }})
	add := func(at time.Time, cpu float64) {
		store.Append(collector.Sample{Source: "host/a", Time: at, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": cpu})})
	}
	add(now.Add(-2*time.Second), 10)
	add(now.Add(24*time.Hour), 99)
	add(now.Add(-time.Second), 11)
	add(now, 12)
	if r := s.hostRow("host/a", nil, nil, now); !slices.Equal(r.CPUSpark, []float64{10, 11, 12}) {
		t.Errorf("the fleet row's sparkline: %v, want [10 11 12]", r.CPUSpark)
	}
	if c := s.chart("host/a", "cpu.percent", "CPU", 600, now.Add(-time.Minute)); !slices.Equal(c.Values, []float64{10, 11, 12}) || c.Last != (templates.Value{V: 12, Known: true}) {
		t.Errorf("the host page's chart: %v, caption %+v; want [10 11 12], 12", c.Values, c.Last)
	}

	// Then the host's clock is set back half a minute: the chart has the
	// sample in its place by time, and the caption is what came last, as
	// the live stream's next sample would make it.
	add(now.Add(-30*time.Second), 5)
	if c := s.chart("host/a", "cpu.percent", "CPU", 600, now.Add(-time.Minute)); !slices.Equal(c.Values, []float64{5, 10, 11, 12}) || c.Last != (templates.Value{V: 5, Known: true}) {
		t.Errorf("a clock set back: the host page's chart %v, caption %+v; want [5 10 11 12], 5", c.Values, c.Last)
	}
}
