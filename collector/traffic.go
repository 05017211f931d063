package collector

import (
	"fmt"
	"math"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// Traffic is what one collect of a service saw, as counts rather than
// rates and percentiles: requests, errors, and the latency histogram's
// buckets, over Seconds. A service sample carries it beside its metrics so
// that a hub can merge the same service on many hosts exactly — counts
// added and buckets merged, never percentiles averaged.
type Traffic struct {
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	Seconds  float64 `json:"seconds"` // how long the counts cover
	// Latency is the histogram's non-empty buckets in seconds, keyed as
	// VictoriaMetrics' vmrange: "lo...hi" (hi may be +Inf).
	Latency map[string]float64 `json:"latency,omitempty"`
}

// A TrafficSource is a Source whose samples carry their Traffic. The
// scheduler asks right after a collect that returned in time.
type TrafficSource interface {
	Traffic() (Traffic, bool)
}

// Buckets writes a histogram as Traffic.Latency.
func (h Histogram) Buckets() map[string]float64 {
	out := make(map[string]float64, len(h))
	for hi, b := range h {
		if b.Count > 0 {
			out[formatBound(b.Lo)+"..."+formatBound(hi)] = b.Count
		}
	}
	return out
}

// HistogramOf reads Traffic.Latency back; it refuses a bucket that is not
// "lo...hi" with lo ≤ hi and a count that is not a finite number ≥ 0.
func HistogramOf(buckets map[string]float64) (Histogram, error) {
	h := make(Histogram, len(buckets))
	for k, n := range buckets {
		lo, hi, ok := parseVMRange(k)
		if !ok || math.IsNaN(lo) || math.IsInf(lo, 0) || math.IsNaN(hi) || math.IsInf(hi, -1) {
			return nil, fmt.Errorf("bad latency bucket %q", k)
		}
		if !(n >= 0) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("bad count %v in latency bucket %q", n, k)
		}
		h.Add(Histogram{hi: {Lo: lo, Count: n}})
	}
	return h, nil
}

func formatBound(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// observed is a histogram of values observed one by one (probe times), in
// VictoriaMetrics' logarithmic buckets: 18 a decade, so any quantile read
// from it is within about 7% of the value.
func observed(values []float64) Histogram {
	var vh metrics.Histogram
	for _, v := range values {
		if !math.IsNaN(v) {
			vh.Update(v)
		}
	}
	h := Histogram{}
	vh.VisitNonZeroBuckets(func(vmrange string, count uint64) {
		if lo, hi, ok := parseVMRange(vmrange); ok {
			h.Add(Histogram{hi: {Lo: lo, Count: float64(count)}})
		}
	})
	return h
}
