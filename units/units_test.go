package units

import (
	"math"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		metric string
		v      float64
		want   string
	}{
		{"cpu.percent", 12.345, "12.3%"},
		{"cpu.percent{core=1}", 100, "100%"},
		{"mem.used_percent", 0, "0%"},
		{"mem.available_bytes", 1536, "1.5 KiB"},
		{"fs.size_bytes{mount=/}", 270553174016, "252 GiB"},
		{"net.rx_bytes_per_sec", 512, "512 B/s"},
		{"http.requests_per_sec", 1234, "1.2k/s"},
		{"http.requests_per_sec", 0.5, "0.5/s"},
		// Three significant digits below a thousand, as everywhere else:
		// an instance's 41.67/s beside its service's 120/s read as noise.
		{"http.requests_per_sec{instance=a}", 41.6667, "41.7/s"},
		{"http.requests_per_sec", 119.83, "120/s"},
		{"http.requests_per_sec", 9.3333, "9.33/s"},
		{"load.1", 12.345, "12.3"},
		{"http.latency_p99_seconds", 0.2, "200 ms"},
		{"http.latency_p50_seconds", 0.0004, "0.4 ms"},
		{"http.latency_max_seconds", 2.5, "2.5 s"},
		{"probe.ttfb_seconds{instance=a:1}", 0.012, "12 ms"}, // a probe's timings are latencies, not durations
		{"host.uptime_seconds", 3*86400 + 4*3600, "3d 4h"},
		{"host.uptime_seconds", 125, "2m 5s"},
		{"load.1", 0.42, "0.42"},
		{"host.procs", 1500, "1.5k"},
		{"x", math.NaN(), "–"},
	}
	if got := FormatAs(LatencyBound, 2.5); got != "≤ 2.5 s" {
		t.Errorf("a bucket's top: %q", got)
	}
	for _, tt := range tests {
		if got := Format(tt.metric, tt.v); got != tt.want {
			t.Errorf("Format(%s, %v) = %q, want %q", tt.metric, tt.v, got, tt.want)
		}
	}
}
