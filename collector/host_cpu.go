package collector

import (
	"context"
	"fmt"

	"github.com/shirou/gopsutil/v3/cpu"
)

// collectCPU reads the time counters of every CPU itself rather than
// calling cpu.Percent, whose process-wide state answers 0 on its first
// call and is shared by every caller in the process.
func (h *Host) collectCPU(ctx context.Context, m map[string]float64, fail func(string, error)) {
	if times, err := cpu.TimesWithContext(ctx, true); err != nil {
		fail("cpu", err)
	} else {
		h.cpuMetrics(m, times)
	}
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
