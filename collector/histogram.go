package collector

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// A Histogram is a distribution as non-cumulative bucket counts, keyed by
// each bucket's upper bound. It holds Prometheus "le" buckets and
// VictoriaMetrics "vmrange" buckets alike, so histograms of both kinds, and
// of several instances, merge by adding buckets — never by averaging
// percentiles.
type Histogram map[float64]Bucket

// A Bucket counts observations in (Lo, upper bound].
type Bucket struct {
	Lo    float64
	Count float64
}

// Add merges o into h.
func (h Histogram) Add(o Histogram) {
	for hi, b := range o {
		cur, ok := h[hi]
		if !ok {
			h[hi] = b
			continue
		}
		cur.Count += b.Count
		cur.Lo = min(cur.Lo, b.Lo)
		h[hi] = cur
	}
}

// Total is the number of observations.
func (h Histogram) Total() float64 {
	t := 0.0
	for _, b := range h {
		t += b.Count
	}
	return t
}

func (h Histogram) bounds() []float64 {
	his := make([]float64, 0, len(h))
	for hi := range h {
		his = append(his, hi)
	}
	slices.Sort(his)
	return his
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) the way Prometheus'
// histogram_quantile does: find the bucket holding the rank and
// interpolate linearly inside it; a rank in the +Inf bucket gives the
// highest finite bound. NaN when the histogram is empty.
func (h Histogram) Quantile(q float64) float64 {
	total := h.Total()
	if total <= 0 || math.IsNaN(q) {
		return math.NaN()
	}
	q = max(0, min(1, q))
	rank := q * total
	his := h.bounds()
	cum := 0.0
	lastFinite := 0.0
	for _, hi := range his {
		b := h[hi]
		if math.IsInf(hi, 1) {
			return lastFinite
		}
		if b.Count > 0 && cum+b.Count >= rank {
			lo := b.Lo
			if lo > hi || math.IsInf(lo, 0) {
				lo = hi
			}
			return lo + (hi-lo)*(rank-cum)/b.Count
		}
		cum += b.Count
		lastFinite = hi
	}
	return lastFinite
}

// Max is the upper bound of the highest non-empty finite bucket: the
// largest value the histogram can vouch for.
func (h Histogram) Max() float64 {
	m := math.NaN()
	for hi, b := range h {
		if b.Count > 0 && !math.IsInf(hi, 1) && (math.IsNaN(m) || hi > m) {
			m = hi
		}
	}
	if math.IsNaN(m) && h.Total() > 0 {
		return h.Quantile(1)
	}
	return m
}

// parseVMRange reads VictoriaMetrics' "1.000e-03...1.136e-03".
func parseVMRange(s string) (lo, hi float64, ok bool) {
	a, b, found := strings.Cut(s, "...")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseFloat(a, 64)
	hi, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil || !(lo <= hi) { // also false for NaN
		return 0, 0, false
	}
	return lo, hi, true
}

// histogramFromLE turns cumulative Prometheus bucket counts (by le) into
// a Histogram; each bucket's lower bound is the previous le.
func histogramFromLE(cumulative map[float64]float64) Histogram {
	les := make([]float64, 0, len(cumulative))
	for le := range cumulative {
		les = append(les, le)
	}
	slices.Sort(les)
	h := Histogram{}
	prevLE, prevCum := 0.0, 0.0
	for i, le := range les {
		c := cumulative[le]
		n := c - prevCum
		if n < 0 { // buckets out of step (a scrape mid-update): clamp
			n = 0
		}
		lo := prevLE
		if i == 0 && le <= 0 {
			lo = le
		}
		h[le] = Bucket{Lo: lo, Count: n}
		prevLE, prevCum = le, max(prevCum, c)
	}
	return h
}
