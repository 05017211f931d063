package collector

import (
	"context"

	"github.com/shirou/gopsutil/v3/load"
)

// collectLoad runs after collectCPU, whose readings give the core count.
func (h *Host) collectLoad(ctx context.Context, m map[string]float64, fail func(string, error)) {
	if avg, err := load.AvgWithContext(ctx); err != nil {
		fail("load", err)
	} else {
		loadMetrics(m, avg, len(h.prevCPU))
	}
}

// loadMetrics also divides the 5-minute load by the cores, because what
// "too loaded" means depends on them; without a core count (the CPU
// reading failed from the start) that value is left out rather than wrong.
func loadMetrics(m map[string]float64, avg *load.AvgStat, cores int) {
	m["load.1"], m["load.5"], m["load.15"] = avg.Load1, avg.Load5, avg.Load15
	if cores > 0 {
		m["load.5_per_core"] = avg.Load5 / float64(cores)
	}
}
