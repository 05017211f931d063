package collector

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
)

func TestWholeDisks(t *testing.T) {
	names := []string{"loop0", "sda", "sda1", "sda2", "nvme0n1", "nvme0n1p1", "vda", "dm-0", "zram0", "md0", "sr0", "mmcblk0", "mmcblk0p1"}
	got := wholeDisks(names)
	if want := "[mmcblk0 nvme0n1 sda vda]"; fmt.Sprint(got) != want {
		t.Fatalf("wholeDisks = %v, want %s", got, want)
	}
}

func TestDiskMetrics(t *testing.T) {
	h, err := NewHost(HostOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h.disks = []string{"sda", "vda"}
	t0 := time.Unix(1000, 0)
	m := make(map[string]float64)
	h.diskMetrics(m, map[string]disk.IOCountersStat{"sda": {ReadBytes: 1000, WriteBytes: 1000}}, t0)
	if _, ok := m["disk.read_bytes_per_sec{device=sda}"]; ok {
		t.Fatalf("first reading has a rate: %v", m)
	}
	m = make(map[string]float64)
	h.diskMetrics(m, map[string]disk.IOCountersStat{
		"sda":  {ReadBytes: 5096, WriteBytes: 9192},
		"sda1": {ReadBytes: 1 << 40, WriteBytes: 1 << 40}, // not in h.disks: counted through sda
	}, t0.Add(2*time.Second))
	want := map[string]float64{
		"disk.read_bytes_per_sec{device=sda}": 2048, "disk.write_bytes_per_sec{device=sda}": 4096,
		"disk.read_bytes_per_sec": 2048, "disk.write_bytes_per_sec": 4096,
	}
	if !maps.Equal(m, want) {
		t.Fatalf("disk metrics = %v, want %v", m, want)
	}
}
