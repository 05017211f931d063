package dashboard

import (
	"cmp"
	"context"
	"net/url"
	"slices"
	"strings"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/templates"
	"vigil/units"
)

// A family is metrics that read best on one chart: a service's latency
// percentiles, a host's load averages. A metric with labels
// (http.requests_per_sec{instance=…}) is charted with the others of its
// name instead, one series per label set ("Requests by instance").
type family struct {
	title   string
	members []member
}

type member struct{ metric, label, name string } // name: the metric's title on a chart of its own

// families are in the order their charts appear; a source's other metrics
// follow, by name.
var families = []family{
	{"Requests", []member{{"http.requests_per_sec", "requests", "Requests"}}},
	{"Errors", []member{{"http.error_percent", "errors", "Errors"}}},
	{"Latency", []member{
		{"http.latency_p50_seconds", "p50", "Latency p50"}, {"http.latency_p90_seconds", "p90", "Latency p90"},
		{"http.latency_p99_seconds", "p99", "Latency p99"}, {"http.latency_p99_5_seconds", "p99.5", "Latency p99.5"},
		{"http.latency_p99_9_seconds", "p99.9", "Latency p99.9"}, {"http.latency_max_seconds", "max", "Latency max"},
	}},
	{"Instances", []member{{"instances.up", "up", "Instances up"}, {"instances.total", "total", "Instances"}}},
	{"Hosts", []member{{"hosts.up", "up", "Hosts up"}, {"hosts.total", "total", "Hosts"}}},
	{"CPU", []member{
		{"cpu.percent", "busy", "CPU"}, {"cpu.user_percent", "user", "CPU user"}, {"cpu.system_percent", "system", "CPU system"},
		{"cpu.iowait_percent", "iowait", "CPU iowait"}, {"cpu.steal_percent", "steal", "CPU steal"},
	}},
	{"Memory", []member{{"mem.used_percent", "memory", "Memory used"}, {"swap.used_percent", "swap", "Swap used"}}},
	{"Memory bytes", []member{{"mem.used_bytes", "used", "Memory used"}, {"mem.available_bytes", "available", "Memory available"},
		{"mem.total_bytes", "total", "Memory"}}},
	{"Swap bytes", []member{{"swap.used_bytes", "used", "Swap used"}, {"swap.total_bytes", "total", "Swap"}}},
	{"Load", []member{{"load.1", "1m", "Load 1m"}, {"load.5", "5m", "Load 5m"}, {"load.15", "15m", "Load 15m"}}},
	{"Load per core", []member{{"load.5_per_core", "5m", "Load per core"}}},
	{"Disk I/O", []member{{"disk.read_bytes_per_sec", "read", "Disk read"}, {"disk.write_bytes_per_sec", "write", "Disk write"}}},
	{"Network", []member{{"net.rx_bytes_per_sec", "in", "Network in"}, {"net.tx_bytes_per_sec", "out", "Network out"}}},
	{"Filesystems", []member{{"fs.used_percent", "used", "Filesystem used"}}},
	{"Filesystem bytes", []member{{"fs.used_bytes", "used", "Filesystem bytes used"}, {"fs.size_bytes", "size", "Filesystem size"}}},
	{"Probe", []member{{"probe.connect_seconds", "connect", "Probe connect"}, {"probe.ttfb_seconds", "first byte", "Probe first byte"},
		{"probe.total_seconds", "total", "Probe total"}}},
	{"Up", []member{{"probe.up", "probe", "Probe up"}, {"scrape.up", "scrape", "Scrape up"}}},
	{"Processes", []member{{"host.procs", "processes", "Processes"}}},
	{"CPU cores", []member{{"cpu.cores", "cores", "CPU cores"}}},
	{"Uptime", []member{{"host.uptime_seconds", "uptime", "Uptime"}}},
	{"Status code", []member{{"probe.status_code", "status", "Probe status code"}}},
}

// memberOf finds a metric name (without labels) in the families: the
// family's place and the member.
func memberOf(name string) (int, member, bool) {
	for i, f := range families {
		for _, m := range f.members {
			if m.metric == name {
				return i, m, true
			}
		}
	}
	return len(families), member{metric: name, label: name, name: name}, false
}

// splitLabels cuts "name{k=v,k2=v2}" into its name, label keys and values.
func splitLabels(metric string) (name, keys, values string) {
	name, rest, ok := strings.Cut(metric, "{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return metric, "", ""
	}
	var ks, vs []string
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		ks, vs = append(ks, k), append(vs, v)
	}
	return name, strings.Join(ks, ", "), strings.Join(vs, ", ")
}

