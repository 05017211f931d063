package collector

import (
	"sort"
	"strings"
	"sync"
	"time"
)

// A Point is one value of a series at one time.
type Point struct {
	T time.Time
	V float64
}

// A Ring holds the most recent points of one series in a fixed-size circular
// buffer. Push never allocates once the ring exists. A Ring is not safe for
// concurrent use; Store guards its rings.
type Ring struct {
	ts   []int64 // unix nanoseconds
	vs   []float64
	head int // index of the next write
	n    int // number of valid points
}

// NewRing returns a ring that keeps the last capacity points (at least one).
func NewRing(capacity int) *Ring {
	if capacity < 1 {
		capacity = 1
	}
	return &Ring{ts: make([]int64, capacity), vs: make([]float64, capacity)}
}

// Len is the number of points the ring holds now.
func (r *Ring) Len() int { return r.n }

// Push appends a point, overwriting the oldest once the ring is full.
func (r *Ring) Push(t time.Time, v float64) {
	r.ts[r.head] = t.UnixNano()
	r.vs[r.head] = v
	r.head++
	if r.head == len(r.ts) {
		r.head = 0
	}
	if r.n < len(r.ts) {
		r.n++
	}
}

// Last returns the newest point.
func (r *Ring) Last() (Point, bool) {
	if r.n == 0 {
		return Point{}, false
	}
	i := r.head - 1
	if i < 0 {
		i = len(r.ts) - 1
	}
	return Point{T: time.Unix(0, r.ts[i]), V: r.vs[i]}, true
}

// AppendSince appends, oldest first, the points at or after since to dst.
func (r *Ring) AppendSince(dst []Point, since time.Time) []Point {
	s := since.UnixNano()
	start := r.head - r.n
	if start < 0 {
		start += len(r.ts)
	}
	for k := 0; k < r.n; k++ {
		i := start + k
		if i >= len(r.ts) {
			i -= len(r.ts)
		}
		if r.ts[i] >= s {
			dst = append(dst, Point{T: time.Unix(0, r.ts[i]), V: r.vs[i]})
		}
	}
	return dst
}

// SeriesInfo describes one series held by a Store.
type SeriesInfo struct {
	Source string    `json:"source"`
	Metric string    `json:"metric"`
	Points int       `json:"points"`
	Last   float64   `json:"last"`
	LastAt time.Time `json:"last_at"`
}

// A Store keeps a Ring per (source, metric) series. It is safe for concurrent
// use: one writer per source (the Scheduler) and any number of readers.
type Store struct {
	capacity int

	mu       sync.RWMutex
	sources  map[string]*sourceRings
	statuses map[string]SourceStatus
}

// SourceStatus is what is known of a source's health.
type SourceStatus struct {
	State       string    `json:"state"`           // StateUp or StateFailed
	Since       time.Time `json:"since"`           // when State began
	Error       string    `json:"error,omitempty"` // the current error while failed
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

type sourceRings struct {
	metrics map[string]*Ring
	last    Sample // newest sample, shared read-only
}

// NewStore returns a store whose rings keep retention/interval points.
func NewStore(retention, interval time.Duration) *Store {
	capacity := 1
	if interval > 0 && retention > interval {
		capacity = int(retention / interval)
	}
	return &Store{capacity: capacity, sources: make(map[string]*sourceRings), statuses: make(map[string]SourceStatus)}
}

// Capacity is the number of points each series keeps.
func (s *Store) Capacity() int { return s.capacity }

// Append records every metric of a sample in its series' ring. The sample's
// map is kept as the source's latest sample and must not be changed
// afterwards.
func (s *Store) Append(smp Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.sources[smp.Source]
	if src == nil {
		src = &sourceRings{metrics: make(map[string]*Ring, len(smp.Metrics))}
		s.sources[smp.Source] = src
	}
	for name, v := range smp.Metrics {
		r := src.metrics[name]
		if r == nil {
			r = NewRing(s.capacity)
			src.metrics[name] = r
		}
		r.Push(smp.Time, v)
	}
	src.last = smp
}

// SetStatus records a source's state; errMsg is empty unless it failed.
func (s *Store) SetStatus(source, state, errMsg string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statuses[source]
	if st.State != state {
		st.State, st.Since = state, at
	}
	st.Error = errMsg
	if errMsg != "" {
		st.LastError, st.LastErrorAt = errMsg, at
	}
	s.statuses[source] = st
}

// Remove forgets a source: its series and its status.
func (s *Store) Remove(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sources, source)
	delete(s.statuses, source)
}

// Status returns what is known of a source's health.
func (s *Store) Status(source string) (SourceStatus, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.statuses[source]
	return st, ok
}

// Sources lists the sources the store holds, sorted.
func (s *Store) Sources() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.sources))
	for name := range s.sources {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Latest returns the newest sample of a source.
func (s *Store) Latest(source string) (Sample, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.sources[source]
	if src == nil {
		return Sample{}, false
	}
	return src.last, true
}

// Series lists every series, sorted by source then metric.
func (s *Store) Series() []SeriesInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []SeriesInfo
	for source, src := range s.sources {
		for metric, r := range src.metrics {
			p, _ := r.Last()
			out = append(out, SeriesInfo{Source: source, Metric: metric, Points: r.Len(), Last: p.V, LastAt: p.T})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		return out[i].Metric < out[j].Metric
	})
	return out
}

// Range returns the points of one series at or after since, oldest first.
func (s *Store) Range(source, metric string, since time.Time) ([]Point, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.sources[source]
	if src == nil {
		return nil, false
	}
	r := src.metrics[metric]
	if r == nil {
		return nil, false
	}
	return r.AppendSince(make([]Point, 0, r.Len()), since), true
}

// SplitSeriesPath splits "host/web-1/cpu.percent" into a known source and
// metric. Both source names and metric names may contain slashes, so the
// split is resolved against the series the store holds.
func (s *Store) SplitSeriesPath(p string) (source, metric string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, src := range s.sources {
		if !strings.HasPrefix(p, name+"/") {
			continue
		}
		m := p[len(name)+1:]
		if _, found := src.metrics[m]; found && len(name) > len(source) {
			source, metric, ok = name, m, true
		}
	}
	return source, metric, ok
}
