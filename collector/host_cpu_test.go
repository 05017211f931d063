package collector

import (
	"maps"
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

// TestCPUMetrics feeds readings by hand: totals appear only once every CPU
// has a previous reading, so a CPU coming online never skews them.
func TestCPUMetrics(t *testing.T) {
	h, err := NewHost(HostOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	read := func(times ...cpu.TimesStat) map[string]float64 {
		m := make(map[string]float64)
		h.cpuMetrics(m, times)
		return m
	}
	if m := read(
		cpu.TimesStat{CPU: "cpu0", User: 100, Idle: 100},
		cpu.TimesStat{CPU: "cpu1", User: 100, Idle: 100},
	); len(m) != 0 {
		t.Fatalf("first reading gave %v, want nothing", m)
	}
	m := read(
		cpu.TimesStat{CPU: "cpu0", User: 200, Idle: 100}, // all busy
		cpu.TimesStat{CPU: "cpu1", User: 100, Idle: 200}, // all idle
	)
	want := map[string]float64{
		"cpu.percent{core=0}": 100, "cpu.percent{core=1}": 0,
		"cpu.percent": 50, "cpu.user_percent": 50, "cpu.system_percent": 0,
		"cpu.iowait_percent": 0, "cpu.steal_percent": 0, "cpu.cores": 2,
	}
	if !maps.Equal(m, want) {
		t.Fatalf("second reading = %v, want %v", m, want)
	}
	m = read(
		cpu.TimesStat{CPU: "cpu0", User: 300, Idle: 100},
		cpu.TimesStat{CPU: "cpu1", User: 100, Idle: 300},
		cpu.TimesStat{CPU: "cpu2", User: 5, Idle: 5}, // came online
	)
	want = map[string]float64{"cpu.percent{core=0}": 100, "cpu.percent{core=1}": 0}
	if !maps.Equal(m, want) {
		t.Fatalf("reading with a new CPU = %v, want %v", m, want)
	}
}
