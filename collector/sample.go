package collector

import (
	"context"
	"math"
	"time"
)

// A Sample is the set of metric values one source reported at one tick.
//
// Metric names carry their unit as a suffix (_percent, _bytes,
// _bytes_per_sec, _seconds) and per-entity labels in braces, for example
// "cpu.percent{core=0}" or "fs.used_bytes{mount=/home}".
type Sample struct {
	Source  string
	Time    time.Time
	Metrics Metrics
	// Labels are the source's own labels, from the upstream a hub got it
	// from (role=web, dc=fra); nil for a local source.
	Labels map[string]string
}

// A Source produces samples. Collect is called by one goroutine at a time;
// it should return when ctx is done. It may return a partial set of metrics
// together with an error: what it has is kept and published, and the error
// is reported as a "source" event.
type Source interface {
	Name() string
	Collect(ctx context.Context) (map[string]float64, error)
}

// SourceFunc adapts a function to a Source, mostly for tests.
type SourceFunc struct {
	SourceName string
	Fn         func(ctx context.Context) (map[string]float64, error)
}

var _ Source = SourceFunc{}

func (f SourceFunc) Name() string { return f.SourceName }
func (f SourceFunc) Collect(ctx context.Context) (map[string]float64, error) {
	return f.Fn(ctx)
}

// finite drops NaN and infinite values, which JSON cannot carry and which no
// chart can draw.
func finite(m map[string]float64) {
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(m, k)
		}
	}
}

// Counter turns successive readings of a monotonically increasing counter
// into a per-second rate. The zero value is ready to use. It never returns a
// negative rate: a reading below the previous one is a counter reset (a
// reboot, an interface that came back, a 32-bit wrap), and the increase is
// then taken from zero, as Prometheus' rate() does.
type Counter struct {
	last  uint64
	at    time.Time
	valid bool
}

// Rate records a reading taken at t and returns the per-second rate since the
// previous reading. ok is false for the first reading and when time did not
// advance.
func (c *Counter) Rate(v uint64, t time.Time) (rate float64, ok bool) {
	prev, prevAt, valid := c.last, c.at, c.valid
	c.last, c.at, c.valid = v, t, true
	if !valid {
		return 0, false
	}
	dt := t.Sub(prevAt).Seconds()
	if dt <= 0 {
		return 0, false
	}
	inc := v - prev
	if v < prev {
		inc = v
	}
	return float64(inc) / dt, true
}
