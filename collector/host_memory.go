package collector

import (
	"context"

	"github.com/shirou/gopsutil/v3/mem"
)

// collectMemory reads memory and swap. They are two reads that fail apart:
// a failed swap reading still leaves the memory figures.
func (h *Host) collectMemory(ctx context.Context, m map[string]float64, fail func(string, error)) {
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		fail("memory", err)
	} else {
		m["mem.total_bytes"] = float64(vm.Total)
		m["mem.used_bytes"] = float64(vm.Used)
		m["mem.available_bytes"] = float64(vm.Available)
		m["mem.used_percent"] = vm.UsedPercent
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err != nil {
		fail("swap", err)
	} else {
		m["swap.total_bytes"] = float64(sw.Total)
		m["swap.used_bytes"] = float64(sw.Used)
		m["swap.used_percent"] = sw.UsedPercent // 0 without swap
	}
}
