package collector

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHostCollect reads this machine for real: the metrics the issue
// promises are there after two readings, and within range.
func TestHostCollect(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the host source is tested on Linux, where vigil's CI runs")
	}
	h, err := NewHost(HostOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Name(), "host/") {
		t.Fatalf("name %q", h.Name())
	}
	ctx := context.Background()
	if err := h.Prime(ctx); err != nil {
		t.Logf("prime: %v", err) // partial failures are allowed
	}
	// /proc/stat counts in clock ticks (10 ms): read again until one has
	// passed, so that there is a delta to compute rates from.
	var m map[string]float64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m, err = h.Collect(ctx); err != nil {
			t.Logf("collect: %v", err)
		}
		perCore := 0
		for k := range m {
			if strings.HasPrefix(k, "cpu.percent{core=") {
				perCore++
			}
		}
		if _, ok := m["cpu.percent"]; ok && perCore == runtime.NumCPU() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range []string{
		"cpu.percent", "load.1", "load.5", "load.15", "mem.used_bytes", "mem.available_bytes",
		"mem.used_percent", "swap.used_percent", "disk.read_bytes_per_sec", "disk.write_bytes_per_sec",
		"host.uptime_seconds", "host.procs",
	} {
		if _, ok := m[k]; !ok {
			t.Errorf("metric %s missing", k)
		}
	}
	cores, fs, nic := 0, 0, 0
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "cpu.percent{core="):
			cores++
		case strings.HasPrefix(k, "fs.used_percent{mount="):
			fs++
		case strings.HasPrefix(k, "net.rx_bytes_per_sec{iface="):
			nic++
		}
		if strings.HasSuffix(k, "_percent") || strings.Contains(k, "_percent{") {
			if v < 0 || v > 100 {
				t.Errorf("%s = %v, outside 0..100", k, v)
			}
		}
		if v < 0 && !strings.HasPrefix(k, "load.") {
			t.Errorf("%s = %v is negative", k, v)
		}
	}
	if cores != runtime.NumCPU() {
		t.Errorf("%d per-core values, want %d", cores, runtime.NumCPU())
	}
	if fs == 0 {
		t.Error("no filesystem reported")
	}
	if nic == 0 {
		t.Log("no network interface besides the excluded ones")
	}
}
