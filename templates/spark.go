package templates

import (
	"strconv"
	"strings"
)

// Sparkline geometry, in SVG user units (the SVG scales to its box).
const (
	SparkW = 120.0
	SparkH = 30.0
)

// SparkPath draws values (oldest first) as an SVG path in a w×h box, the
// newest at the right edge and capacity points across. top is the top of
// the scale; 0 scales to the largest value. static/app.js draws the same
// path when values arrive.
func SparkPath(values []float64, capacity int, top, w, h float64) string {
	if len(values) == 0 {
		return ""
	}
	if capacity < 2 {
		capacity = 2
	}
	if len(values) > capacity {
		values = values[len(values)-capacity:]
	}
	if top <= 0 {
		for _, v := range values {
			top = max(top, v)
		}
		if top <= 0 {
			top = 1
		}
	}
	step := w / float64(capacity-1)
	x0 := w - step*float64(len(values)-1)
	var b strings.Builder
	b.Grow(len(values) * 12)
	for i, v := range values {
		y := h - h*min(max(v, 0), top)/top
		if i == 0 {
			b.WriteByte('M')
		} else {
			b.WriteByte('L')
		}
		b.WriteString(strconv.FormatFloat(x0+step*float64(i), 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	return b.String()
}

// SparkValues encodes values for the page script: space-separated, with
// no more digits than a chart can show.
func SparkValues(values []float64) string {
	var b strings.Builder
	b.Grow(len(values) * 6)
	for i, v := range values {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(v, 'g', 4, 64))
	}
	return b.String()
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func itoa(v int) string { return strconv.Itoa(v) }

func utoa(v uint64) string { return strconv.FormatUint(v, 10) }
