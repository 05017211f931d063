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
}

// ViewState is the part of the page's state kept in its URL.
type ViewState struct {
	Sort   string // one of Sorts
	Filter string // substring of source names
	Paused bool
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
	Hosts  []HostPanel
	Tiles  []Tile
	Alerts []Alert
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
	HostsUp       int
	HostsTotal    int
}

// Alert is one row of the alerts panel.
type Alert struct {
	Rule     string
	Source   string
	State    string // "pending" or "firing"
	Severity string
	Value    float64
	Metric   string
	Summary  string
	Since    time.Time
	AckedBy  string // who is on it; "" if nobody yet
}

// Source is the drill-down page of one source.
type Source struct {
	Page
	Name      string
	Status    Status
	Charts    []Chart
	Alerts    []Alert
	Tile      *Tile      // for service sources
	Instances []Instance // a service's instances, for the breakdown
}

// Instance is one instance of a service on its drill-down page.
type Instance struct {
	Name    string
	Up      bool
	Metrics map[string]float64 // this instance's metrics, without the {instance=…} part
}
