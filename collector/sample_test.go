package collector

import (
	"math"
	"testing"
	"time"
)

func TestCounterRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type reading struct {
		v      uint64
		at     time.Duration
		want   float64
		wantOK bool
	}
	tests := []struct {
		name     string
		readings []reading
	}{
		{"first reading has no rate", []reading{{100, 0, 0, false}}},
		{"steady increase", []reading{{100, 0, 0, false}, {300, 2 * time.Second, 100, true}, {400, 3 * time.Second, 100, true}}},
		{"no change", []reading{{100, 0, 0, false}, {100, time.Second, 0, true}}},
		{"reset to zero counts from zero", []reading{{1000, 0, 0, false}, {50, time.Second, 50, true}, {150, 2 * time.Second, 100, true}}},
		{"32-bit wrap is a reset, never negative", []reading{{math.MaxUint32 - 10, 0, 0, false}, {5, time.Second, 5, true}}},
		{"time did not advance", []reading{{100, time.Second, 0, false}, {200, time.Second, 0, false}, {300, 2 * time.Second, 100, true}}},
		{"clock stepped back", []reading{{100, 2 * time.Second, 0, false}, {200, time.Second, 0, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Counter
			for i, r := range tt.readings {
				got, ok := c.Rate(r.v, t0.Add(r.at))
				if ok != r.wantOK || math.Abs(got-r.want) > 1e-9 {
					t.Fatalf("reading %d: Rate(%d) = %v, %v; want %v, %v", i, r.v, got, ok, r.want, r.wantOK)
				}
				if got < 0 {
					t.Fatalf("negative rate %v", got)
				}
			}
		})
	}
}

func TestFiniteDropsNaNAndInf(t *testing.T) {
	m := map[string]float64{"a": 1, "b": math.NaN(), "c": math.Inf(1), "d": math.Inf(-1)}
	finite(m)
	if len(m) != 1 || m["a"] != 1 {
		t.Fatalf("finite left %v", m)
	}
}
