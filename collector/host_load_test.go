package collector

import (
	"maps"
	"testing"

	"github.com/shirou/gopsutil/v3/load"
)

func TestLoadMetrics(t *testing.T) {
	avg := &load.AvgStat{Load1: 3, Load5: 2, Load15: 1}
	tests := []struct {
		name  string
		cores int
		want  map[string]float64
	}{
		{"per core", 4, map[string]float64{"load.1": 3, "load.5": 2, "load.15": 1, "load.5_per_core": 0.5}},
		{"no core count yet", 0, map[string]float64{"load.1": 3, "load.5": 2, "load.15": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := make(map[string]float64)
			loadMetrics(m, avg, tt.cores)
			if !maps.Equal(m, tt.want) {
				t.Fatalf("loadMetrics = %v, want %v", m, tt.want)
			}
		})
	}
}
