package dashboard

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"vigil/collector"
	"vigil/templates"
)

// FleetSparkPoints is how many samples a host row's CPU sparkline shows.
const FleetSparkPoints = 60

// fleet builds a hub's host table: a row for every host its agents sent,
// one for every agent with no host known yet (not reached yet), and one
// for each host of the hub's own; sorted, grouped and filtered as the
// view says.
func (s *Server) fleet(view templates.ViewState) *templates.Fleet {
	// The sources first: an agent's host is its upstream's before it is
	// in the store, so every host listed here is in the status read after.
	sources := s.opts.Store.Sources()
	ups := s.opts.Fleet.Status()
	now := s.opts.Now()
	var rows []templates.HostRow
	owned := map[string]bool{}
	for i := range ups {
		u := &ups[i]
		labels := sortedLabels(u.Labels)
		n := 0
		for _, src := range u.Hosts {
			if strings.HasPrefix(src, "host/") {
				owned[src] = true
				rows = append(rows, s.hostRow(src, u, labels, now))
				n++
			}
		}
		if n == 0 {
			r := templates.HostRow{Source: "upstream/" + u.Name, Name: u.Name, Upstream: u.Name, Labels: labels}
			upstreamState(&r, u)
			if r.State == "" {
				r.State = templates.RowWaiting
			}
			rows = append(rows, r)
		}
	}
	for _, src := range sources {
		if strings.HasPrefix(src, "host/") && !owned[src] {
			rows = append(rows, s.hostRow(src, nil, nil, now))
		}
	}
	f := &templates.Fleet{Total: len(rows), SparkCap: FleetSparkPoints}
	keys := map[string]bool{}
	for i := range rows {
		r := &rows[i]
		r.Hidden = !templates.HostMatches(view.Filter, *r)
		if !r.Hidden {
			f.Shown++
		}
		switch r.State {
		case templates.RowUnreachable:
			f.Unreachable++
		case templates.RowFailed:
			f.Failed++
		}
		for _, l := range r.Labels {
			keys[l.Key] = true
		}
	}
	f.LabelKeys = slices.Sorted(maps.Keys(keys))
	sortRows(rows, view.HostSort)
	f.Groups = groupRows(rows, view.Group)
	return f
}

// hostRow is one host's row; u is the agent that sends it, nil for the
// hub's own.
func (s *Server) hostRow(src string, u *collector.UpstreamStatus, labels []templates.Label, now time.Time) templates.HostRow {
	smp, sampled := s.opts.Store.Latest(src)
	r := templates.HostRow{Source: src, Name: strings.TrimPrefix(src, "host/"), Labels: labels, Sampled: smp.Time}
	r.CPU, r.Mem, r.Disk, r.Net, r.Load, r.Uptime = hostFigures(smp.Metrics)
	pts, _ := s.opts.Store.Range(src, "cpu.percent", now.Add(-time.Duration(FleetSparkPoints)*s.opts.Interval))
	pts = upTo(pts, now)
	for _, p := range pts[max(0, len(pts)-FleetSparkPoints):] {
		r.CPUSpark = append(r.CPUSpark, p.V)
	}
	if u != nil {
		r.Upstream = u.Name
		upstreamState(&r, u)
	}
	if r.State != "" {
		return r
	}
	st, _ := s.opts.Store.Status(src)
	switch {
	case st.State == collector.StateFailed:
		r.State, r.Since, r.Error = templates.RowFailed, st.Since, st.Error
	case !sampled:
		r.State = templates.RowWaiting
	default:
		r.State = templates.RowUp
	}
	return r
}

// upstreamState sets a row's state from its agent's, when the agent is
// what is wrong: not reached (yet), or refusing what it sends.
func upstreamState(r *templates.HostRow, u *collector.UpstreamStatus) {
	switch {
	case !u.Connected && u.Error == "":
		r.State, r.Since = templates.RowWaiting, u.Since
	case !u.Connected:
		r.State, r.Since, r.Error = templates.RowUnreachable, u.Since, u.Error
	case u.Error != "":
		r.State, r.Since, r.Error = templates.RowFailed, u.Since, u.Error
	}
}

// hostFigures are the numbers of a host row, from its newest sample. The
// page script (static/app.js hostFigures) reads them the same way.
func hostFigures(m collector.Metrics) (cpu, mem, disk, net, load, uptime templates.Value) {
	get := func(k string) templates.Value {
		v, ok := m.Get(k)
		return templates.Value{V: v, Known: ok}
	}
	cpu, mem, uptime = get("cpu.percent"), get("mem.used_percent"), get("host.uptime_seconds")
	for k, v := range m.All() {
		if strings.HasPrefix(k, "fs.used_percent{") && (!disk.Known || v > disk.V) {
			disk = templates.Value{V: v, Known: true}
		}
	}
	rx, tx := get("net.rx_bytes_per_sec"), get("net.tx_bytes_per_sec")
	net = templates.Value{V: rx.V + tx.V, Known: rx.Known || tx.Known}
	if load = get("load.5_per_core"); !load.Known {
		load = get("load.1")
	}
	return
}

