package templates

import "math"

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
	{20, Health{"h-bad", "!!", "erroring"}}, // not "failing": a source whose collect fails is
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
