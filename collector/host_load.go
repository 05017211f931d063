package collector

import (
	"context"

	"github.com/shirou/gopsutil/v3/load"
)

func (h *Host) collectLoad(ctx context.Context, m map[string]float64, fail func(string, error)) {
	if avg, err := load.AvgWithContext(ctx); err != nil {
		fail("load", err)
	} else {
		m["load.1"], m["load.5"], m["load.15"] = avg.Load1, avg.Load5, avg.Load15
		if n := len(h.prevCPU); n > 0 {
			m["load.5_per_core"] = avg.Load5 / float64(n) // what "too loaded" means depends on the cores
		}
	}
}
