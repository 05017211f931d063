package collector

import (
	"math"
	"math/bits"
)

// An xorStream holds a run of float64 values compressed as Gorilla does
// (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series
// Database", VLDB 2015; Prometheus's XOR chunks are the same): the first
// value whole, then each value XORed with the one before it — a bit when
// they are equal, else only the bits that differ, with the count of
// leading and trailing zero bits when they are not those of the last
// difference. Values come back bit for bit. A host's constants cost a bit
// a sample, a counting value a few bytes, a noisy one about eight and a
// half.
type xorStream struct {
	b     []byte // bits, most significant first
	nbits uint32 // bits written
	n     uint16 // values written
	prev  uint64 // the last value's bits
	lead  uint8  // leading zero bits of the last difference written in full
	trail uint8  // its trailing zero bits; lead+trail == 0xff: none yet
}

// missing marks a sample in which a series had no value: a NaN no
// source sends (they drop non-finite values) and that is never taken for
// one.
var missing = math.Float64frombits(0x7ff8_dead_0000_0001)

func isMissing(v float64) bool { return math.Float64bits(v) == 0x7ff8_dead_0000_0001 }

// writeBits appends the low n bits of v, most significant first.
func (s *xorStream) writeBits(v uint64, n uint8) {
	for n > 0 {
		used := uint8(s.nbits % 8)
		if used == 0 {
			s.b = append(s.b, 0)
		}
		room := 8 - used
		take := min(room, n)
		chunk := byte(v>>(n-take)) & (1<<take - 1)
		s.b[len(s.b)-1] |= chunk << (room - take)
		s.nbits += uint32(take)
		n -= take
	}
}

// push appends a value.
func (s *xorStream) push(v float64) {
	x := math.Float64bits(v)
	s.encode(x)
	s.prev, s.n = x, s.n+1
}

func (s *xorStream) encode(x uint64) {
	if s.n == 0 {
		s.lead, s.trail = 0xff, 0
		s.writeBits(x, 64)
		return
	}
	d := x ^ s.prev
	if d == 0 {
		s.writeBits(0, 1)
		return
	}
	lead, trail := uint8(min(bits.LeadingZeros64(d), 31)), uint8(bits.TrailingZeros64(d))
	if s.lead != 0xff && lead >= s.lead && trail >= s.trail {
		s.writeBits(0b10, 2) // within the last difference's window
		s.writeBits(d>>s.trail, 64-s.lead-s.trail)
		return
	}
	s.lead, s.trail = lead, trail
	sig := 64 - lead - trail // 1..64; 64 is written as 0
	s.writeBits(0b11, 2)
	s.writeBits(uint64(lead), 5)
	s.writeBits(uint64(sig&63), 6)
	s.writeBits(d>>trail, sig)
}

// reset empties the stream, keeping its buffer.
func (s *xorStream) reset() { *s = xorStream{b: s.b[:0]} }

// An xorReader reads an xorStream's values back in order.
type xorReader struct {
	s           *xorStream
	pos         uint32 // next bit
	i           uint16 // values read
	v           uint64
	lead, trail uint8
}

func (r *xorReader) readBits(n uint8) uint64 {
	var v uint64
	for n > 0 {
		used := uint8(r.pos % 8)
		room := 8 - used
		take := min(room, n)
		b := r.s.b[r.pos/8] >> (room - take) & (1<<take - 1)
		v = v<<take | uint64(b)
		r.pos += uint32(take)
		n -= take
	}
	return v
}

// next returns the next value; ok is false after the last.
func (r *xorReader) next() (v float64, ok bool) {
	if r.i >= r.s.n {
		return 0, false
	}
	r.i++
	if r.i == 1 {
		r.v = r.readBits(64)
		return math.Float64frombits(r.v), true
	}
	if r.readBits(1) == 0 {
		return math.Float64frombits(r.v), true
	}
	if r.readBits(1) == 1 {
		r.lead = uint8(r.readBits(5))
		sig := uint8(r.readBits(6))
		if sig == 0 {
			sig = 64
		}
		r.trail = 64 - r.lead - sig
	}
	r.v ^= r.readBits(64-r.lead-r.trail) << r.trail
	return math.Float64frombits(r.v), true
}
