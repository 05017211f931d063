package collector

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
)

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

// TestFSMetrics pins the names, units and label the README lists.
func TestFSMetrics(t *testing.T) {
	m := make(map[string]float64)
	fsMetrics(m, "/home", &disk.UsageStat{Total: 100 << 30, Used: 40 << 30, Free: 60 << 30, UsedPercent: 40})
	want := map[string]float64{
		"fs.size_bytes{mount=/home}": 100 << 30, "fs.used_bytes{mount=/home}": 40 << 30, "fs.used_percent{mount=/home}": 40,
	}
	if !maps.Equal(m, want) {
		t.Fatalf("fsMetrics = %v, want %v", m, want)
	}
}

// TestUsageSkipsHungMount: a statfs that hangs costs one timeout and one
// goroutine, not one per tick; the mount is back once the call returns.
func TestUsageSkipsHungMount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := NewHost(HostOptions{Name: "test"})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		var calls atomic.Int32
		h.statfs = func(_ context.Context, path string) (*disk.UsageStat, error) {
			calls.Add(1)
			<-release
			return &disk.UsageStat{Path: path, Total: 100}, nil
		}
		ctx := context.Background()

		start := time.Now()
		if _, err := h.usage(ctx, "/mnt/nfs"); err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("hanging statfs: err = %v, want a timeout", err)
		}
		if waited := time.Since(start); waited != DefaultFSTimeout {
			t.Fatalf("waited %v, want %v", waited, DefaultFSTimeout)
		}
		if _, err := h.usage(ctx, "/mnt/nfs"); err == nil || !strings.Contains(err.Error(), "still hanging") {
			t.Fatalf("next tick: err = %v, want the mount skipped", err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d statfs calls while the first hangs, want 1", n)
		}

		close(release)
		synctest.Wait()
		u, err := h.usage(ctx, "/mnt/nfs")
		if err != nil || u.Total != 100 {
			t.Fatalf("after the call returned: %+v, %v; want the mount back", u, err)
		}
	})
}
