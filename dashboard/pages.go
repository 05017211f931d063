package dashboard

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"math"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"vigil/alerts"
	"vigil/collector"
	"vigil/static"
	"vigil/stream"
	"vigil/templates"
	"vigil/units"
)

// serviceRateWindow is how much history a service tile's sparkline shows.
const serviceRateWindow = 2 * time.Minute

// handleIndex renders the dashboard. It is complete without JavaScript; the
// page script then follows the stream from the id the page was rendered at.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	// Read the stream position before the data: an event published in
	// between is sent again and skipped by the page (it compares sample
	// times), where the other order could lose it.
	last := s.opts.Hub.LastID()
	view := s.viewState(r)
	d := templates.Dashboard{Page: s.page(r, "vigil", last, view, "")}
	if s.opts.Fleet != nil {
		// A hub's hosts, and its agents' connections, are rows of one
		// table: hundreds do not fit as panels or tiles.
		d.Fleet = s.fleet(view)
	}
	for _, src := range s.opts.Store.Sources() {
		switch {
		case d.Fleet != nil && (strings.HasPrefix(src, "host/") || strings.HasPrefix(src, "upstream/")):
		case strings.HasPrefix(src, "host/"):
			d.Hosts = append(d.Hosts, s.hostPanel(src))
		default:
			d.Tiles = append(d.Tiles, s.tile(src))
		}
	}
	sortTiles(d.Tiles, view.Sort)
	d.Alerts = s.alertViews("")
	d.Silences = s.silenceViews(r)
	s.render(w, r, templates.DashboardPage(d))
}

// handleSource renders the drill-down page of one source.
func (s *Server) handleSource(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	last := s.opts.Hub.LastID()
	if _, ok := s.opts.Store.Latest(name); !ok {
		if _, known := s.opts.Store.Status(name); !known {
			writeError(w, http.StatusNotFound, "no such source: "+quote(name)+" (GET /api/v1/series lists them)")
			return
		}
	}
	src := templates.Source{
		Page:   s.page(r, stream.Readable(name)+" · vigil", last, s.viewState(r), "source="+name),
		Name:   name,
		Status: s.status(name),
		Alerts: s.alertViews(name),
	}
	src.Silences = s.silenceViews(r)
	if !strings.HasPrefix(name, "host/") {
		t := s.tile(name)
		src.Tile = &t
		src.Instances = instances(name, s.opts.Store)
		src.Hosts = s.hostShares(name)
	}
	latest, _ := s.opts.Store.Latest(name)
	var metrics []string
	for _, metric := range s.opts.Store.Metrics(name) { // this source's, not every series of a hub
		if len(src.Instances) == 1 && sameAsService(metric, latest.Metrics) {
			continue
		}
		metrics = append(metrics, metric)
	}
	src.Range = s.chartRange(r.URL.Query())
	src.Page.Charts = true
	src.Plots, src.ChartsError = s.plots(r.Context(), name, metrics, latest.Metrics, src.Range)
	s.render(w, r, templates.SourcePage(src))
}

func (s *Server) page(r *http.Request, title string, last uint64, view templates.ViewState, stream string) templates.Page {
	problems, _ := s.problems()
	return templates.Page{
		Title: title, Version: s.opts.Version, Demo: s.opts.Demo, LastEventID: last,
		Interval: s.opts.Interval, Heartbeat: s.opts.Heartbeat, RenderedAt: s.opts.Now(), View: view, StreamQuery: stream,
		Problems: problems, Viewer: s.viewer(r), Path: localPath(r.URL.RequestURI()),
	}
}

// viewState reads the page's view from its URL: ?q=, ?sort=, ?paused=;
// on a hub ?sort= orders the host table, ?tiles= the tiles, and ?group=
// groups the hosts by a label.
func (s *Server) viewState(r *http.Request) templates.ViewState {
	q := r.URL.Query()
	v := templates.ViewState{Sort: templates.Sorts[0].Key, Filter: q.Get("q"), Paused: q.Get("paused") == "1", Fleet: s.opts.Fleet != nil}
	known := func(list []struct{ Key, Label string }, key string) bool {
		return slices.ContainsFunc(list, func(s struct{ Key, Label string }) bool { return s.Key == key })
	}
	if sort := q.Get(v.TileSortParam()); known(templates.Sorts, sort) {
		v.Sort = sort
	}
	if v.Fleet {
		v.HostSort = templates.HostSorts[0].Key
		if sort := q.Get("sort"); known(templates.HostSorts, sort) {
			v.HostSort = sort
		}
		if g := q.Get("group"); len(g) <= maxGroupKey {
			v.Group = g
		}
	}
	return v
}

