// Package templates renders vigil's pages on the server with templ. It holds
// view structs and pure helpers only: no I/O, no knowledge of where the data
// comes from. Package dashboard builds the views from the ring buffer.
//
// Every element a test or the page script needs carries a data-testid or a
// data-* attribute; static/app.js updates the same markup in place from the
// event stream.
package templates

import "time"

// Page is what every page shares.
type Page struct {
	Title       string
	Version     string
	Demo        bool   // the data comes from vigil's built-in demo services
	LastEventID uint64 // the stream resumes after this event
	Interval    time.Duration
	Heartbeat   time.Duration // the longest a working stream stays silent
	RenderedAt  time.Time
	View        ViewState
	StreamQuery string // filters the page's event stream, for example "source=host/web-1"
	Charts      bool   // the page has charts: load the charting library
	// Problems are what keeps vigil from working whole as the page was
	// made, each "what: why" (the alert store cannot save, NATS cannot be
	// reached): the page says so above everything else.
	Problems []string
	Viewer   Viewer
	Path     string // this page's path and query, to come back to after a button
}

// Viewer is who looks at the page.
type Viewer struct {
	SignIn   bool   // vigil has tokens: there is a sign-in
	Name     string // who signed in; "" if nobody
	CanWrite bool   // may acknowledge and silence: signed in with a write token, or writes are open
	Push     bool   // may subscribe this browser to pushes ("Notify me")
}

// SignIn is the sign-in form.
type SignIn struct {
	Next    string // where to go back to
	Problem string // why the last try failed
	Needed  bool   // false: vigil has no tokens, and writes are open
}

// Silence is a silence, active or pending, on the page.
type Silence struct {
	ID               string
	Matchers         string
	StartsAt, EndsAt time.Time
	CreatedBy        string
	Comment          string
	Pending          bool // it starts later
}

// ViewState is the part of the page's state kept in its URL.
type ViewState struct {
	Sort   string // one of Sorts
	Filter string // substring of source names; on a hub, see HostMatches
	Paused bool
	// Fleet says the page is a hub's: its hosts are a table, sorted by
	// HostSort (?sort=) and grouped by the label Group (?group=); the
	// tiles' order is then ?tiles=.
	Fleet    bool
	HostSort string // one of HostSorts
	Group    string // a label's key; "" for no groups
}

// HostSorts are the orders of a hub's host table; the first is the
// default. Every order but name puts the highest value first.
var HostSorts = []struct{ Key, Label string }{
	{"worst", "worst first"},
	{"name", "name"},
	{"cpu", "CPU"},
	{"mem", "memory"},
	{"disk", "disk"},
	{"net", "network"},
	{"load", "load"},
	{"uptime", "uptime"},
}

// Sorts are the orders tiles can be sorted in; the first is the default.
var Sorts = []struct{ Key, Label string }{
	{"error", "error, then volume"},
	{"name", "name"},
	{"rate", "rate"},
	{"latency", "latency"},
}

// Dashboard is the main page.
type Dashboard struct {
	Page
	Hosts    []HostPanel
	Fleet    *Fleet // on a hub, the hosts as a table instead of Hosts
	Tiles    []Tile
	Alerts   []Alert
	Silences []Silence // active and pending
}

// Fleet is a hub's table of hosts: one row per host its agents send, per
// agent not reached yet, and for the hub's own host.
type Fleet struct {
	Groups      []RowGroup // in order; one, with no Key, when not grouped
	LabelKeys   []string   // every label key of the rows, for grouping
	Total       int
	Shown       int // not hidden by the filter
	Unreachable int
	Failed      int
	SparkCap    int // points in each row's CPU sparkline
}

// RowGroup is the rows that share a label's value.
type RowGroup struct {
	Value string // the label's value; "" for rows without the label
	Rows  []HostRow
	Shown int
}

// Row states, worst first: the agent cannot be reached, the host's
// collect fails, the agent has not been reached yet, all is well.
const (
	RowUnreachable = "unreachable"
	RowFailed      = "failed"
	RowWaiting     = "waiting"
	RowUp          = "up"
)

// HostRow is one host of a hub's fleet.
type HostRow struct {
	Source   string // host/<name>, or upstream/<name> for an agent with no host known yet
	Name     string
	Upstream string // the agent's name; "" for the hub's own host
	Labels   []Label
	State    string    // one of the Row* states
	Since    time.Time // when the agent became unreachable, or the host failed
	Error    string
	CPU      Value // cpu.percent
	Mem      Value // mem.used_percent
	Disk     Value // the fullest filesystem's fs.used_percent
	Net      Value // bytes received and sent a second
	Load     Value // load.5_per_core, or load.1 where the cores are not known
	Uptime   Value // host.uptime_seconds
	CPUSpark []float64
	Sampled  time.Time // the newest sample's time: the page script skips it, and older ones, on the stream
	Hidden   bool      // by the filter
}

// Label is one of an agent's labels.
type Label struct{ Key, Value string }

// Value is a number that may not be known.
type Value struct {
	V     float64
	Known bool
}