func sortedLabels(m map[string]string) []templates.Label {
	out := make([]templates.Label, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, templates.Label{Key: k, Value: m[k]})
	}
	return out
}

// stateRank orders row states, worst first.
var stateRank = map[string]int{
	templates.RowUnreachable: 0,
	templates.RowFailed:      1,
	templates.RowWaiting:     2,
	templates.RowUp:          3,
}

// sortKey is a row's value in a numeric order; known is false for a value
// not known, or only known from before its agent became unreachable.
func sortKey(r templates.HostRow, by string) (v float64, known bool) {
	if r.State == templates.RowUnreachable {
		return 0, false
	}
	var x templates.Value
	switch by {
	case "cpu":
		x = r.CPU
	case "mem":
		x = r.Mem
	case "disk":
		x = r.Disk
	case "net":
		x = r.Net
	case "load":
		x = r.Load
	case "uptime":
		x = r.Uptime
	case "worst":
		// The highest pressure, in bands of 10 points, so that rows do
		// not trade places on every small change.
		p := -1.0
		for _, x := range []templates.Value{r.CPU, r.Mem, r.Disk} {
			if x.Known {
				p = max(p, x.V)
			}
		}
		if p < 0 {
			return 0, false
		}
		return math.Floor(p / 10), true
	}
	return x.V, x.Known
}

// sortRows orders rows as the page script does (static/app.js
// compareRows): worst first by default, unreachable, then failing, then
// waiting, then by the highest of CPU, memory and disk; by name A to Z;
// by any other column the highest first, those without a value last.
// Ties go by name.
func sortRows(rows []templates.HostRow, by string) {
	slices.SortStableFunc(rows, func(a, b templates.HostRow) int {
		if by == "worst" {
			if c := cmp.Compare(stateRank[a.State], stateRank[b.State]); c != 0 {
				return c
			}
		}
		if by != "name" {
			va, ka := sortKey(a, by)
			vb, kb := sortKey(b, by)
			switch {
			case ka && !kb:
				return -1
			case kb && !ka:
				return 1
			case ka && kb && va != vb:
				return cmp.Compare(vb, va)
			}
		}
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Source, b.Source))
	})
}

// groupRows splits sorted rows by a label's value, the groups by value
// and those without the label last; no key makes one group.
func groupRows(rows []templates.HostRow, key string) []templates.RowGroup {
	byValue := map[string]*templates.RowGroup{}
	var groups []*templates.RowGroup
	for _, r := range rows {
		v := ""
		for _, l := range r.Labels {
			if l.Key == key {
				v = l.Value
			}
		}
		g := byValue[v]
		if g == nil {
			g = &templates.RowGroup{Value: v}
			byValue[v] = g
			groups = append(groups, g)
		}
		g.Rows = append(g.Rows, r)
		if !r.Hidden {
			g.Shown++
		}
	}
	slices.SortFunc(groups, func(a, b *templates.RowGroup) int {
		if (a.Value == "") != (b.Value == "") {
			if a.Value == "" {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Value, b.Value)
	})
	out := make([]templates.RowGroup, len(groups))
	for i, g := range groups {
		out[i] = *g
	}
	return out
}

// hostShares splits a merged service's newest sample by its {host=…}
// labels: each agent's rate, errors, p99, instances up, and whether it is
// up; hosts that are down first, then by name.
func (s *Server) hostShares(source string) []templates.HostShare {
	smp, _ := s.opts.Store.Latest(source)
	if !smp.Metrics.Has("hosts.total") {
		return nil
	}
	byHost := byLabel(smp.Metrics, "host")
	links := map[string]string{}
	if s.opts.Fleet != nil {
		for _, u := range s.opts.Fleet.Status() {
			var hosts []string
			for _, h := range u.Hosts {
				if strings.HasPrefix(h, "host/") {
					hosts = append(hosts, h)
				}
			}
			if len(hosts) == 1 {
				links[u.Name] = "/source/" + hosts[0]
			} else {
				links[u.Name] = "/source/upstream/" + u.Name
			}
		}
	}
	out := make([]templates.HostShare, 0, len(byHost))
	for name, m := range byHost {
		out = append(out, templates.HostShare{Host: name, Metrics: m, Up: m["up"] == 1, Link: links[name]})
	}
	slices.SortFunc(out, func(a, b templates.HostShare) int {
		if a.Up != b.Up {
			if a.Up {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Host, b.Host)
	})
	return out
}