// maxGroupKey bounds the label key a hub's host table is grouped by.
const maxGroupKey = 128

// render writes a page under a strict Content-Security-Policy: scripts only
// from this origin and with this response's nonce, nothing from elsewhere.
func (s *Server) render(w http.ResponseWriter, r *http.Request, c templ.Component) {
	s.renderStatus(w, r, http.StatusOK, c)
}

// renderStatus is render with a status other than 200.
func (s *Server) renderStatus(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var b [16]byte
	rand.Read(b[:])
	nonce := base64.StdEncoding.EncodeToString(b[:])
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'nonce-"+nonce+"'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := c.Render(templ.WithNonce(r.Context(), nonce), w); err != nil {
		s.opts.Logger.Warn("render page", "path", r.URL.Path, "err", err)
	}
}

func (s *Server) status(source string) templates.Status {
	st, _ := s.opts.Store.Status(source)
	return templates.Status{State: st.State, Error: st.Error, Since: st.Since}
}

func (s *Server) chart(source, metric, label string, capacity int, since time.Time) templates.Chart {
	pts, _ := s.opts.Store.Range(source, metric, since)
	pts = upTo(pts, s.opts.Now())
	vals := make([]float64, len(pts))
	for i, p := range pts {
		vals[i] = p.V
	}
	c := templates.Chart{Label: label, Metric: metric, Values: vals, Capacity: capacity}
	if smp, ok := s.opts.Store.Latest(source); ok {
		c.Last.V, c.Last.Known = smp.Metrics.Get(metric)
	}
	if units.Of(metric) == units.Percent {
		c.Max = 100
	}
	return c
}

// upTo cuts the points, in time order, after t: a chart's end, or now
// for a sparkline — a sample from a clock ahead of the hub's, which the
// store keeps, is not yet, and does not end a sparkline.
func upTo(pts []collector.Point, t time.Time) []collector.Point {
	for len(pts) > 0 && pts[len(pts)-1].T.After(t) {
		pts = pts[:len(pts)-1]
	}
	return pts
}

// alertViews lists active alerts (of one source, or all when source is
// ""), firing first.
func (s *Server) alertViews(source string) []templates.Alert {
	if s.opts.Alerts == nil {
		return nil
	}
	var out []templates.Alert
	var silences map[string]alerts.Silence // read once an alert needs them
	for _, a := range s.opts.Alerts.Active() {
		if len(a.SilencedBy) > 0 && silences == nil && s.opts.Silences != nil {
			list, _ := s.opts.Silences.Silences(context.Background())
			silences = make(map[string]alerts.Silence, len(list))
			for _, sl := range list {
				silences[sl.ID] = sl
			}
		}
		if source != "" && a.Source != source {
			continue
		}
		summary := a.Annotations["summary"]
		if summary == "" {
			summary = a.Metric + " " + a.Op + " " + strconv.FormatFloat(a.Threshold, 'g', -1, 64)
		}
		since := a.StartedAt
		if a.State != alerts.StateFiring {
			since = a.ActiveAt
		}
		v := templates.Alert{Fingerprint: a.Fingerprint, Rule: a.Rule, Source: a.Source, State: a.State, Severity: a.Severity,
			Value: a.Value, Metric: a.Metric, Summary: summary, Since: since, AckedBy: a.AckedBy, Muted: a.Muted}
		for _, id := range a.SilencedBy {
			if sl, ok := silences[id]; ok {
				v.Silences = append(v.Silences, silenceOf(sl))
			}
		}
		out = append(out, v)
	}
	return out
}

// silenceOf is a silence as the page shows it.
func silenceOf(sl alerts.Silence) templates.Silence {
	return templates.Silence{ID: sl.ID, Matchers: strings.Join(sl.Matchers, ", "), StartsAt: sl.StartsAt, EndsAt: sl.EndsAt,
		CreatedBy: sl.CreatedBy, Comment: sl.Comment}
}

// silenceViews are the silences active or pending now, for the page;
// expired ones are in the API.
func (s *Server) silenceViews(r *http.Request) []templates.Silence {
	if s.opts.Silences == nil {
		return nil
	}
	now := s.opts.Now()
	list, err := alerts.ListSilences(r.Context(), s.opts.Silences, now)
	if err != nil {
		return nil
	}
	var out []templates.Silence
	for _, sl := range list {
		if st := sl.State(now); st != alerts.SilenceExpired {
			v := silenceOf(sl)
			v.Pending = st == alerts.SilencePending
			out = append(out, v)
		}
	}
	return out
}

