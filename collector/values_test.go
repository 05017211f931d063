package collector

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// FuzzValueStream: any run of values reads back bit for bit.
func FuzzValueStream(f *testing.F) {
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)))
	seed := []byte{}
	for _, v := range []float64{0, 1, 1, 1e300, -1e-300, math.Inf(1), math.NaN(), missing, 60.125, 60.126, 12345678.123} {
		seed = binary.LittleEndian.AppendUint64(seed, math.Float64bits(v))
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s valueStream
		var want []uint64
		for len(b) >= 8 && len(want) < math.MaxUint16 {
			x := binary.LittleEndian.Uint64(b)
			s.push(math.Float64frombits(x))
			want = append(want, x)
			b = b[8:]
		}
		r := valueReader{s: &s}
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

// FuzzValueStreamDecimals: decimals — what the stream is made for, and
// what random bits seldom are — read back bit for bit too: each five bytes
// of the input are a mantissa and a power of ten.
func FuzzValueStreamDecimals(f *testing.F) {
	f.Add([]byte{0x40, 0xe2, 0x01, 0x00, 0xfd, 0x41, 0xe2, 0x01, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x80, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s valueStream
		var want []uint64
		for len(b) >= 5 && len(want) < math.MaxUint16 {
			m, e := int32(binary.LittleEndian.Uint32(b)), int8(b[4])%24
			v, err := strconv.ParseFloat(fmt.Sprintf("%de%d", m, e), 64)
			if err != nil {
				t.Fatal(err)
			}
			if m == 0 && e < 0 {
				v = math.Copysign(0, -1)
			}
			s.push(v)
			want = append(want, math.Float64bits(v))
			b = b[5:]
		}
		r := valueReader{s: &s}
		for i, x := range want {
			v, ok := r.next()
			if !ok || math.Float64bits(v) != x {
				t.Fatalf("value %d: %v (%x), %v; want %v (%x)", i, v, math.Float64bits(v), ok, math.Float64frombits(x), x)
			}
		}
	})
}

// TestValueStreamSizes: what a value costs in the stream, by how it moves.
func TestValueStreamSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name string
		next func(i int) float64
		most float64 // bytes a value
	}{
		{"constant", func(int) float64 { return 17179869184 }, 0.3},
		{"counting seconds", func(i int) float64 { return float64(86400 + i) }, 1.3},
		{"a percent in three decimals, at random", func(int) float64 { return math.Round(rng.Float64()*100000) / 1000 }, 4},
		{"a byte rate in six digits, at random", func(int) float64 {
			v, _ := strconv.ParseFloat(strconv.FormatFloat(5e7*(0.9+0.2*rng.Float64()), 'g', 6, 64), 64)
			return v
		}, 3.5},
		{"thirds, not decimals", func(i int) float64 { return float64(i) / 3 }, 8.5},
	}
	for _, tt := range tests {
		var s valueStream
		for i := range 600 {
			s.push(tt.next(i))
		}
		per := float64(len(s.b)) / 600
		if per > tt.most {
			t.Errorf("%s: %.2f bytes a value, want at most %v", tt.name, per, tt.most)
		}
		t.Logf("%s: %.2f bytes a value", tt.name, per)
	}
}

// TestTimesComeBack: a sealed chunk's times, compressed, come back as
// they were — a second apart with jitter, out of order, equal, at the
// extremes of int64 — and a second apart with a millisecond's jitter
// costs a few bytes a time, not eight.
func TestTimesComeBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	jittered := make([]int64, 30)
	for i := range jittered {
		jittered[i] = 1_764_000_000_000_000_000 + int64(i)*1e9 + rng.Int64N(1e6)
	}
	cases := map[string][]int64{
		"one":          {42},
		"jittered":     jittered,
		"equal":        {7, 7, 7, 7},
		"out of order": {5e9, 3e9, 9e9, -1, 0},
		"extremes":     {math.MinInt64, math.MaxInt64, 0, math.MaxInt64, math.MinInt64, -1},
	}
	for name, ts := range cases {
		b := appendTimes(nil, ts)
		r := timeReader{b: b}
		for i, want := range ts {
			if got := r.next(); got != want {
				t.Fatalf("%s: time %d = %d, want %d", name, i, got, want)
			}
		}
		if r.pos != len(b) {
			t.Errorf("%s: %d of %d bytes read", name, r.pos, len(b))
		}
	}
	if per := float64(len(appendTimes(nil, jittered))) / float64(len(jittered)); per > 4 {
		t.Errorf("a second apart with a millisecond's jitter: %.1f bytes a time, want at most 4", per)
	}
}
