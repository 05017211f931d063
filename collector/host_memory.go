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
		memoryMetrics(m, vm)
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err != nil {
		fail("swap", err)
	} else {
		swapMetrics(m, sw)
	}
}

// memoryMetrics reports available memory beside used memory because
// available, not free, is what programs can still get: the kernel gives
// back most of its caches on demand.
func memoryMetrics(m map[string]float64, vm *mem.VirtualMemoryStat) {
	m["mem.total_bytes"] = float64(vm.Total)
	m["mem.used_bytes"] = float64(vm.Used)
	m["mem.available_bytes"] = float64(vm.Available)
	m["mem.used_percent"] = vm.UsedPercent
}

func swapMetrics(m map[string]float64, sw *mem.SwapMemoryStat) {
	m["swap.total_bytes"] = float64(sw.Total)
	m["swap.used_bytes"] = float64(sw.Used)
	m["swap.used_percent"] = sw.UsedPercent // 0 without swap
}
