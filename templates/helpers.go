package templates

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"vigil/units"
)

func stateOr(s string) string {
	if s == "" {
		return "waiting"
	}
	return s
}

// lastValue is a chart's caption: the newest sample's value, or the
// chart's last when the newest sample lacks the metric.
func lastValue(c Chart) string {
	switch {
	case c.Last.Known:
		return units.Format(c.Metric, c.Last.V)
	case len(c.Values) == 0:
		return "–"
	}
	return units.Format(c.Metric, c.Values[len(c.Values)-1])
}

// hiddenBy reports whether a filter hides a source; the page script applies
// the same rule as the user types.
func hiddenBy(filter, source string) bool {
	return filter != "" && !strings.Contains(strings.ToLower(source), strings.ToLower(filter))
}

func bandRange(i int) string {
	lo := 0.0
	if i > 0 {
		lo = HealthBands[i-1].Below
	}
	if i == len(HealthBands)-1 {
		return "(≥ " + ftoa(lo) + "% errors)"
	}
	return "(" + ftoa(lo) + "–" + ftoa(HealthBands[i].Below) + "%)"
}

func cell(m map[string]float64, metric string) string {
	v, ok := m[metric]
	if !ok {
		return "–"
	}
	return units.Format(metric, v)
}

func probeCell(m map[string]float64) string {
	code, ok := m["probe.status_code"]
	if !ok {
		if _, probed := m["probe.up"]; probed {
			return "no answer"
		}
		return "–"
	}
	return strconv.Itoa(int(code)) + " in " + units.FormatAs(units.Latency, m["probe.total_seconds"])
}

func certCell(m map[string]float64) string {
	d, ok := m["probe.cert_expiry_days"]
	if !ok {
		return "–"
	}
	return "expires in " + strconv.FormatFloat(math.Round(d), 'f', 0, 64) + " days"
}

// maxKind is how a service's max latency is shown: as a bound when it is
// a histogram bucket's top.
func maxKind(s ServiceStats) string {
	if s.MaxBound {
		return units.LatencyBound
	}
	return units.Latency
}

// queryEscape escapes a value for a URL's query.
func queryEscape(s string) string { return url.QueryEscape(s) }

// day writes a time to the minute, with its year when it is not this
// year's.
func day(t time.Time) string {
	t = t.Local()
	if t.Year() != time.Now().Year() {
		return t.Format("Jan 2 2006 15:04")
	}
	return t.Format("Jan 2 15:04")
}
