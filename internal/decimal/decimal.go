// Package decimal finds the decimal a float64 was written as: most of
// what vigil keeps was decimal text first (the scheduler rounds what it
// collects to six significant digits, hosts to three decimals, agents
// send JSON), and an integer and a power of ten keep it in fewer bytes
// than its binary form. The idea is ALP's (Afroozeh et al., "ALP:
// Adaptive Lossless floating-Point Compression", SIGMOD 2024).
package decimal

import (
	"math"
	"strconv"
)

// A decimal is m / 10^scale, scale from MinScale to MaxScale, |m| under
// MaxExact.
const (
	MinScale = -8 // 100000000 is 1 / 10^-8
	MaxScale = 9
	MaxExact = 1 << 53 // integers above it are not all float64s
)

// pow10 holds 10^0 … 10^(max(-MinScale, MaxScale)), exactly.
var pow10 = func() [max(-MinScale, MaxScale) + 1]float64 {
	var p [max(-MinScale, MaxScale) + 1]float64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// At returns m with v == m / 10^scale exactly, if there is one
// (|m| < 2^53). m / 10^k, both exact, divides to the float64 nearest the
// decimal, which is what parsing the decimal gives: v is that decimal.
func At(v float64, scale int8) (int64, bool) {
	var f float64
	if scale >= 0 {
		f = math.Round(v * pow10[scale])
	} else {
		f = math.Round(v / pow10[-scale])
	}
	if math.IsNaN(f) || math.Abs(f) >= MaxExact || math.Float64bits(Value(int64(f), scale)) != math.Float64bits(v) { // bits: -0 is not 0
		return 0, false
	}
	return int64(f), true
}

// Value is m / 10^scale.
func Value(m int64, scale int8) float64 {
	if scale >= 0 {
		return float64(m) / pow10[scale]
	}
	return float64(m) * pow10[-scale]
}

// Of returns the fewest-digits form of v: the smallest scale at
// which it is a decimal.
func Of(v float64) (m int64, scale int8, ok bool) {
	for k := int8(0); k <= MaxScale; k++ {
		if m, ok := At(v, k); ok {
			for k > MinScale && m != 0 && m%10 == 0 { // trailing zeros: 45678900 is 456789 at -2
				m, k = m/10, k-1
			}
			return m, k, true
		}
	}
	return 0, 0, false
}

// Significant rounds v to digits significant digits: what vigil shows and
// sends of a measured or computed value, more being noise.
func Significant(v float64, digits int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', digits, 64), 64)
	return r
}
