package collector

import (
	"context"
	"time"

	"github.com/shirou/gopsutil/v3/net"
)

func (h *Host) collectNetwork(ctx context.Context, m map[string]float64, now time.Time, fail func(string, error)) {
	if nics, err := net.IOCountersWithContext(ctx, true); err != nil {
		fail("network", err)
	} else {
		h.netMetrics(m, nics, now)
	}
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
