package templates

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"vigil/internal/decimal"
	"vigil/units"
)

// A chart's SVG, in user units (it scales to its box): the plot area is
// inset by room for the value labels on the left and the times below.
const (
	PlotW      = 1000.0 // about its width on a laptop's screen: text at its size
	PlotH      = 220.0
	plotLeft   = 64.0
	plotRight  = 8.0
	plotTop    = 8.0
	plotBottom = 20.0
	// PlotPoints bounds the points drawn per series in the SVG: about one
	// per two units across. The page script draws every point.
	PlotPoints = 300
)

// Tick is one labelled place on an axis.
type Tick struct {
	At    float64 // x or y in the SVG
	Label string
}

// MarkAt is an alert transition on a chart: its x, its kind (the colour)
// and what it says.
type MarkAt struct {
	At    float64
	Kind  string
	Label string
}

// PlotGeom is a chart's SVG drawn over a range.
type PlotGeom struct {
	Paths  []string // one per series, in order
	XTicks []Tick
	YTicks []Tick
	Marks  []MarkAt
	X0, X1 float64
	Y0, Y1 float64 // the plot area's top and bottom
}

// Geometry lays a chart out over r for the SVG fallback; times are shown
// in loc.
func Geometry(p Plot, r Range, loc *time.Location) PlotGeom {
	g := PlotGeom{X0: plotLeft, X1: PlotW - plotRight, Y0: plotTop, Y1: PlotH - plotBottom}
	span := r.To.Sub(r.From)
	if span <= 0 {
		return g
	}
	x := func(t time.Time) float64 { return g.X0 + (g.X1-g.X0)*float64(t.Sub(r.From))/float64(span) }
	top := niceTop(p, maxOf(p))
	y := func(v float64) float64 { return g.Y1 - (g.Y1-g.Y0)*min(max(v, 0), top)/top }
	for _, s := range p.Series {
		g.Paths = append(g.Paths, pathOf(thin(s.Points, r, PlotPoints), x, y))
	}
	for _, t := range timeTicks(r.From, r.To, loc) {
		g.XTicks = append(g.XTicks, Tick{At: x(t.t), Label: t.label})
	}
	for i := 0; i <= 2; i++ {
		v := top * float64(i) / 2
		g.YTicks = append(g.YTicks, Tick{At: y(v), Label: tickLabel(p.Unit, v)})
	}
	for _, m := range p.Marks {
		if !m.At.Before(r.From) && !m.At.After(r.To) {
			g.Marks = append(g.Marks, MarkAt{At: x(m.At), Kind: m.Kind, Label: m.Rule + " " + m.Kind + " at " + m.At.In(loc).Format("Jan 2 15:04:05 MST")})
		}
	}
	return g
}

// tickLabel shows a value axis' tick in its unit; a percentage, a plain
// number or milliseconds with the digits they have (2.5, 0.05%, 2.5 ms),
// where units' formats round (static/charts.js valueTick does the same).
func tickLabel(unit string, v float64) string {
	if unit == units.Latency && v > 0 && v < 1 { // 2.5 ms, not 3
		return strconv.FormatFloat(decimal.Significant(v*1000, 3), 'f', -1, 64) + " ms"
	}
	if unit != units.Percent && unit != units.Number {
		return units.FormatAs(unit, v)
	}
	s := strconv.FormatFloat(decimal.Significant(v, 6), 'f', -1, 64)
	if unit == units.Percent {
		s += "%"
	}
	return s
}

func maxOf(p Plot) float64 {
	top := 0.0
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if !math.IsNaN(pt.V) {
				top = max(top, pt.V)
			}
		}
	}
	return top
}