// instances splits a service's newest sample by its {instance=…} labels.
func instances(source string, store *collector.Store) []templates.Instance {
	smp, _ := store.Latest(source)
	rows := []templates.Instance{}
	for name, m := range byLabel(smp.Metrics, "instance") {
		up, scraped := m["scrape.up"]
		if !scraped {
			up = m["probe.up"]
		}
		rows = append(rows, templates.Instance{Name: name, Metrics: m, Up: up == 1})
	}
	slices.SortFunc(rows, func(a, b templates.Instance) int { return strings.Compare(a.Name, b.Name) })
	return rows
}

// anyPrefixed says whether a metric's name starts with prefix.
func anyPrefixed(m collector.Metrics, prefix string) bool {
	for _, k := range m.Names().List() {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// sameAsService says whether a metric is an instance's figure that the
// service has too: with one instance, the same series twice.
func sameAsService(metric string, metrics collector.Metrics) bool {
	bare, _, ok := strings.Cut(metric, "{instance=")
	if !ok || !strings.HasSuffix(metric, "}") {
		return false
	}
	return metrics.Has(bare)
}

// byLabel splits a sample's metrics that end in {label=value} by value:
// value → metric without the label → its value.
func byLabel(metrics collector.Metrics, label string) map[string]map[string]float64 {
	open := "{" + label + "="
	out := map[string]map[string]float64{}
	for k, v := range metrics.All() {
		i := strings.Index(k, open)
		if i < 0 || !strings.HasSuffix(k, "}") {
			continue
		}
		value := k[i+len(open) : len(k)-1]
		if out[value] == nil {
			out[value] = map[string]float64{}
		}
		out[value][k[:i]] = v
	}
	return out
}

var hostStats = []struct{ label, metric string }{
	{"CPU", "cpu.percent"},
	{"Memory", "mem.used_percent"},
	{"Available", "mem.available_bytes"},
	{"Swap", "swap.used_percent"},
	{"Load 1m", "load.1"},
	{"Load 5m", "load.5"},
	{"Load 15m", "load.15"},
	{"Disk read", "disk.read_bytes_per_sec"},
	{"Disk write", "disk.write_bytes_per_sec"},
	{"Net in", "net.rx_bytes_per_sec"},
	{"Net out", "net.tx_bytes_per_sec"},
	{"Uptime", "host.uptime_seconds"},
	{"Processes", "host.procs"},
}

var hostCharts = []struct{ label, metric string }{
	{"CPU", "cpu.percent"},
	{"Memory", "mem.used_percent"},
	{"Load 1m", "load.1"},
	{"Disk read", "disk.read_bytes_per_sec"},
	{"Disk write", "disk.write_bytes_per_sec"},
	{"Net in", "net.rx_bytes_per_sec"},
	{"Net out", "net.tx_bytes_per_sec"},
}

func (s *Server) hostPanel(source string) templates.HostPanel {
	smp, _ := s.opts.Store.Latest(source)
	p := templates.HostPanel{Source: source, Name: strings.TrimPrefix(source, "host/"), Status: s.status(source)}
	for _, st := range hostStats {
		v, ok := smp.Metrics.Get(st.metric)
		p.Stats = append(p.Stats, templates.Stat{Label: st.label, Metric: st.metric, Value: v, Known: ok})
	}
	capacity := s.opts.Store.Capacity()
	since := s.opts.Now().Add(-time.Duration(capacity) * s.opts.Interval)
	for _, c := range hostCharts {
		if smp.Metrics.Has(c.metric) {
			p.Charts = append(p.Charts, s.chart(source, c.metric, c.label, capacity, since))
		}
	}
	for name, v := range smp.Metrics.All() {
		mount, ok := strings.CutPrefix(name, "fs.used_percent{mount=")
		if !ok {
			continue
		}
		mount = strings.TrimSuffix(mount, "}")
		label := "{mount=" + mount + "}"
		p.Filesystems = append(p.Filesystems, templates.Filesystem{
			Mount: mount, UsedPercent: v,
			UsedBytes: smp.Metrics.Value("fs.used_bytes" + label), SizeBytes: smp.Metrics.Value("fs.size_bytes" + label),
		})
	}
	slices.SortFunc(p.Filesystems, func(a, b templates.Filesystem) int { return strings.Compare(a.Mount, b.Mount) })
	return p
}

// tile builds a service tile for a service source (even before its first
// traffic is known) or any source reporting request metrics, and a generic
// one otherwise.
func (s *Server) tile(source string) templates.Tile {
	smp, _ := s.opts.Store.Latest(source)
	name := source
	if i := strings.IndexByte(source, '/'); i >= 0 {
		name = source[i+1:]
	}
	t := templates.Tile{Source: source, Name: name, Kind: "generic", Status: s.status(source), State: "ok"}
	for _, a := range s.alertViews(source) {
		if a.State == alerts.StateFiring || (a.State == alerts.StatePending && t.State == "ok") {
			t.State = a.State
		}
	}
	m := smp.Metrics
	if m.Has("http.requests_per_sec") || strings.HasPrefix(source, "service/") {
		t.Kind = "service"
		t.Service = templates.ServiceStats{
			Rate: m.Value("http.requests_per_sec"), ErrorPercent: m.Value("http.error_percent"),
			P50: m.Value("http.latency_p50_seconds"), P90: m.Value("http.latency_p90_seconds"), P99: m.Value("http.latency_p99_seconds"),
			P995: m.Value("http.latency_p99_5_seconds"), Max: m.Value("http.latency_max_seconds"),
			HostsUp: int(m.Value("instances.up")), HostsTotal: int(m.Value("instances.total")),
		}
		if total, merged := m.Get("hosts.total"); merged { // a hub's: count hosts
			t.Service.Merged, t.Service.HostsUp, t.Service.HostsTotal = true, int(m.Value("hosts.up")), int(total)
		}
		// Scraped and merged latencies come from histogram buckets: the
		// max is the top of the highest bucket with a request.
		t.Service.MaxBound = t.Service.Merged || anyPrefixed(m, "scrape.up")
		capacity := max(2, int(serviceRateWindow/s.opts.Interval))
		t.Rate = s.chart(source, "http.requests_per_sec", "rate", capacity, s.opts.Now().Add(-serviceRateWindow))
		return t
	}
	names := slices.Sorted(slices.Values(m.Names().List()))
	for _, k := range names[:min(len(names), 8)] {
		t.Metrics = append(t.Metrics, templates.Stat{Label: k, Metric: k, Value: m.Value(k), Known: true})
	}
	return t
}

// sortTiles orders tiles the way the page script does: by bands of error
// rate, volume or latency rather than raw values, then by source name, so tiles do
// not trade places on every small change.
func sortTiles(tiles []templates.Tile, by string) {
	band := func(e float64) int {
		for i, b := range templates.HealthBands {
			if e < b.Below {
				return i
			}
		}
		return len(templates.HealthBands) - 1
	}
	log2b := func(v float64) int { return int(math.Floor(math.Log2(1 + max(0, v)))) }
	key := func(t templates.Tile) []int {
		switch by {
		case "name":
			return nil
		case "rate":
			return []int{-log2b(t.Service.Rate)}
		case "latency":
			return []int{-log2b(t.Service.P99 * 1000)}
		}
		return []int{-band(t.Service.ErrorPercent), -log2b(t.Service.Rate)}
	}
	slices.SortStableFunc(tiles, func(a, b templates.Tile) int {
		if c := slices.Compare(key(a), key(b)); c != 0 {
			return c
		}
		return strings.Compare(a.Source, b.Source)
	})
}

// staticFiles serves the embedded assets with a content hash as ETag, so
// browsers revalidate cheaply and never run a stale script.
type staticFiles map[string]staticFile

type staticFile struct {
	body  []byte
	gz    []byte // body gzipped, when that saves a good part of it
	etag  string
	ctype string
}

func loadStatic() staticFiles {
	files := staticFiles{}
	fs.WalkDir(static.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".md") {
			return err
		}
		b, _ := fs.ReadFile(static.FS, p)
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "text/plain; charset=utf-8" // LICENSE
		}
		files[p] = staticFile{body: b, gz: gzipped(b), etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
		return nil
	})
	return files
}

func (f staticFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	file, ok := f[r.PathValue("file")]
	if !ok {
		writeError(w, http.StatusNotFound, "no such file: "+quote(r.PathValue("file")))
		return
	}
	h := w.Header()
	if r.PathValue("file") == "sw.js" {
		h.Set("Service-Worker-Allowed", "/") // its scope is the whole dashboard: it opens the alert in a tab it controls
	}
	h.Set("ETag", file.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Header.Get("If-None-Match") == file.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", file.ctype)
	h.Add("Vary", "Accept-Encoding")
	if file.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		w.Write(file.gz)
		return
	}
	w.Write(file.body)
}

// gzipped compresses a static file once, at start; nil when it would not
// save a quarter of it (icons, small files).
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	z, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	z.Write(b)
	z.Close()
	if buf.Len() > len(b)*3/4 {
		return nil
	}
	return buf.Bytes()
}

// acceptsGzip reads Accept-Encoding: gzip, unless given a q of 0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
