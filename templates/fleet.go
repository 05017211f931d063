package templates

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"vigil/units"
)

// Fleet table geometry: each row's CPU sparkline, in SVG user units.
const (
	RowSparkW = 80.0
	RowSparkH = 16.0
)

// HostMatches reports whether a filter keeps a host row: every word of it
// must match, "key=value" the row's label of that key exactly, any other
// word part of the row's name, its agent's name or one of its label
// values; case does not matter. static/app.js applies the same rule as the
// user types.
func HostMatches(filter string, r HostRow) bool {
	for _, w := range strings.Fields(strings.ToLower(filter)) {
		if k, v, ok := strings.Cut(w, "="); ok && k != "" {
			if strings.ToLower(labelValue(r.Labels, k)) != v {
				return false
			}
			continue
		}
		found := strings.Contains(strings.ToLower(r.Name), w) || strings.Contains(strings.ToLower(r.Upstream), w)
		for _, l := range r.Labels {
			found = found || strings.Contains(strings.ToLower(l.Value), w)
		}
		if !found {
			return false
		}
	}
	return true
}

// tileHidden says whether the filter hides a tile. On a hub a tile has no
// labels: the words that are not "key=value" must be part of its source's
// name. Elsewhere the whole filter must be (hiddenBy).
func tileHidden(v ViewState, source string) bool {
	if !v.Fleet {
		return hiddenBy(v.Filter, source)
	}
	for _, w := range strings.Fields(strings.ToLower(v.Filter)) {
		if k, _, ok := strings.Cut(w, "="); ok && k != "" {
			continue
		}
		if !strings.Contains(strings.ToLower(source), w) {
			return true
		}
	}
	return false
}

func labelValue(labels []Label, key string) string {
	for _, l := range labels {
		if strings.ToLower(l.Key) == key {
			return l.Value
		}
	}
	return ""
}

// TileSortParam is the URL parameter of the tiles' order: "sort", which a
// hub gives its host table instead.
func (v ViewState) TileSortParam() string {
	if v.Fleet {
		return "tiles"
	}
	return "sort"
}

// Link is the page's URL with one parameter of its view set to a value
// (a default value leaves the parameter out).
func (v ViewState) Link(key, value string) string {
	params := []struct{ key, value, def string }{
		{"q", v.Filter, ""},
		{v.TileSortParam(), v.Sort, Sorts[0].Key},
	}
	if v.Fleet {
		params = append(params,
			struct{ key, value, def string }{"sort", v.HostSort, HostSorts[0].Key},
			struct{ key, value, def string }{"group", v.Group, ""})
	}
	params = append(params, struct{ key, value, def string }{"paused", map[bool]string{true: "1"}[v.Paused], ""})
	q := url.Values{}
	for _, p := range params {
		if p.key == key {
			p.value = value
		}
		if p.value != "" && p.value != p.def {
			q.Set(p.key, p.value)
		}
	}
	if len(q) == 0 {
		return "/"
	}
	return "?" + q.Encode()
}

// ariaSort is a column header's aria-sort: the order it shows when the
// table is sorted by it.
func ariaSort(v ViewState, key string) string {
	switch {
	case v.HostSort != key:
		return "none"
	case key == "name":
		return "ascending"
	}
	return "descending"
}

// labelsJSON is a row's labels for the page script.
func labelsJSON(labels []Label) string {
	if len(labels) == 0 {
		return "{}"
	}
	m := make(map[string]string, len(labels))
	for _, l := range labels {
		m[l.Key] = l.Value
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// rowState is how a row's state reads.
func rowState(s string) string {
	if s == RowFailed {
		return "failing"
	}
	return s
}

// valueAttr is a value for the page script: empty when not known.
func valueAttr(v Value) string {
	if !v.Known {
		return ""
	}
	return ftoa(v.V)
}

func valueText(kind string, v Value) string {
	if !v.Known {
		return "–"
	}
	return units.FormatAs(kind, v.V)
}

func clockAttr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// msAttr is a time in Unix milliseconds for the page script; empty when
// zero.
func msAttr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// groupTitle names a group of rows.
func groupTitle(key, value string) string {
	if value == "" {
		return "no " + key
	}
	return key + " = " + value
}

func plural(n int, one, many string) string {
	if n == 1 {
		return itoa(n) + " " + one
	}
	return itoa(n) + " " + many
}

// fleetColumns are the host table's sortable columns, in order, with the
// order (one of HostSorts) each sorts by.
var fleetColumns = []struct{ Sort, Label, Title string }{
	{"worst", "State", "Worst first: unreachable, failing, waiting, then the highest of CPU, memory and disk"},
	{"name", "Host", "The host's name and its agent's labels"},
	{"cpu", "CPU", "cpu.percent"},
	{"mem", "Memory", "mem.used_percent"},
	{"disk", "Disk", "The fullest filesystem (fs.used_percent)"},
	{"net", "Network", "Bytes received and sent a second"},
	{"load", "Load", "The 5-minute load per core (load.5_per_core), or the 1-minute load"},
	{"uptime", "Uptime", "host.uptime_seconds"},
}