// niceTop is the top of a chart's value axis: its fixed Max, or hi
// rounded up to a round number of its unit — 1, 2 or 5 times a power of
// ten; for bytes a power of two (so 32 MiB/s, not 47.7); for durations a
// whole minute, hour or day.
func niceTop(p Plot, hi float64) float64 {
	if p.Max > 0 {
		return p.Max
	}
	switch p.Unit {
	case units.Bytes, units.ByteRate:
		return math.Pow(2, math.Ceil(math.Log2(max(hi, 1024))))
	case units.Duration:
		for _, d := range durationTops {
			if hi <= d {
				return d
			}
		}
	}
	if hi <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(hi)))
	for _, f := range []float64{1, 2, 5, 10} {
		if hi <= f*mag*(1+1e-9) {
			return f * mag
		}
	}
	return 10 * mag
}

// durationTops are the tops a duration axis takes, in seconds: halves of
// them read as whole units too.
var durationTops = []float64{60, 120, 600, 1200, 3600, 7200, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400,
	30 * 86400, 60 * 86400, 180 * 86400, 360 * 86400}

// thin keeps at most n points of pts over r: the mean of each of n equal
// parts of the range that has points.
func thin(pts []Point, r Range, n int) []Point {
	if len(pts) <= n {
		return pts
	}
	span := float64(r.To.Sub(r.From))
	out := make([]Point, 0, n)
	var sum float64
	var count int
	bucket := -1
	flush := func() {
		if count > 0 {
			at := r.From.Add(time.Duration((float64(bucket) + 0.5) * span / float64(n)))
			out = append(out, Point{T: at, V: sum / float64(count)})
		}
		sum, count = 0, 0
	}
	for _, p := range pts {
		b := min(n-1, max(0, int(float64(p.T.Sub(r.From))/span*float64(n))))
		if b != bucket {
			flush()
			bucket = b
		}
		sum += p.V
		count++
	}
	flush()
	return out
}

// pathOf draws pts as an SVG path; a gap longer than three times the usual
// spacing (a stop, a lost agent) breaks the line.
func pathOf(pts []Point, x func(time.Time) float64, y func(float64) float64) string {
	var b strings.Builder
	b.Grow(len(pts) * 12)
	gap := time.Duration(0)
	if len(pts) > 1 {
		gap = 3 * pts[len(pts)-1].T.Sub(pts[0].T) / time.Duration(len(pts)-1)
	}
	for i, p := range pts {
		if math.IsNaN(p.V) {
			continue
		}
		if i == 0 || p.T.Sub(pts[i-1].T) > gap {
			b.WriteByte('M')
		} else {
			b.WriteByte('L')
		}
		b.WriteString(strconv.FormatFloat(x(p.T), 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y(p.V), 'f', 1, 64))
	}
	return b.String()
}

type timeTick struct {
	t     time.Time
	label string
}

// tickSteps are the spacings a time axis may take.
var tickSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour,
}

// timeTicks places four to eight labelled times on whole minutes, hours or
// days of loc between from and to.
func timeTicks(from, to time.Time, loc *time.Location) []timeTick {
	span := to.Sub(from)
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s <= 6 {
			step = s
			break
		}
	}
	layout := "15:04"
	if span > 36*time.Hour {
		layout = "Jan 2"
	} else if span > 12*time.Hour {
		layout = "Mon 15:04"
	}
	start := from.In(loc)
	if step >= 24*time.Hour {
		start = time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, loc)
	} else {
		start = start.Truncate(step) // whole steps since the epoch: whole minutes and hours in any zone with whole-hour offsets
	}
	var out []timeTick
	for t := start; !t.After(to); t = t.Add(step) {
		if !t.Before(from) {
			out = append(out, timeTick{t: t, label: t.In(loc).Format(layout)})
		}
	}
	return out
}

// plotColors is how many series colours app.css and static/charts.js have
// (classes c0 to c7); more series take them again.
const plotColors = 8

func unixMS(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// seriesJSON lists a chart's series for the page script: metric and label.
func seriesJSON(ss []PlotSeries) string {
	type item struct {
		Metric string `json:"metric"`
		Label  string `json:"label"`
	}
	list := make([]item, len(ss))
	for i, s := range ss {
		list[i] = item{s.Metric, s.Label}
	}
	b, _ := json.Marshal(list)
	return string(b)
}
