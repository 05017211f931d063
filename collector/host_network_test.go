package collector

import (
	"maps"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/net"
)

// TestNetMetrics follows interfaces across readings: excluded ones are never
// shown, a new one waits for its second reading, and one that went away is
// forgotten so that a container's veth does not stay in memory for ever.
func TestNetMetrics(t *testing.T) {
	h, err := NewHost(HostOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name string
		at   time.Time
		nics []net.IOCountersStat
		want map[string]float64
	}{
		{"first reading", t0, []net.IOCountersStat{
			{Name: "lo", BytesRecv: 10, BytesSent: 10},
			{Name: "eth0", BytesRecv: 1000, BytesSent: 500},
		}, map[string]float64{}},
		{"rates, and a new interface", t0.Add(2 * time.Second), []net.IOCountersStat{
			{Name: "lo", BytesRecv: 9000, BytesSent: 9000},
			{Name: "eth0", BytesRecv: 3000, BytesSent: 1500},
			{Name: "veth1", BytesRecv: 100, BytesSent: 100},
		}, map[string]float64{
			"net.rx_bytes_per_sec{iface=eth0}": 1000, "net.tx_bytes_per_sec{iface=eth0}": 500,
			"net.rx_bytes_per_sec": 1000, "net.tx_bytes_per_sec": 500,
		}},
		{"eth0 went away", t0.Add(4 * time.Second), []net.IOCountersStat{
			{Name: "veth1", BytesRecv: 300, BytesSent: 100},
		}, map[string]float64{
			"net.rx_bytes_per_sec{iface=veth1}": 100, "net.tx_bytes_per_sec{iface=veth1}": 0,
			"net.rx_bytes_per_sec": 100, "net.tx_bytes_per_sec": 0,
		}},
	}
	for _, s := range steps {
		m := make(map[string]float64)
		h.netMetrics(m, s.nics, s.at)
		if !maps.Equal(m, s.want) {
			t.Fatalf("%s: %v, want %v", s.name, m, s.want)
		}
	}
	if _, ok := h.netRate["eth0"]; ok {
		t.Error("eth0 is still remembered after it went away")
	}
	if _, ok := h.netRate["lo"]; ok {
		t.Error("the excluded lo has counters")
	}
}
