package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
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

// DefaultFSTimeout bounds one filesystem's statfs call; a mount that
// hangs (a dead NFS server) is skipped until the call returns.
const DefaultFSTimeout = 500 * time.Millisecond

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
// calls live in host*.go, one file per subsystem as node_exporter keeps one
// per source, so that a change of gopsutil's major version (v4 differs by
// import path) touches these files only.
type Host struct {
	opts HostOptions
	name string

	prevCPU map[string]cpu.TimesStat // host_cpu.go

	mounts   []disk.PartitionStat // host_filesystems.go
	mountsAt time.Time
	mu       sync.Mutex
	stuck    map[string]bool // mount points whose statfs has not returned
	// statfs is disk.UsageWithContext; a field so that a test can stand in
	// a call that hangs, as a dead NFS server's does.
	statfs func(ctx context.Context, path string) (*disk.UsageStat, error)

	disks    []string               // host_disks.go
	diskRate map[string]*[2]Counter // read, write bytes

	netRate map[string]*[2]Counter // host_network.go; rx, tx bytes

	procs   int // host_info.go
	procsAt time.Time
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
		statfs:   disk.UsageWithContext,
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
//
// The order matters twice: load per core needs the CPU count the CPU part
// has just seen, and the disk part looks for new disks on the tick the
// filesystem part read the mount table again.
func (h *Host) Collect(ctx context.Context) (map[string]float64, error) {
	now := h.opts.Now()
	m := make(map[string]float64, 64)
	var errs []error
	fail := func(what string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
	}

	h.collectCPU(ctx, m, fail)
	h.collectLoad(ctx, m, fail)
	h.collectMemory(ctx, m, fail)
	h.collectFilesystems(ctx, m, now, fail)
	h.collectDisks(ctx, m, now, fail)
	h.collectNetwork(ctx, m, now, fail)
	h.collectInfo(ctx, m, now, fail)
	for k, v := range m {
		m[k] = math.Round(v*1000) / 1000 // more digits are noise, and bytes on every stream
	}
	if len(errs) > 0 {
		return m, fmt.Errorf("collect %s: %w", h.name, errors.Join(errs...))
	}
	return m, nil
}