// groupPlots lays a source's metrics out as charts: a family's unlabelled
// metrics on one chart, each labelled metric's series on one chart of its
// name after them; families first, in their order, then the rest by name.
// The series carry no points yet.
func groupPlots(metrics []string) []templates.Plot {
	type key struct {
		labelled bool
		order    int
		member   int // the member's place in its family
		title    string
	}
	byKey := map[key]*templates.Plot{}
	var keys []key
	for _, metric := range metrics {
		name, labelKeys, labelValues := splitLabels(metric)
		order, m, _ := memberOf(name)
		k, label := key{order: order, title: families[min(order, len(families)-1)].title}, m.label
		switch {
		case order == len(families):
			k.title, label = name, "value"
			if labelKeys != "" {
				k.labelled, k.title, label = true, name+" by "+labelKeys, labelValues
			}
		case labelKeys != "":
			k.labelled, k.member, k.title, label = true, memberIndex(order, name), m.name+" by "+labelKeys, labelValues
		}
		p := byKey[k]
		if p == nil {
			p = &templates.Plot{Title: k.title, Unit: units.Of(metric)}
			if p.Unit == units.Percent && name != "http.error_percent" { // a share of a whole; errors read better scaled
				p.Max = 100
			}
			byKey[k] = p
			keys = append(keys, k)
		}
		p.Series = append(p.Series, templates.PlotSeries{Label: label, Metric: metric})
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(boolCompare(a.labelled, b.labelled), cmp.Compare(a.order, b.order), cmp.Compare(a.member, b.member), strings.Compare(a.title, b.title))
	})
	out := make([]templates.Plot, 0, len(keys))
	for _, k := range keys {
		p := byKey[k]
		slices.SortStableFunc(p.Series, func(a, b templates.PlotSeries) int { return seriesOrder(a) - seriesOrder(b) })
		out = append(out, *p)
	}
	return out
}

// seriesOrder keeps a family's series in the family's order.
func seriesOrder(s templates.PlotSeries) int {
	name, _, _ := splitLabels(s.Metric)
	order, _, _ := memberOf(name)
	return memberIndex(order, name)
}

// memberIndex is a metric's place in the family at order.
func memberIndex(order int, name string) int {
	if order == len(families) {
		return 0
	}
	return slices.IndexFunc(families[order].members, func(m member) bool { return m.metric == name })
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// chartRange reads the drill-down's range from its URL: ?range= (one of
// templates.Ranges, back from now, live) or a zoomed ?from=&to= (as the
// series API takes them). Anything else is the default range.
func (s *Server) chartRange(q url.Values) templates.Range {
	now := s.opts.Now().In(time.Local)
	if f, t := q.Get("from"), q.Get("to"); f != "" && t != "" {
		from, ferr := parseTime(f)
		to, terr := parseTime(t)
		if ferr == nil && terr == nil && from.Before(to) && to.Sub(from) <= MaxSeriesRange {
			return templates.Range{From: from.In(time.Local), To: to.In(time.Local)}
		}
	}
	pick := templates.Ranges[0]
	for _, r := range templates.Ranges {
		if r.Key == q.Get("range") {
			pick = r
		}
	}
	return templates.Range{Key: pick.Key, From: now.Add(-pick.D), To: now, Live: true}
}

// plots fills the charts of a source's metrics over r, with its alerts'
// transitions as marks. When the history cannot be read, the charts have
// what the ring holds, and failed says why.
func (s *Server) plots(ctx context.Context, source string, metrics []string, latest collector.Metrics, r templates.Range) (plots []templates.Plot, failed string) {
	plots = groupPlots(metrics)
	marks, err := s.marks(ctx, source, r.From, r.To)
	if err != nil {
		s.opts.Logger.Warn("read alert transitions", "source", source, "err", err)
	}
	markOn(plots, marks)
	step := r.To.Sub(r.From) / templates.PlotPoints
	for i := range plots {
		p := &plots[i]
		names := make([]string, len(p.Series))
		for j, se := range p.Series {
			names[j] = se.Metric
		}
		got, err := s.points(ctx, source, names, r.From, r.To, step)
		if err != nil {
			if failed == "" {
				s.opts.Logger.Warn("read a chart's points", "source", source, "chart", p.Title, "err", err)
				failed = shown(err) + "; the charts show what the last minutes in memory hold."
			}
			got, _ = s.ringPoints(source, names, r.From, r.To)
		}
		for j := range p.Series {
			se := &p.Series[j]
			se.Points = got.series[se.Metric]
			v, ok := latest.Get(se.Metric)
			se.Last = templates.Value{V: v, Known: ok}
		}
	}
	return plots, failed
}

// markOn puts each alert transition on the charts of its alert's metric;
// one whose metric no chart shows goes on the first chart.
func markOn(plots []templates.Plot, marks []alerts.Mark) {
	for _, m := range marks {
		tm := templates.Mark{At: m.At, Kind: m.Kind, Rule: m.Rule}
		placed := false
		for i := range plots {
			if slices.ContainsFunc(plots[i].Series, func(s templates.PlotSeries) bool { return s.Metric == m.Metric }) {
				plots[i].Marks = append(plots[i].Marks, tm)
				placed = true
			}
		}
		if !placed && len(plots) > 0 {
			plots[0].Marks = append(plots[0].Marks, tm)
		}
	}
}
