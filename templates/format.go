package templates

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Formats, by metric name suffix. static/app.js formats live values with
// the same rules; keep the two in step (TestFormatMatchesScript checks).
const (
	FmtPercent  = "percent"  // 12.5%
	FmtBytes    = "bytes"    // 1.2 GiB
	FmtByteRate = "byterate" // 3.4 MiB/s
	FmtRate     = "rate"     // 1.2k/s
	FmtLatency  = "latency"  // 12 ms
	FmtDuration = "duration" // 3d 4h
	FmtNumber   = "number"   // 0.42
)

// metricName strips a label part: "fs.used_bytes{mount=/}" -> "fs.used_bytes".
func metricName(metric string) string {
	if i := strings.IndexByte(metric, '{'); i >= 0 {
		return metric[:i]
	}
	return metric
}

// FormatOf is how a metric's values are shown.
func FormatOf(metric string) string {
	m := metricName(metric)
	switch {
	case strings.HasSuffix(m, "_percent"), strings.HasSuffix(m, ".percent"):
		return FmtPercent
	case strings.HasSuffix(m, "_bytes_per_sec"):
		return FmtByteRate
	case strings.HasSuffix(m, "_bytes"):
		return FmtBytes
	case strings.HasSuffix(m, "_per_sec"):
		return FmtRate
	case strings.HasPrefix(m, "http.latency") && strings.HasSuffix(m, "_seconds"):
		return FmtLatency
	case strings.HasSuffix(m, "_seconds"):
		return FmtDuration
	}
	return FmtNumber
}

// Format shows a value the way the page does.
func Format(metric string, v float64) string { return FormatAs(FormatOf(metric), v) }

// FormatAs shows a value in a given format.
func FormatAs(format string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch format {
	case FmtPercent:
		return fixed(v, 1) + "%"
	case FmtBytes:
		return binary(v)
	case FmtByteRate:
		return binary(v) + "/s"
	case FmtRate:
		return si(v) + "/s"
	case FmtLatency:
		ms := v * 1000
		if ms < 1 {
			return fixed(ms, 2) + " ms"
		}
		if ms < 1000 {
			return fixed(ms, 0) + " ms"
		}
		return fixed(v, 2) + " s"
	case FmtDuration:
		return duration(v)
	}
	return si(v)
}

// fixed is v with d decimals, without a trailing ".0". Halves round away
// from zero, as JavaScript's toFixed does.
func fixed(v float64, d int) string {
	scale := math.Pow(10, float64(d))
	s := strconv.FormatFloat(math.Round(v*scale)/scale, 'f', d, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func binary(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fixed(v, 0) + " B"
	}
	return fixed(v, 1) + " " + units[i]
}

func si(v float64) string {
	units := []string{"", "k", "M", "G", "T"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if i == 0 {
		if math.Abs(v) >= 100 {
			return fixed(v, 0)
		}
		return fixed(v, 2)
	}
	return fixed(v, 1) + units[i]
}

func duration(sec float64) string {
	s := math.Trunc(sec)
	days := math.Trunc(s / 86400)
	h := math.Mod(math.Trunc(s/3600), 24)
	m := math.Mod(math.Trunc(s/60), 60)
	switch {
	case days > 0:
		return fmt.Sprintf("%.0fd %.0fh", days, h)
	case h > 0:
		return fmt.Sprintf("%.0fh %.0fm", h, m)
	case m > 0:
		return fmt.Sprintf("%.0fm %.0fs", m, math.Mod(s, 60))
	}
	return fixed(sec, 0) + "s"
}

// Health is a service's health band by error percentage, with a colour
// (class), a symbol and a word, so that colour is never the only cue.
type Health struct {
	Class, Symbol, Word string
}

// Health bands, also drawn as the legend.
var HealthBands = []struct {
	Below float64 // error percent upper bound (exclusive)
	Health
}{
	{1, Health{"h-ok", "✓", "healthy"}},
	{5, Health{"h-warn", "!", "degraded"}},
	{20, Health{"h-bad", "!!", "failing"}},
	{math.Inf(1), Health{"h-crit", "✕", "critical"}},
}

// HealthOf picks the band for an error percentage.
func HealthOf(errPercent float64) Health {
	for _, b := range HealthBands {
		if errPercent < b.Below {
			return b.Health
		}
	}
	return HealthBands[len(HealthBands)-1].Health
}

// Circle radii of a service tile: the area grows with the request rate, on
// a log scale so that 1 req/s and 10,000 req/s both read.
const (
	CircleMin = 6.0
	CircleMax = 30.0
)

// CircleRadius maps a request rate to the tile circle's radius.
func CircleRadius(rate float64) float64 {
	if rate <= 0 || math.IsNaN(rate) {
		return CircleMin
	}
	f := math.Min(1, math.Log10(1+rate)/4) // 10k req/s fills the circle
	return math.Round((CircleMin+(CircleMax-CircleMin)*math.Sqrt(f))*10) / 10
}
