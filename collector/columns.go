package collector

import "time"

// sourceRings holds a source's recent samples: their times once, and each
// metric's values as a column beside them, compressed (valueStream), in
// chunks of chunkLen samples. When the samples beyond the oldest chunk
// are the capacity, that chunk goes whole. A metric missing from a sample
// has a missing value in its column; a metric new in a sample gets a
// column from there.
//
// A source's metrics are sampled together, so one time per sample serves
// forty series, and compressed columns take a host's series from sixteen
// bytes a point to one to four: what lets a hub keep ten minutes of a
// thousand hosts in memory.
type sourceRings struct {
	chunks []*chunk           // oldest first; the last is the one written
	cols   map[string]*column // by metric
	order  []*column          // in the order the columns came
	n      int                // samples in chunks
	total  int                // samples ever appended
	shape  uint64             // changes when a sample's set of metrics differs from the last one's
	spare  []int64            // a dropped chunk's times' array, for the next
	last   Sample             // newest sample, shared read-only
}

// A column is one metric's place in its source's chunks.
type column struct {
	name   string
	index  int   // its stream in each chunk
	seen   int   // the sample (of total) its last value came in
	last   Point // its newest value
	points int   // values (not missing) in the chunks
	open   valueStream
}

// A chunk is up to chunkLen consecutive samples of a source. The last
// chunk's values are in its columns' open streams; a full chunk's are
// sealed into one slice.
type chunk struct {
	ts     []int64  // unix nanoseconds of each sample
	newest int64    // the greatest of ts
	first  []uint16 // per column: the sample its values start at
	counts []uint16 // per column: values that are not missing
	n      []uint16 // per column, once sealed: values in its stream
	offs   []uint32 // per column, once sealed: where its stream starts in data
	data   []byte
}

// chunkLen is how many samples a chunk holds for a ring of the capacity:
// a tenth of it, so at most a tenth more is held than asked, within
// bounds that keep the per-chunk cost small.
func chunkLen(capacity int) int { return min(max(capacity/10, 8), 240) }

// append records a sample. shapes counts the shapes of every source of
// the store, so that no number is the shape of two.
func (s *sourceRings) append(smp Sample, capacity int, shapes *uint64) {
	per := chunkLen(capacity)
	c := s.head(per)
	i := len(c.ts)
	t := smp.Time.UnixNano()
	if len(c.ts) == 0 || t > c.newest {
		c.newest = t
	}
	c.ts = append(c.ts, t)
	// The columns in their order, each looked up in the sample (a map
	// just made, in the cache) rather than each metric in the columns.
	changed, found := false, 0
	for _, col := range s.order {
		v, ok := smp.Metrics[col.name]
		if !ok { // a missing value
			col.open.push(missing)
			if col.seen == s.total-1 { // in the last sample, not in this one
				changed = true
			}
			continue
		}
		found++
		changed = s.put(c, col, i, v, smp.Time) || changed
	}
	if found < len(smp.Metrics) { // metrics new to the source
		for name, v := range smp.Metrics {
			if s.cols[name] == nil {
				col := &column{name: name, index: len(s.order), seen: -2} // in no sample yet
				s.cols[name] = col
				s.order = append(s.order, col)
				s.put(c, col, i, v, smp.Time)
				changed = true
			}
		}
	}
	if changed {
		*shapes++
		s.shape = *shapes
	}
	s.total++
	s.n++
	s.last = smp
	// The oldest chunk goes once the ones after it hold the capacity.
	for len(s.chunks) > 1 && s.n-len(s.chunks[0].ts) >= capacity {
		old := s.chunks[0]
		for _, col := range s.order {
			if col.index < len(old.counts) {
				col.points -= int(old.counts[col.index])
			}
		}
		s.n -= len(old.ts)
		s.spare = old.ts[:0] // its times' array serves the next chunk
		s.chunks = append(s.chunks[:0], s.chunks[1:]...)
	}
}

// put appends a metric's value of the chunk's i-th sample to its column,
// and says whether the column was missing from the last sample.
func (s *sourceRings) put(c *chunk, col *column, i int, v float64, t time.Time) (changed bool) {
	changed = col.seen != s.total-1
	col.seen = s.total
	if len(c.first) <= col.index { // the column is new in the chunk: its values start here
		c.first = append(c.first, uint16(i))
		c.counts = append(c.counts, 0)
	}
	col.open.push(v)
	c.counts[col.index]++
	col.points++
	col.last = Point{T: t, V: v}
	return changed
}

