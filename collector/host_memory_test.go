package collector

import (
	"maps"
	"testing"

	"github.com/shirou/gopsutil/v3/mem"
)

// TestMemoryMetrics pins the names and units the README lists.
func TestMemoryMetrics(t *testing.T) {
	m := make(map[string]float64)
	memoryMetrics(m, &mem.VirtualMemoryStat{Total: 8 << 30, Used: 2 << 30, Free: 1 << 30, Available: 5 << 30, UsedPercent: 25})
	swapMetrics(m, &mem.SwapMemoryStat{}) // no swap
	want := map[string]float64{
		"mem.total_bytes": 8 << 30, "mem.used_bytes": 2 << 30, "mem.available_bytes": 5 << 30, "mem.used_percent": 25,
		"swap.total_bytes": 0, "swap.used_bytes": 0, "swap.used_percent": 0,
	}
	if !maps.Equal(m, want) {
		t.Fatalf("memory metrics = %v, want %v", m, want)
	}
}
