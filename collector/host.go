package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"
	"github.com/shirou/gopsutil/v3/net"
	"github.com/shirou/gopsutil/v3/process"

	"vigil/stream"
)

// Host defaults.
var (
	// DefaultExcludeFSTypes are pseudo and read-only image filesystems,
	// which say nothing about free space.
	DefaultExcludeFSTypes = []string{
		"autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
		"devtmpfs", "efivarfs", "erofs", "fusectl", "fuse.lxcfs", "hugetlbfs", "iso9660", "mqueue", "nsfs",
		"overlay", "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs",
		"squashfs", "sysfs", "tmpfs", "tracefs",
	}
	// DefaultExcludeMounts are globs of mount points that belong to the
	// system or to container runtimes, not to the host's storage.
	DefaultExcludeMounts = []string{
		"/dev", "/dev/*", "/proc", "/proc/*", "/sys", "/sys/*", "/run/credentials/*",
		"/var/lib/docker/*", "/var/lib/containers/storage/*", "/var/lib/kubelet/*", "/snap/*",
	}
	// DefaultExcludeInterfaces are globs of network interfaces not shown.
	DefaultExcludeInterfaces = []string{"lo"}
)

const (
	// DefaultFSTimeout bounds one filesystem's statfs call; a mount that
	// hangs (a dead NFS server) is skipped until the call returns.
	DefaultFSTimeout = 500 * time.Millisecond
	// mountRefresh and procRefresh are how often the mount table and the
	// process count are read again; both change rarely and cost more than
	// the rest of a sample.
	mountRefresh = 30 * time.Second
	procRefresh  = 5 * time.Second
)

// HostOptions configure a Host source. Zero values take the defaults.
type HostOptions struct {
	Name              string // the part after "host/"; the hostname when empty
	ExcludeFSTypes    []string
	ExcludeMounts     []string
	ExcludeInterfaces []string
	FSTimeout         time.Duration
	Now               func() time.Time
}

// Host samples this machine: CPU, load, memory, swap, filesystems, disk and
// network throughput, uptime and process count. All of vigil's gopsutil
// calls live in this file.
type Host struct {
	opts HostOptions
	name string

	prevCPU  map[string]cpu.TimesStat
	diskRate map[string]*[2]Counter // read, write bytes
	netRate  map[string]*[2]Counter // rx, tx bytes

	mounts   []disk.PartitionStat
	mountsAt time.Time
	disks    []string
	procs    int
	procsAt  time.Time

	mu    sync.Mutex
	stuck map[string]bool // mount points whose statfs has not returned
}

var _ Source = (*Host)(nil)
var _ Primer = (*Host)(nil)

// NewHost returns the host source.
func NewHost(opts HostOptions) (*Host, error) {
	if opts.Name == "" {
		hn, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("host source: hostname: %w", err)
		}
		opts.Name = hn
	}
	if opts.ExcludeFSTypes == nil {
		opts.ExcludeFSTypes = DefaultExcludeFSTypes
	}
	if opts.ExcludeMounts == nil {
		opts.ExcludeMounts = DefaultExcludeMounts
	}
	if opts.ExcludeInterfaces == nil {
		opts.ExcludeInterfaces = DefaultExcludeInterfaces
	}
	if opts.FSTimeout <= 0 {
		opts.FSTimeout = DefaultFSTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Host{
		opts:     opts,
		name:     "host/" + opts.Name,
		prevCPU:  make(map[string]cpu.TimesStat),
		diskRate: make(map[string]*[2]Counter),
		netRate:  make(map[string]*[2]Counter),
		stuck:    make(map[string]bool),
	}, nil
}

// Name is "host/<hostname>".
func (h *Host) Name() string { return h.name }

// Prime takes the first readings of every counter, so the first sample
// already has rates.
func (h *Host) Prime(ctx context.Context) error {
	_, err := h.Collect(ctx)
	return err
}

