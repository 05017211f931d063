package collector

import (
	"testing"

	"github.com/shirou/gopsutil/v3/cpu"
)

func TestCPUPercent(t *testing.T) {
	prev := cpu.TimesStat{User: 100, System: 50, Idle: 800, Iowait: 10, Steal: 0}
	tests := []struct {
		name   string
		cur    cpu.TimesStat
		busy   float64
		iowait float64
		ok     bool
	}{
		{"half busy", cpu.TimesStat{User: 130, System: 70, Idle: 850, Iowait: 10}, 50, 0, true},
		{"idle", cpu.TimesStat{User: 100, System: 50, Idle: 900, Iowait: 10}, 0, 0, true},
		{"iowait is not busy", cpu.TimesStat{User: 100, System: 50, Idle: 890, Iowait: 20}, 0, 10, true},
		{"guest time is inside user time", cpu.TimesStat{User: 200, Guest: 100, System: 50, Idle: 800, Iowait: 10}, 100, 0, true},
		{"no time passed", prev, 0, 0, false},
		{"counters went backwards (CPU hot-plug)", cpu.TimesStat{User: 10, System: 50, Idle: 900, Iowait: 10}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cpuPercent(prev, tt.cur)
			if ok != tt.ok || got.busy != tt.busy || got.iowait != tt.iowait {
				t.Fatalf("cpuPercent = %+v, %v; want busy %v iowait %v, %v", got, ok, tt.busy, tt.iowait, tt.ok)
			}
		})
	}
}