// HostPanel is one host source.
type HostPanel struct {
	Source      string
	Name        string
	Status      Status
	Stats       []Stat
	Charts      []Chart
	Filesystems []Filesystem
}

// Status is a source's health as shown on the page.
type Status struct {
	State string // "up", "failed", or "" before the first report
	Error string
	Since time.Time
}

// Stat is one current value.
type Stat struct {
	Label  string
	Metric string
	Value  float64
	Known  bool // false: no value yet
}

// Chart is a sparkline of one metric over the window.
type Chart struct {
	Label    string
	Metric   string
	Values   []float64 // oldest first, one per interval
	Last     Value     // the caption: the newest sample's, which is not the latest by time after a clock was set back
	Capacity int       // points the window holds
	Max      float64   // fixed top of the scale; 0 scales to the data
}

// Filesystem is one mounted filesystem's use.
type Filesystem struct {
	Mount       string
	UsedPercent float64
	UsedBytes   float64
	SizeBytes   float64
}

// Tile is a service source (Hystrix-style) or any other source (generic).
type Tile struct {
	Source  string
	Name    string
	Kind    string // "service" or "generic"
	Status  Status
	State   string // alert state: "ok", "pending" or "firing"
	Service ServiceStats
	Rate    Chart // requests per second over the last two minutes
	Metrics []Stat
}

// ServiceStats are a service tile's numbers.
type ServiceStats struct {
	Rate          float64 // requests per second
	ErrorPercent  float64
	P50, P90, P99 float64 // seconds
	P995, Max     float64
	// MaxBound says Max is a histogram bucket's top (a scraped or merged
	// service's), not the slowest request measured: shown as "≤ 2.5 s".
	MaxBound   bool
	HostsUp    int // instances up, or on a hub (Merged) hosts up
	HostsTotal int
	// Merged says a hub merged the service from its agents: HostsUp and
	// HostsTotal count hosts (hosts.up, hosts.total), not instances.
	Merged bool
}

// Alert is one row of the alerts panel.
type Alert struct {
	Fingerprint string
	Rule        string
	Source      string
	State       string // "pending" or "firing"
	Severity    string
	Value       float64
	Metric      string
	Summary     string
	Since       time.Time
	AckedBy     string    // who is on it; "" if nobody yet
	Silences    []Silence // those that mute it
	Muted       bool      // it fired while silenced: nothing was sent
}

// Source is the drill-down page of one source.
type Source struct {
	Page
	Name   string
	Status Status
	Range  Range  // the time the charts span
	Plots  []Plot // the charts, in reading order
	// ChartsError says why the charts show less than their range: the
	// history could not be read (they show what the ring holds).
	ChartsError string
	Alerts      []Alert
	Silences    []Silence  // active and pending
	Tile        *Tile      // for service sources
	Instances   []Instance // a service's instances, for the breakdown
	Hosts       []HostShare
}

// HostShare is one agent's part of a service a hub merged, from the
// service's {host=…} metrics.
type HostShare struct {
	Host    string // the agent's (upstream's) name
	Link    string // its host's page, when the hub knows it
	Up      bool
	Metrics map[string]float64 // without the {host=…} part
}

// Instance is one instance of a service on its drill-down page.
type Instance struct {
	Name    string
	Up      bool
	Metrics map[string]float64 // this instance's metrics, without the {instance=…} part
}

// Plot is one chart of a drill-down page: one or more series of one unit
// over the page's range. The server draws it as an SVG; the page script
// draws it again with uPlot (static/charts.js), from the series API.
type Plot struct {
	Title  string // "Latency", "Requests by instance"
	Unit   string // a units kind, the same for every series
	Max    float64
	Series []PlotSeries
	Marks  []Mark // alert transitions in the range
}

// PlotSeries is one line of a chart.
type PlotSeries struct {
	Label  string // "p99", "127.0.0.1:8081"
	Metric string
	Points []Point // oldest first, within the range
	Last   Value   // the newest value the ring holds
}

// Point is one value at one time.
type Point struct {
	T time.Time
	V float64
}

// Mark is an alert transition drawn on the charts.
type Mark struct {
	At   time.Time
	Kind string // pending, firing, resolved, ...
	Rule string
}

// Range is the time a drill-down's charts span: one of Ranges back from
// now (Live, following the stream), or a zoomed From–To.
type Range struct {
	Key      string // one of Ranges; "" for a zoomed range
	From, To time.Time
	Live     bool
}

// Ranges are the range picker's choices, the first the default.
var Ranges = []struct {
	Key string
	D   time.Duration
}{
	{"10m", 10 * time.Minute}, {"1h", time.Hour}, {"6h", 6 * time.Hour},
	{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour},
}

// ReceiverRow is a receiver on the receivers page.
type ReceiverRow struct {
	ID, Name, Type string
	Target         string // where its messages go, without credentials
	Match          string // its matchers, "" for every alert
	Status         string
	Testable       bool // active: a test can be sent
	Last           *DeliveryView
}

// DeliveryView is a receiver's last delivery.
type DeliveryView struct {
	ID, Event, State string
	At               time.Time
	Error            string
	Attempts         int
	Next             time.Time // a queued one's next attempt
}
