package collector

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzXORStream: any run of values reads back bit for bit.
func FuzzXORStream(f *testing.F) {
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)))
	seed := []byte{}
	for _, v := range []float64{0, 1, 1, 1e300, -1e-300, math.Inf(1), math.NaN(), missing, 60.125, 60.126, 12345678.123} {
		seed = binary.LittleEndian.AppendUint64(seed, math.Float64bits(v))
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s xorStream
		var want []uint64
		for len(b) >= 8 && len(want) < math.MaxUint16 {
			x := binary.LittleEndian.Uint64(b)
			s.push(math.Float64frombits(x))
			want = append(want, x)
			b = b[8:]
		}
		r := xorReader{s: &s}
		for i, x := range want {
			v, ok := r.next()
			if !ok || math.Float64bits(v) != x {
				t.Fatalf("value %d: %x, %v; want %x", i, math.Float64bits(v), ok, x)
			}
		}
		if _, ok := r.next(); ok {
			t.Fatal("a value after the last")
		}
	})
}
