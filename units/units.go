// Package units shows metric values the way people read them — 12.5%,
// 1.2 GiB, 3.4 MiB/s, 12 ms, 3d 4h — choosing by the unit in the metric's
// name. The page (templates, and static/app.js with the same rules) and
// vigil tail both show numbers through it; it knows no HTML.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kinds of value, by metric name suffix. static/app.js formats live values
// with the same rules (the page carries the kind in data-fmt); a browser
// test checks the two agree.
const (
	Percent  = "percent"  // 12.5%
	Bytes    = "bytes"    // 1.2 GiB
	ByteRate = "byterate" // 3.4 MiB/s
	Rate     = "rate"     // 1.2k/s
	Latency  = "latency"  // 12 ms
	// LatencyBound is a latency known only as a histogram bucket's top:
	// the slowest request took at most this long ("≤ 2.5 s").
	LatencyBound = "latency-bound"
	Duration     = "duration" // 3d 4h
	Number       = "number"   // 0.42
)

// metricName strips a label part: "fs.used_bytes{mount=/}" -> "fs.used_bytes".
func metricName(metric string) string {
	if i := strings.IndexByte(metric, '{'); i >= 0 {
		return metric[:i]
	}
	return metric
}

// Of is the kind of a metric's values, from its name.
func Of(metric string) string {
	m := metricName(metric)
	switch {
	case strings.HasSuffix(m, "_percent"), strings.HasSuffix(m, ".percent"):
		return Percent
	case strings.HasSuffix(m, "_bytes_per_sec"):
		return ByteRate
	case strings.HasSuffix(m, "_bytes"):
		return Bytes
	case strings.HasSuffix(m, "_per_sec"):
		return Rate
	case (strings.HasPrefix(m, "http.latency") || strings.HasPrefix(m, "probe.")) && strings.HasSuffix(m, "_seconds"):
		return Latency
	case strings.HasSuffix(m, "_seconds"):
		return Duration
	}
	return Number
}

// Format shows a metric's value.
func Format(metric string, v float64) string { return FormatAs(Of(metric), v) }

// FormatAs shows a value of a given kind.
func FormatAs(kind string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch kind {
	case Percent:
		return fixed(v, 1) + "%"
	case Bytes:
		return binary(v)
	case ByteRate:
		return binary(v) + "/s"
	case Rate:
		return si(v) + "/s"
	case LatencyBound:
		return "≤ " + FormatAs(Latency, v)
	case Latency:
		ms := v * 1000
		if ms < 1 {
			return fixed(ms, 2) + " ms"
		}
		if ms < 1000 {
			return fixed(ms, 0) + " ms"
		}
		return fixed(v, 2) + " s"
	case Duration:
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
	if i == 0 { // three significant digits, as above a thousand
		switch a := math.Abs(v); {
		case a >= 100:
			return fixed(v, 0)
		case a >= 10:
			return fixed(v, 1)
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
