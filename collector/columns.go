package collector

import (
	"math"
	"slices"
	"time"
	"unsafe"
)

// sourceRings holds a source's recent samples in chunks of up to chunkLen
// samples: their times once, and each metric's values beside them. The
// chunk being written keeps its values as they came, a row a sample;
// once full it is sealed, each metric's values compressed into a column
// (valueStream). When the samples beyond the oldest chunk are the
// capacity, or all of it is beyond the retention, that chunk goes whole
// (limit). A metric missing from a sample has a
// missing value there; a metric new to the source starts a new chunk,
// whose rows have a place for it.
//
// A source's metrics are sampled together, so one time per sample serves
// forty series, and compressed columns take a host's series from sixteen
// bytes a point to one to four: what lets a hub keep ten minutes of a
// thousand hosts in memory. Rows for the open chunk keep a sample's
// writes in one place: a hub appends a thousand sources' samples a
// second, and forty streams of each, scattered in memory, each missed the
// processor's cache.
type sourceRings struct {
	chunks  []*chunk       // oldest first; the last is the one written
	cols    map[string]int // column by metric
	names   []string       // metric by column, in the order they came
	absent  []bool         // by column: the last sample lacked it
	n       int            // samples in chunks
	total   int            // samples ever appended
	shape   uint64         // changes when a sample's set of metrics differs from the last one's
	last    Sample         // newest sample, shared read-only
	places  Places         // the columns of the last sample's names
	nabsent int            // columns true in absent
	arrived time.Time      // when last was appended, by the store's clock, its monotonic reading kept; zero: it came from before this run (Store.AppendPast)
}

// A chunk is up to chunkLen consecutive samples of a source, with a value
// (or a missing one) of each of its first width columns.
type chunk struct {
	n        int       // samples
	oldest   int64     // the least of their times
	newest   int64     // the greatest
	unsorted bool      // a time is before the one appended before it (a clock set back)
	width    int       // the source's columns when it began
	ts       []int64   // while open: unix nanoseconds of each sample
	raw      []float64 // while open: width values a sample, row after row
	offs     []uint32  // once sealed, per column: where its stream starts in data
	counts   []uint16  // once sealed, per column: values that are not missing
	data     []byte    // once sealed: the times (appendTimes), then the columns' streams
}

// sealing is what sealing a chunk works in: one for a Store, whose write
// lock serialises appends.
type sealing struct {
	enc valueStream
	buf []byte
}

// A limit is what a source keeps: its newest capacity samples, of those
// less than retention older than its last one. A source sampled at the
// store's interval reaches both together; one sampled less often (a
// hub's upstream/<name>, every 5s) keeps the retention's time, not the
// capacity's count, which was five times as long.
type limit struct {
	capacity  int
	retention int64 // nanoseconds
	now       func() time.Time
}

// cutoff is the time at or before which a sample is beyond the retention:
// the retention before the last sample appended, or before now when that
// is earlier. Not the greatest time, so that a clock set back does not
// hide what comes after it; and not a time ahead of now, so that a clock
// set forward for a moment (an agent's, whose times the hub keeps) does
// not take the source's ten minutes with it.
func (s *sourceRings) cutoff(lim limit) int64 {
	if s.total == 0 {
		return math.MinInt64
	}
	return min(s.last.Time.UnixNano(), lim.now().UnixNano()) - lim.retention
}

// chunkLen is how many samples a chunk holds for a ring of the capacity:
// a twentieth of it, so at most a twentieth more is held than asked, and
// the open chunk's rows (eight bytes a value) are a twentieth of the
// ring; within bounds that keep the per-chunk cost small. (A tenth held
// a hub of 1,000 hosts' open rows in 31 MB of its heap.)
func chunkLen(capacity int) int { return min(max(capacity/20, 8), 240) }

