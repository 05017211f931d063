package collector

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
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

func TestRealFilesystems(t *testing.T) {
	parts := []disk.PartitionStat{
		{Device: "proc", Mountpoint: "/proc", Fstype: "proc"},
		{Device: "tmpfs", Mountpoint: "/run", Fstype: "tmpfs"},
		{Device: "/dev/sda1", Mountpoint: "/", Fstype: "ext4"},
		{Device: "/dev/sda1", Mountpoint: "/var/lib/docker/overlay2/x/merged", Fstype: "ext4"},
		{Device: "/dev/sda1", Mountpoint: "/srv/bind", Fstype: "ext4"},
		{Device: "/dev/sdb1", Mountpoint: "/home", Fstype: "xfs"},
		{Device: "overlay", Mountpoint: "/var/lib/docker/overlay2/y/merged", Fstype: "overlay"},
		{Device: "/dev/loop3", Mountpoint: "/snap/core/123", Fstype: "squashfs"},
		{Device: "cgroup2", Mountpoint: "/sys/fs/cgroup", Fstype: "cgroup2"},
		{Device: "none", Mountpoint: "/mnt/x", Fstype: "ext4"},
		{Device: "srv:/export", Mountpoint: "/mnt/nfs", Fstype: "nfs4"},
	}
	got := realFilesystems(parts, DefaultExcludeFSTypes, DefaultExcludeMounts)
	var mounts []string
	for _, p := range got {
		mounts = append(mounts, p.Mountpoint)
	}
	if want := "[/ /home /mnt/nfs]"; fmt.Sprint(mounts) != want {
		t.Fatalf("mounts = %v, want %s", mounts, want)
	}
}

func TestWholeDisks(t *testing.T) {
	names := []string{"loop0", "sda", "sda1", "sda2", "nvme0n1", "nvme0n1p1", "vda", "dm-0", "zram0", "md0", "sr0", "mmcblk0", "mmcblk0p1"}
	got := wholeDisks(names)
	if want := "[mmcblk0 nvme0n1 sda vda]"; fmt.Sprint(got) != want {
		t.Fatalf("wholeDisks = %v, want %s", got, want)
	}
}

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
