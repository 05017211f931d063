package collector

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
)

// collectDisks looks for new disks only when the mount table is read again,
// and otherwise asks for the counters of the whole disks alone.
func (h *Host) collectDisks(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if h.disks == nil || h.mountsAt.Equal(now) {
		all, err := disk.IOCountersWithContext(ctx)
		if err != nil {
			fail("disk io", err)
			return
		}
		names := make([]string, 0, len(all))
		for name := range all {
			names = append(names, name)
		}
		h.disks = wholeDisks(names)
	}
	if len(h.disks) == 0 {
		return
	}
	io, err := disk.IOCountersWithContext(ctx, slices.Clone(h.disks)...)
	if err != nil {
		fail("disk io", err)
		return
	}
	h.diskMetrics(m, io, now)
}

// diskMetrics turns the byte counters of h.disks into rates. A disk the
// reading lacks (it went away) is skipped rather than failing the rest.
func (h *Host) diskMetrics(m map[string]float64, io map[string]disk.IOCountersStat, now time.Time) {
	var read, write float64
	for _, name := range h.disks {
		c, ok := io[name]
		if !ok {
			continue
		}
		r := h.diskRate[name]
		if r == nil {
			r = new([2]Counter)
			h.diskRate[name] = r
		}
		rr, ok1 := r[0].Rate(c.ReadBytes, now)
		wr, ok2 := r[1].Rate(c.WriteBytes, now)
		if ok1 && ok2 {
			m["disk.read_bytes_per_sec{device="+name+"}"] = rr
			m["disk.write_bytes_per_sec{device="+name+"}"] = wr
			read += rr
			write += wr
		}
	}
	if len(h.diskRate) > 0 {
		m["disk.read_bytes_per_sec"] = read
		m["disk.write_bytes_per_sec"] = write
	}
}

var partitionSuffix = regexp.MustCompile(`^p?[0-9]+$`)

// wholeDisks keeps physical disks: not loop, RAM or compressed-RAM devices,
// not device-mapper or RAID volumes layered on other disks, and not
// partitions of a disk in the list, so no byte is counted twice. Sorted.
func wholeDisks(names []string) []string {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	var out []string
	for _, n := range names {
		if hasAnyPrefix(n, "loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd") {
			continue
		}
		partition := false
		for other := range set {
			if other != n && strings.HasPrefix(n, other) && partitionSuffix.MatchString(n[len(other):]) {
				partition = true
				break
			}
		}
		if !partition {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