// append records a sample. shapes counts the shapes of every source of
// the store, so that no number is the shape of two.
func (s *sourceRings) append(smp Sample, lim limit, shapes *uint64, w *sealing) {
	per := chunkLen(lim.capacity)
	c := s.head(per, w)
	cols, have := s.places.Of(smp.Metrics.names, s.cols)
	changed := s.row(c, cols, have, smp.Metrics.values)
	if have < smp.Metrics.Len() { // metrics new to the source
		c.raw = c.raw[:len(c.raw)-c.width] // the row goes to a chunk that has their places
		for i, name := range smp.Metrics.Names().List() {
			if cols[i] < 0 {
				s.cols[name] = len(s.names)
				s.names = append(s.names, name)
				s.absent = append(s.absent, true)
				s.nabsent++
			}
		}
		s.places.Forget()
		if c.n > 0 {
			ts, raw := s.seal(c, w)
			c = s.open(per, ts, raw)
		} else {
			c.width, c.raw = len(s.names), make([]float64, 0, per*len(s.names))
		}
		cols, have := s.places.Of(smp.Metrics.names, s.cols)
		s.row(c, cols, have, smp.Metrics.values)
		changed = true
	}
	t := smp.Time.UnixNano()
	if c.n == 0 || t > c.newest {
		c.newest = t
	}
	if c.n == 0 || t < c.oldest {
		c.oldest = t
	}
	if c.n > 0 && t < c.ts[c.n-1] {
		c.unsorted = true
	}
	c.ts = append(c.ts, t)
	c.n++
	if changed {
		*shapes++
		s.shape = *shapes
	}
	s.total++
	s.n++
	s.last = smp
	// The oldest chunk goes once the ones after it hold the capacity, or
	// once all of it is beyond the retention.
	// (The clock is read only when the chunk is beyond the retention
	// before the last sample, which the cutoff never comes after.)
	for len(s.chunks) > 1 && (s.n-s.chunks[0].n >= lim.capacity ||
		s.chunks[0].newest <= t-lim.retention && s.chunks[0].newest <= s.cutoff(lim)) {
		s.n -= s.chunks[0].n
		s.chunks = append(s.chunks[:0], s.chunks[1:]...)
	}
}

// row writes a sample's values as the chunk's next row, by their columns
// (cols, have of which are columns: Places.Of), and says whether a
// column's presence differs from the last sample's.
func (s *sourceRings) row(c *chunk, cols []int32, have int, values []float64) (changed bool) {
	at := len(c.raw)
	c.raw = c.raw[:at+c.width]
	row := c.raw[at:]
	whole := have == c.width
	if !whole {
		for i := range row {
			row[i] = missing
		}
	}
	for i, col := range cols {
		if col >= 0 {
			row[col] = values[i]
		}
	}
	if whole && s.nabsent == 0 {
		return false
	}
	for i, v := range row {
		if absent := isMissing(v); s.absent[i] != absent {
			s.absent[i], changed = absent, true
			if absent {
				s.nabsent++
			} else {
				s.nabsent--
			}
		}
	}
	return changed
}

// head returns the chunk to write the next sample in: the last one, or a
// new one when it is full (sealing the full one).
func (s *sourceRings) head(per int, w *sealing) *chunk {
	var ts []int64
	var raw []float64
	if len(s.chunks) > 0 {
		c := s.chunks[len(s.chunks)-1]
		if c.raw != nil && c.n < per {
			return c
		}
		if c.raw != nil {
			ts, raw = s.seal(c, w)
		}
	}
	return s.open(per, ts, raw)
}

// open starts a chunk, in the arrays of the one just sealed when they
// are large enough.
func (s *sourceRings) open(per int, ts []int64, raw []float64) *chunk {
	if cap(ts) < per {
		ts = make([]int64, 0, per)
	}
	width := len(s.names)
	if raw == nil || cap(raw) < per*width { // non-nil, even for no columns: a nil raw is a sealed chunk
		raw = make([]float64, 0, per*width)
	}
	c := &chunk{ts: ts[:0], width: width, raw: raw[:0]}
	s.chunks = append(s.chunks, c)
	return c
}

// seal compresses the chunk's times and its rows' columns into one
// slice, and returns the arrays it held them in, for the next chunk.
func (s *sourceRings) seal(c *chunk, w *sealing) (ts []int64, raw []float64) {
	w.buf = appendTimes(w.buf[:0], c.ts)
	c.offs, c.counts = make([]uint32, c.width), make([]uint16, c.width)
	for col := range c.width {
		w.enc.reset()
		for j := col; j < len(c.raw); j += c.width {
			w.enc.push(c.raw[j])
			if !isMissing(c.raw[j]) {
				c.counts[col]++
			}
		}
		c.offs[col] = uint32(len(w.buf))
		w.buf = append(w.buf, w.enc.b...)
	}
	c.data = slices.Clone(w.buf)
	ts, raw = c.ts, c.raw
	c.ts, c.raw = nil, nil
	return ts, raw
}