// Collect reads every host metric. A part that fails is left out and its
// error joined into the returned one; the rest is still returned.
func (h *Host) Collect(ctx context.Context) (map[string]float64, error) {
	now := h.opts.Now()
	m := make(map[string]float64, 64)
	var errs []error
	fail := func(what string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
	}

	if times, err := cpu.TimesWithContext(ctx, true); err != nil {
		fail("cpu", err)
	} else {
		h.cpuMetrics(m, times)
	}
	if avg, err := load.AvgWithContext(ctx); err != nil {
		fail("load", err)
	} else {
		m["load.1"], m["load.5"], m["load.15"] = avg.Load1, avg.Load5, avg.Load15
		if n := len(h.prevCPU); n > 0 {
			m["load.5_per_core"] = avg.Load5 / float64(n) // what "too loaded" means depends on the cores
		}
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		fail("memory", err)
	} else {
		m["mem.total_bytes"] = float64(vm.Total)
		m["mem.used_bytes"] = float64(vm.Used)
		m["mem.available_bytes"] = float64(vm.Available)
		m["mem.used_percent"] = vm.UsedPercent
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err != nil {
		fail("swap", err)
	} else {
		m["swap.total_bytes"] = float64(sw.Total)
		m["swap.used_bytes"] = float64(sw.Used)
		m["swap.used_percent"] = sw.UsedPercent // 0 without swap
	}
	h.fsMetrics(ctx, m, now, fail)
	h.diskMetrics(ctx, m, now, fail)
	if nics, err := net.IOCountersWithContext(ctx, true); err != nil {
		fail("network", err)
	} else {
		h.netMetrics(m, nics, now)
	}
	if up, err := host.UptimeWithContext(ctx); err != nil {
		fail("uptime", err)
	} else {
		m["host.uptime_seconds"] = float64(up)
	}
	if h.procsAt.IsZero() || now.Sub(h.procsAt) >= procRefresh {
		if pids, err := process.PidsWithContext(ctx); err != nil {
			fail("processes", err)
		} else {
			h.procs, h.procsAt = len(pids), now
		}
	}
	if !h.procsAt.IsZero() {
		m["host.procs"] = float64(h.procs)
	}
	for k, v := range m {
		m[k] = math.Round(v*1000) / 1000 // more digits are noise, and bytes on every stream
	}
	if len(errs) > 0 {
		return m, fmt.Errorf("collect %s: %w", h.name, errors.Join(errs...))
	}
	return m, nil
}

func (h *Host) cpuMetrics(m map[string]float64, times []cpu.TimesStat) {
	var total, prevTotal cpu.TimesStat
	have := 0
	for i, t := range times {
		prev, ok := h.prevCPU[t.CPU]
		h.prevCPU[t.CPU] = t
		if !ok {
			continue
		}
		have++
		addTimes(&total, t)
		addTimes(&prevTotal, prev)
		if p, ok := cpuPercent(prev, t); ok {
			m[fmt.Sprintf("cpu.percent{core=%d}", i)] = p.busy
		}
	}
	if have == 0 || have != len(times) {
		return // first reading, or CPUs came and went: wait for a clean delta
	}
	if p, ok := cpuPercent(prevTotal, total); ok {
		m["cpu.percent"] = p.busy
		m["cpu.user_percent"] = p.user
		m["cpu.system_percent"] = p.system
		m["cpu.iowait_percent"] = p.iowait
		m["cpu.steal_percent"] = p.steal
	}
	m["cpu.cores"] = float64(len(times))
}

func addTimes(dst *cpu.TimesStat, t cpu.TimesStat) {
	dst.User += t.User
	dst.Nice += t.Nice
	dst.System += t.System
	dst.Idle += t.Idle
	dst.Iowait += t.Iowait
	dst.Irq += t.Irq
	dst.Softirq += t.Softirq
	dst.Steal += t.Steal
}

type cpuShare struct{ busy, user, system, iowait, steal float64 }

// cpuPercent is the share of time between two readings spent on each kind
// of work. Guest time is already counted in user time on Linux, so it is
// left out of the total. ok is false when no time passed or the counters
// went backwards (a CPU went offline and came back).
func cpuPercent(prev, cur cpu.TimesStat) (cpuShare, bool) {
	d := func(a, b float64) float64 { return b - a }
	user := d(prev.User+prev.Nice, cur.User+cur.Nice)
	system := d(prev.System+prev.Irq+prev.Softirq, cur.System+cur.Irq+cur.Softirq)
	idle := d(prev.Idle, cur.Idle)
	iowait := d(prev.Iowait, cur.Iowait)
	steal := d(prev.Steal, cur.Steal)
	if user < 0 || system < 0 || idle < 0 || iowait < 0 || steal < 0 {
		return cpuShare{}, false
	}
	total := user + system + idle + iowait + steal
	if total <= 0 {
		return cpuShare{}, false
	}
	pct := func(v float64) float64 { return clamp(100*v/total, 0, 100) }
	return cpuShare{
		busy:   pct(user + system + steal),
		user:   pct(user),
		system: pct(system),
		iowait: pct(iowait),
		steal:  pct(steal),
	}, true
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }

func (h *Host) fsMetrics(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if h.mountsAt.IsZero() || now.Sub(h.mountsAt) >= mountRefresh {
		parts, err := disk.PartitionsWithContext(ctx, true)
		if err != nil {
			fail("filesystems", err)
			if h.mountsAt.IsZero() {
				return
			}
		} else {
			h.mounts = realFilesystems(parts, h.opts.ExcludeFSTypes, h.opts.ExcludeMounts)
			h.mountsAt = now
		}
	}
	for _, p := range h.mounts {
		u, err := h.usage(ctx, p.Mountpoint)
		if err != nil {
			fail("filesystem "+p.Mountpoint, err)
			continue
		}
		label := "{mount=" + p.Mountpoint + "}"
		m["fs.size_bytes"+label] = float64(u.Total)
		m["fs.used_bytes"+label] = float64(u.Used)
		m["fs.used_percent"+label] = u.UsedPercent
	}
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
		u, err := disk.UsageWithContext(context.Background(), mount)
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

func (h *Host) diskMetrics(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if h.disks == nil || h.mountsAt.Equal(now) {
		// Look for new disks when the mount table is read again.
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

func (h *Host) netMetrics(m map[string]float64, nics []net.IOCountersStat, now time.Time) {
	var rx, tx float64
	seen := false
	present := make(map[string]bool, len(nics))
	for _, n := range nics {
		if matchAny(h.opts.ExcludeInterfaces, n.Name) {
			continue
		}
		present[n.Name] = true
		r := h.netRate[n.Name]
		if r == nil {
			r = new([2]Counter)
			h.netRate[n.Name] = r
		}
		rr, ok1 := r[0].Rate(n.BytesRecv, now)
		tr, ok2 := r[1].Rate(n.BytesSent, now)
		if ok1 && ok2 {
			m["net.rx_bytes_per_sec{iface="+n.Name+"}"] = rr
			m["net.tx_bytes_per_sec{iface="+n.Name+"}"] = tr
			rx += rr
			tx += tr
			seen = true
		}
	}
	for name := range h.netRate {
		if !present[name] { // interfaces come and go (containers' veths)
			delete(h.netRate, name)
		}
	}
	if seen {
		m["net.rx_bytes_per_sec"] = rx
		m["net.tx_bytes_per_sec"] = tx
	}
}