// head returns the chunk to write the next sample in: the last one, or a
// new one when it is full (sealing the full one's streams).
func (s *sourceRings) head(per int) *chunk {
	if len(s.chunks) > 0 {
		c := s.chunks[len(s.chunks)-1]
		if len(c.ts) < per {
			return c
		}
		c.seal(s.order)
	}
	ts := s.spare
	s.spare = nil
	if cap(ts) < per {
		ts = make([]int64, 0, per)
	}
	c := &chunk{ts: ts, first: make([]uint16, len(s.order)), counts: make([]uint16, len(s.order))}
	s.chunks = append(s.chunks, c)
	return c
}

// seal moves the columns' open streams into the chunk, one slice for
// all, and empties them for the next chunk.
func (c *chunk) seal(cols []*column) {
	size := 0
	for _, col := range cols {
		size += len(col.open.b)
	}
	c.data = make([]byte, 0, size)
	c.offs = make([]uint32, len(cols))
	c.n = make([]uint16, len(cols))
	for _, col := range cols {
		c.offs[col.index], c.n[col.index] = uint32(len(c.data)), col.open.n
		c.data = append(c.data, col.open.b...)
		col.open.reset()
	}
}

// stream is a column's values in a chunk to read, false when it has none
// there.
func (s *sourceRings) stream(c *chunk, col *column) (valueStream, bool) {
	switch {
	case col.index >= len(c.first):
		return valueStream{}, false
	case c.data == nil:
		return col.open, true
	}
	end := uint32(len(c.data))
	if col.index+1 < len(c.offs) {
		end = c.offs[col.index+1]
	}
	return valueStream{b: c.data[c.offs[col.index]:end], n: c.n[col.index]}, true
}

// appendSince appends, oldest first, a column's points at or after since
// among the newest capacity samples.
func (s *sourceRings) appendSince(dst []Point, col *column, since time.Time, capacity int) []Point {
	skip := s.n - capacity // samples beyond the capacity, in the oldest chunk
	sinceNs := since.UnixNano()
	for _, c := range s.chunks {
		st, ok := s.stream(c, col)
		if !ok || c.newest < sinceNs { // nothing to read: a chunk before the window is not decoded
			skip -= len(c.ts)
			continue
		}
		r := valueReader{s: &st}
		for j := int(c.first[col.index]); ; j++ {
			v, ok := r.next()
			if !ok {
				break
			}
			if j < skip || isMissing(v) || c.ts[j] < sinceNs {
				continue
			}
			dst = append(dst, Point{T: time.Unix(0, c.ts[j]), V: v})
		}
		skip -= len(c.ts)
	}
	return dst
}

// since is about how many samples are at or after a time: those of the
// chunks that reach it, at most the capacity.
func (s *sourceRings) since(t time.Time, capacity int) int {
	n, ns := 0, t.UnixNano()
	for _, c := range s.chunks {
		if c.newest >= ns {
			n += len(c.ts)
		}
	}
	return min(n, capacity)
}

// size is the memory the source's samples take, about.
func (s *sourceRings) size() int {
	n := 0
	for _, c := range s.chunks {
		n += 64 + 8*cap(c.ts) + 2*cap(c.first) + 2*cap(c.counts) + 2*cap(c.n) + 4*cap(c.offs) + cap(c.data)
	}
	for _, col := range s.order {
		n += 80 + cap(col.open.b)
	}
	return n
}

// count is how many values a column has among the newest capacity
// samples.
func (s *sourceRings) count(col *column, capacity int) int {
	n := col.points
	if skip := s.n - capacity; skip > 0 && len(s.chunks) > 0 {
		c := s.chunks[0] // the samples beyond the capacity are all in it
		if st, ok := s.stream(c, col); ok {
			r := valueReader{s: &st}
			for j := int(c.first[col.index]); j < skip; j++ {
				if v, ok := r.next(); ok && !isMissing(v) {
					n--
				}
			}
		}
	}
	return n
}