// each calls fn with a column's values in the chunk and their times, the
// j-th sample's first; false when the chunk has no place for the column.
func (c *chunk) each(col int, fn func(j int, t int64, v float64)) bool {
	if col >= c.width {
		return false
	}
	if c.raw != nil {
		for j, t := range c.ts {
			fn(j, t, c.raw[j*c.width+col])
		}
		return true
	}
	end := uint32(len(c.data))
	if col+1 < len(c.offs) {
		end = c.offs[col+1]
	}
	st := valueStream{b: c.data[c.offs[col]:end], n: uint16(c.n)}
	r := valueReader{s: &st}
	times := timeReader{b: c.data}
	for j := range c.n {
		v, _ := r.next()
		fn(j, times.next(), v)
	}
	return true
}

// appendSince appends a column's points at or after since among those
// the limit keeps, in the order they were taken: oldest first, unless the
// source's clock was set back (AppendRange sorts them). The open chunk's
// rows are read back from its newest to the first before since: a
// second's read (the evaluator's, each step) touches a row, not the
// chunk. (Unless a clock was set back in it: then each row's time is
// looked at.)
func (s *sourceRings) appendSince(dst []Point, col int, since time.Time, lim limit) []Point {
	skip := s.n - lim.capacity // samples beyond the capacity, in the oldest chunk
	sinceNs := max(since.UnixNano(), s.cutoff(lim)+1)
	for _, c := range s.chunks {
		switch {
		case c.newest < sinceNs: // a chunk before the window is not read
		case c.raw != nil && col < c.width: // the open chunk's rows: from the first at or after since
			j := c.n
			for j > max(skip, 0) && (c.ts[j-1] >= sinceNs || c.unsorted) {
				j--
			}
			for ; j < c.n; j++ {
				if v := c.raw[j*c.width+col]; !isMissing(v) && c.ts[j] >= sinceNs {
					dst = append(dst, Point{T: time.Unix(0, c.ts[j]), V: v})
				}
			}
		default:
			c.each(col, func(j int, t int64, v float64) {
				if j >= skip && !isMissing(v) && t >= sinceNs {
					dst = append(dst, Point{T: time.Unix(0, t), V: v})
				}
			})
		}
		skip -= c.n
	}
	return dst
}

// since is about how many samples are at or after a time: those of the
// chunks that reach it, at most the capacity.
func (s *sourceRings) since(t time.Time, lim limit) int {
	n, ns := 0, max(t.UnixNano(), s.cutoff(lim)+1)
	for _, c := range s.chunks {
		if c.newest >= ns {
			n += c.n
		}
	}
	return min(n, lim.capacity)
}

// size is the memory the source's samples take, about.
func (s *sourceRings) size() int {
	n := 0
	for _, c := range s.chunks {
		n += int(unsafe.Sizeof(*c)) + 8 + 8*cap(c.ts) + 8*cap(c.raw) + 6*cap(c.offs) + cap(c.data)
	}
	return n + 40*len(s.names)
}

// count is how many values a column has among the samples the limit
// keeps, and the newest of them. Only the chunks that need it are read:
// the open one, the oldest when part of it is beyond the limit, and for
// the newest value the newest chunk that has one; the sealed chunks'
// counts were kept when they were sealed.
func (s *sourceRings) count(col int, lim limit) (n int, last Point) {
	skip := s.n - lim.capacity // samples beyond the capacity, in the oldest chunk
	cut := s.cutoff(lim)
	for _, c := range s.chunks {
		switch {
		case col >= c.width:
		case c.raw == nil && skip <= 0 && c.oldest > cut:
			n += int(c.counts[col])
		default:
			c.each(col, func(j int, t int64, v float64) {
				if j >= skip && !isMissing(v) && t > cut {
					n++
				}
			})
		}
		skip -= c.n
	}
	// With a value held, the newest is held too.
	after := 0 // samples in the chunks after the one read
	for i := len(s.chunks) - 1; i >= 0 && n > 0 && last.T.IsZero(); i-- {
		c := s.chunks[i]
		skip := c.n + after - lim.capacity
		c.each(col, func(j int, t int64, v float64) {
			if j >= skip && !isMissing(v) && t > cut {
				last = Point{T: time.Unix(0, t), V: v}
			}
		})
		after += c.n
	}
	return n, last
}
