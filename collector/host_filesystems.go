package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/shirou/gopsutil/v3/disk"

	"vigil/stream"
)

// mountRefresh is how often the mount table is read again: it changes
// rarely, and reading it costs more than the rest of a sample.
const mountRefresh = 30 * time.Second

func (h *Host) collectFilesystems(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if !h.readMounts(ctx, now, fail) {
		return
	}
	for _, p := range h.mounts {
		u, err := h.usage(ctx, p.Mountpoint)
		if err != nil {
			fail("filesystem "+p.Mountpoint, err)
			continue
		}
		fsMetrics(m, p.Mountpoint, u)
	}
}

// readMounts reads the mount table when it is due. A failed read keeps the
// table of the last good one, so a passing error does not blank every
// filesystem's chart; ok is false only while there has never been one.
func (h *Host) readMounts(ctx context.Context, now time.Time, fail func(string, error)) (ok bool) {
	if !h.mountsAt.IsZero() && now.Sub(h.mountsAt) < mountRefresh {
		return true
	}
	parts, err := disk.PartitionsWithContext(ctx, true)
	if err != nil {
		fail("filesystems", err)
		return !h.mountsAt.IsZero()
	}
	h.mounts = realFilesystems(parts, h.opts.ExcludeFSTypes, h.opts.ExcludeMounts)
	h.mountsAt = now
	return true
}

func fsMetrics(m map[string]float64, mount string, u *disk.UsageStat) {
	label := "{mount=" + mount + "}"
	m["fs.size_bytes"+label] = float64(u.Total)
	m["fs.used_bytes"+label] = float64(u.Used)
	m["fs.used_percent"+label] = u.UsedPercent
}

// usage runs statfs on a mount point with a timeout. A call that hangs is
// left to finish on its own goroutine and the mount is skipped until then,
// so one dead network filesystem costs one goroutine, not one per tick.
func (h *Host) usage(ctx context.Context, mount string) (*disk.UsageStat, error) {
	h.mu.Lock()
	if h.stuck[mount] {
		h.mu.Unlock()
		return nil, errors.New("statfs still hanging from an earlier tick")
	}
	h.mu.Unlock()
	type result struct {
		u   *disk.UsageStat
		err error
	}
	ch := make(chan result, 1)
	go func() {
		u, err := h.statfs(context.Background(), mount)
		ch <- result{u, err}
	}()
	timer := time.NewTimer(h.opts.FSTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.u, r.err
	case <-ctx.Done():
	case <-timer.C:
	}
	h.mu.Lock()
	h.stuck[mount] = true
	h.mu.Unlock()
	go func() {
		<-ch
		h.mu.Lock()
		delete(h.stuck, mount)
		h.mu.Unlock()
	}()
	return nil, fmt.Errorf("statfs timed out after %s", h.opts.FSTimeout)
}

// realFilesystems keeps the mounts that hold storage: not a pseudo
// filesystem, not an excluded mount point, and each device once (bind
// mounts and containers' views of the same disk repeat it), at its
// shortest mount point. The result is sorted by mount point.
func realFilesystems(parts []disk.PartitionStat, excludeTypes, excludeMounts []string) []disk.PartitionStat {
	byDevice := make(map[string]disk.PartitionStat)
	for _, p := range parts {
		if slices.Contains(excludeTypes, p.Fstype) || p.Device == "none" || p.Device == "" {
			continue
		}
		if matchAny(excludeMounts, p.Mountpoint) {
			continue
		}
		if prev, ok := byDevice[p.Device]; ok && len(prev.Mountpoint) <= len(p.Mountpoint) {
			continue
		}
		byDevice[p.Device] = p
	}
	out := make([]disk.PartitionStat, 0, len(byDevice))
	for _, p := range byDevice {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mountpoint < out[j].Mountpoint })
	return out
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if stream.Glob(g, s) {
			return true
		}
	}
	return false
}
