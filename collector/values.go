package collector

import (
	"encoding/binary"
	"math"
	"math/bits"
	"vigil/internal/decimal"
)

// A valueStream holds a run of float64 values compressed for what vigil
// keeps: decimals of a few digits (the scheduler rounds what it collects
// to six significant digits, hosts to three decimals, and agents send
// decimal text). A value that is some integer m over 10^k, for k from
// minScale to maxScale, is kept as the difference of m from the last
// value's at the same scale, in as many bits as that takes: a percent
// that moves each second costs about three bytes, a byte count that grows
// slowly one. A value equal to the last costs a bit; any other value is
// kept whole. Values come back bit for bit.
//
// This is the idea of ALP (Afroozeh et al., "ALP: Adaptive Lossless
// floating-Point Compression", SIGMOD 2024) — most floating-point data
// was decimal first — with Gorilla's one bit for a repeat. The XOR of
// Gorilla itself takes a randomly moving decimal to eight and a half
// bytes: it has no trailing zero bits in binary.
type valueStream struct {
	b     []byte // bits, most significant first
	nbits uint32 // bits written
	n     uint16 // values written

	prev  uint64 // the last value's bits
	m     int64  // the last value at the stream's scale, when it is a decimal
	scale int8   // the stream's scale: values are m / 10^scale
	dec   bool   // the last value was a decimal at the scale
}

// missing marks a sample in which a series had no value: a NaN no
// source sends (they drop non-finite values) and that is never taken for
// one.
var missing = math.Float64frombits(0x7ff8_dead_0000_0001)

func isMissing(v float64) bool { return math.Float64bits(v) == 0x7ff8_dead_0000_0001 }

// The codes before each value.
const (
	codeRepeat = 0b0   // 1 bit: the last value again
	codeDelta  = 0b10  // 2 bits: a decimal at the scale, as a difference
	codeScale  = 0b110 // 3 bits: a decimal at a new scale (5 bits), whole
	codeRaw    = 0b111 // 3 bits: the value's 64 bits
)

// push appends a value.
func (s *valueStream) push(v float64) {
	x := math.Float64bits(v)
	switch {
	case s.n > 0 && x == s.prev:
		s.writeBits(codeRepeat, 1)
	case s.n > 0 && s.dec && s.deltaAtScale(v):
	default:
		if m, k, ok := decimal.Of(v); ok {
			s.writeBits(codeScale, 3)
			s.writeBits(uint64(k-decimal.MinScale), 5)
			s.writeSigned(m)
			s.m, s.scale, s.dec = m, k, true
		} else {
			s.writeBits(codeRaw, 3)
			s.writeBits(x, 64)
			s.dec = false
		}
	}
	s.prev, s.n = x, s.n+1
}

// deltaAtScale writes v as the difference from the last value at the
// stream's scale, when it is a decimal there.
func (s *valueStream) deltaAtScale(v float64) bool {
	m, ok := decimal.At(v, s.scale)
	if !ok {
		return false
	}
	d := m - s.m
	if d > decimal.MaxExact || d < -decimal.MaxExact {
		return false
	}
	s.writeBits(codeDelta, 2)
	s.writeSigned(d)
	s.m = m
	return true
}

// writeSigned writes d zigzag-encoded, after its length in 6 bits.
func (s *valueStream) writeSigned(d int64) {
	z := uint64(d<<1) ^ uint64(d>>63)
	n := uint8(bits.Len64(z)) // at most 55: |d| <= 2^53
	s.writeBits(uint64(n), 6)
	s.writeBits(z, n)
}

// writeBits appends the low n bits of v, most significant first: what
// fits in the last byte, then whole bytes, then the rest.
func (s *valueStream) writeBits(v uint64, n uint8) {
	if n == 0 {
		return
	}
	v &= 1<<n - 1 // all ones for 64
	s.nbits += uint32(n)
	if used := uint8((s.nbits - uint32(n)) % 8); used != 0 {
		room := 8 - used
		if n <= room {
			s.b[len(s.b)-1] |= byte(v << (room - n))
			return
		}
		n -= room
		s.b[len(s.b)-1] |= byte(v >> n)
	}
	for n >= 8 {
		n -= 8
		s.b = append(s.b, byte(v>>n))
	}
	if n > 0 {
		s.b = append(s.b, byte(v<<(8-n)))
	}
}

// reset empties the stream, keeping its buffer.
func (s *valueStream) reset() { *s = valueStream{b: s.b[:0]} }

// A valueReader reads a valueStream's values back in order.
type valueReader struct {
	s     *valueStream
	pos   uint32 // next bit
	i     uint16 // values read
	v     float64
	m     int64
	scale int8
}

func (r *valueReader) readBits(n uint8) uint64 {
	if i := int(r.pos / 8); n <= 56 && i+8 <= len(r.s.b) { // one load: n bits after the pos%8 used ones
		w := binary.BigEndian.Uint64(r.s.b[i:])
		r.pos += uint32(n)
		if n == 0 {
			return 0
		}
		return w << ((r.pos - uint32(n)) % 8) >> (64 - n)
	}
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

func (r *valueReader) readSigned() int64 {
	z := r.readBits(uint8(r.readBits(6)))
	return int64(z>>1) ^ -int64(z&1)
}

// next returns the next value; ok is false after the last.
func (r *valueReader) next() (v float64, ok bool) {
	if r.i >= r.s.n {
		return 0, false
	}
	r.i++
	switch {
	case r.readBits(1) == codeRepeat:
	case r.readBits(1) == 0: // codeDelta
		r.m += r.readSigned()
		r.v = decimal.Value(r.m, r.scale)
	case r.readBits(1) == 0: // codeScale
		r.scale = int8(r.readBits(5)) + decimal.MinScale
		r.m = r.readSigned()
		r.v = decimal.Value(r.m, r.scale)
	default: // codeRaw
		r.v = math.Float64frombits(r.readBits(64))
	}
	return r.v, true
}

// A sealed chunk's times are kept as the first one, then the difference
// of the second from it, then each next difference's change from the one
// before, each a zigzag varint: samples a second apart, give or take a
// little, cost a few bytes a time rather than eight. The arithmetic wraps
// as it is written and read, so any times come back as they were.
func appendTimes(b []byte, ts []int64) []byte {
	var prev, delta int64
	for i, t := range ts {
		switch i {
		case 0:
			b = binary.AppendVarint(b, t)
		default:
			d := t - prev
			b = binary.AppendVarint(b, d-delta)
			delta = d
		}
		prev = t
	}
	return b
}

// A timeReader reads appendTimes's times back in order; the caller reads
// no more than were written.
type timeReader struct {
	b     []byte
	pos   int
	prev  int64
	delta int64
	read  bool
}

func (r *timeReader) next() int64 {
	v, n := binary.Varint(r.b[r.pos:])
	r.pos += n
	if !r.read {
		r.prev, r.read = v, true
		return v
	}
	r.delta += v
	r.prev += r.delta
	return r.prev
}
