package collector

import (
	"slices"
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

// SeriesInfo describes one series held by a Store.
type SeriesInfo struct {
	Source string    `json:"source"`
	Metric string    `json:"metric"`
	Points int       `json:"points"`
	Last   float64   `json:"last"`
	LastAt time.Time `json:"last_at"`
}

// A Store keeps every (source, metric) series' points of the retention,
// at most capacity of them (the retention at the interval): a source's
// as columns beside its samples' times (sourceRings).
// It is safe for concurrent use: one writer per source (the Scheduler)
// and any number of readers.
type Store struct {
	capacity  int
	retention time.Duration
	now       func() time.Time // time.Now; a test's clock

	mu       sync.RWMutex
	sources  map[string]*sourceRings
	statuses map[string]SourceStatus
	removed  map[string]bool // sources removed, and not back since
	shapes   uint64          // the last Shape given
	sealing  sealing         // appends' work space, under mu
	recorder Recorder
}

// A Recorder is given every sample a Store takes, once taken: the
// history keeps them. Record must not block; a Store's samples of one
// source come to it in order.
type Recorder interface {
	Record(Sample)
}

// A Forgetter is a Recorder that is told when a source is removed, so
// that what it keeps of the source's past is not taken for a live source
// again (the history does not give it back to the ring after a restart).
type Forgetter interface {
	Forget(source string)
}

// RecordInto gives every sample appended from now on to r as well.
func (s *Store) RecordInto(r Recorder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorder = r
}

// SourceStatus is what is known of a source's health.
type SourceStatus struct {
	State       string    `json:"state"`           // StateUp or StateFailed
	Since       time.Time `json:"since"`           // when State began
	Error       string    `json:"error,omitempty"` // the current error while failed
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// NewStore returns a store whose rings keep the retention's points, at
// most retention/interval of them.
func NewStore(retention, interval time.Duration) *Store {
	capacity := 1
	if interval > 0 && retention > interval {
		capacity = int(retention / interval)
	}
	retention = max(retention, interval, time.Nanosecond)
	return &Store{capacity: capacity, retention: retention, now: time.Now, sources: make(map[string]*sourceRings), statuses: make(map[string]SourceStatus), removed: make(map[string]bool)}
}

// Capacity is the number of points each series keeps at most.
func (s *Store) Capacity() int { return s.capacity }

func (s *Store) limit() limit {
	return limit{capacity: s.capacity, retention: int64(s.retention), now: s.now}
}

// Append records every metric of a sample in its series. The sample is
// kept as the source's latest sample: its Metrics' values must not be
// changed afterwards.
func (s *Store) Append(smp Sample) { s.AppendArrived(smp, time.Time{}) }

// AppendArrived appends a sample that reached this process's cluster at
// arrived, before this process read it (a replica's mirror of another's
// sample, read from the shared log's backlog): its source's silence
// (Arrival) counts from then. A zero time, or one after now (another
// machine's clock), is now.
func (s *Store) AppendArrived(smp Sample, arrived time.Time) {
	s.mu.Lock()
	s.append(smp)
	if src := s.sources[smp.Source]; !arrived.IsZero() && arrived.Before(src.arrived) {
		src.arrived = arrived
	}
	r := s.recorder
	s.mu.Unlock()
	if r != nil {
		r.Record(smp)
	}
}

// AppendPast appends a sample from before this run (the history's, given
// back after a restart): it is not given to the recorder, and its source
// is not live (Arrival) until a sample is appended.
func (s *Store) AppendPast(smp Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.append(smp)
	s.sources[smp.Source].arrived = time.Time{}
}

// Arrival is how long ago the source's newest sample was appended, by the
// store's clock, and whether it was in this run (live) rather than given
// back from its past (AppendPast). A sample's own time is its source's
// clock's, which may be off ours: this is how long the source has been
// silent.
func (s *Store) Arrival(source string) (age time.Duration, live bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.sources[source]
	if src == nil || src.arrived.IsZero() {
		return 0, false
	}
	return s.now().Sub(src.arrived), true
}

// WithClock makes the store read the time from now (a test's clock)
// rather than time.Now, and returns it.
func (s *Store) WithClock(now func() time.Time) *Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
	return s
}

func (s *Store) append(smp Sample) {
	src := s.sources[smp.Source]
	if src == nil {
		src = &sourceRings{cols: make(map[string]int, smp.Metrics.Len())}
		s.sources[smp.Source] = src
		delete(s.removed, smp.Source)
	}
	src.append(smp, s.limit(), &s.shapes, &s.sealing)
	src.arrived = s.now()
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

// Remove forgets a source: its series and its status. Removed says so
// until it has a sample again; a recorder that is a Forgetter is told.
func (s *Store) Remove(source string) {
	s.mu.Lock()
	delete(s.sources, source)
	delete(s.statuses, source)
	if len(s.removed) >= maxRemoved {
		clear(s.removed)
	}
	s.removed[source] = true
	f, _ := s.recorder.(Forgetter)
	s.mu.Unlock()
	if f != nil {
		f.Forget(source)
	}
}

// maxRemoved bounds the sources Removed remembers.
const maxRemoved = 10_000

// Removed says whether a source was removed (an agent's host, an agent
// taken out of a hub's upstreams), rather than never seen or silent.
func (s *Store) Removed(source string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.removed[source]
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

// Shape is a number that changes whenever a sample of the source has
// other metrics than the sample before it: what reads the newest sample
// of many sources each second can tell whether its metrics are still
// those it worked with, without looking at each.
func (s *Store) Shape(source string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if src := s.sources[source]; src != nil {
		return src.shape
	}
	return 0
}

// Metrics lists a source's metrics, sorted.
func (s *Store) Metrics(source string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.sources[source]
	if src == nil {
		return nil
	}
	out := slices.Clone(src.names)
	slices.Sort(out)
	return out
}

// Series lists every series, sorted by source then metric: an empty
// list, not nil, when there are none.
func (s *Store) Series() []SeriesInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []SeriesInfo{}
	for source, src := range s.sources {
		for metric, col := range src.cols {
			n, last := src.count(col, s.limit())
			out = append(out, SeriesInfo{Source: source, Metric: metric, Points: n, Last: last.V, LastAt: last.T})
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
	return s.AppendRange(nil, source, metric, since)
}

// AppendRange is Range appending to dst, for a caller that reads many
// series and reuses one slice; a nil dst gets a slice of about the size
// needed.
func (s *Store) AppendRange(dst []Point, source, metric string, since time.Time) ([]Point, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.sources[source]
	if src == nil {
		return dst, false
	}
	col, ok := src.cols[metric]
	if !ok {
		return dst, false
	}
	if dst == nil {
		dst = make([]Point, 0, src.since(since, s.limit()))
	}
	n := len(dst)
	dst = src.appendSince(dst, col, since, s.limit())
	if pts := dst[n:]; !slices.IsSortedFunc(pts, Point.compare) {
		// The source's clock was set back: its points come in the
		// order they were taken, which is not their times'.
		slices.SortStableFunc(pts, Point.compare)
	}
	return dst, true
}

// compare orders points by time.
func (p Point) compare(q Point) int { return p.T.Compare(q.T) }

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
		if _, found := src.cols[m]; found && len(name) > len(source) {
			source, metric, ok = name, m, true
		}
	}
	return source, metric, ok
}
