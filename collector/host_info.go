package collector

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/process"
)

// procRefresh is how often the processes are counted again: listing them
// costs milliseconds, more than the rest of a sample.
const procRefresh = 5 * time.Second

func (h *Host) collectInfo(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if up, err := host.UptimeWithContext(ctx); err != nil {
		fail("uptime", err)
	} else {
		m["host.uptime_seconds"] = float64(up)
	}
	if h.procsAt.IsZero() || now.Sub(h.procsAt) >= procRefresh {
		if pids, err := process.PidsWithContext(ctx); err != nil {
			fail("processes", err)
		} else {
			h.procs, h.procsAt = len(pids), now
		}
	}
	if !h.procsAt.IsZero() {
		m["host.procs"] = float64(h.procs)
	}
}
