package collector

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestStoreKeepsTheNewestCapacityPoints(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		cap    int // seconds of retention at 1s
		pushes int
		want   []float64 // values left, oldest first
	}{
		{"empty", 3, 0, nil},
		{"partly filled", 3, 2, []float64{0, 1}},
		{"exactly full", 3, 3, []float64{0, 1, 2}},
		{"wrapped once", 3, 4, []float64{1, 2, 3}},
		{"wrapped many times", 3, 10, []float64{7, 8, 9}},
		{"capacity one", 1, 5, []float64{4}},
		{"many chunks", 50, 1000, seq(950, 1000)},
		{"on a chunk's edge", 80, 168, seq(88, 168)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(time.Duration(tt.cap)*time.Second, time.Second)
			for i := range tt.pushes {
				s.Append(Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: MetricsOf(map[string]float64{"x": float64(i)})})
			}
			got, ok := s.Range("host/a", "x", time.Time{})
			if ok != (tt.pushes > 0) || len(got) != len(tt.want) {
				t.Fatalf("got %d points (%v), want %d", len(got), ok, len(tt.want))
			}
			for i, p := range got {
				if p.V != tt.want[i] || !p.T.Equal(t0.Add(time.Duration(tt.want[i])*time.Second)) {
					t.Errorf("point %d = %v at %v, want %v", i, p.V, p.T, tt.want[i])
				}
			}
			if tt.pushes > 0 {
				info := s.Series()[0]
				if info.Points != len(tt.want) || info.Last != tt.want[len(tt.want)-1] {
					t.Errorf("Series() = %+v, want %d points, last %v", info, len(tt.want), tt.want[len(tt.want)-1])
				}
			}
		})
	}
}

func seq(from, to int) []float64 {
	var out []float64
	for i := from; i < to; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestStoreRangeSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := NewStore(5*time.Second, time.Second)
	for i := range 8 { // holds 3..7
		s.Append(Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: MetricsOf(map[string]float64{"x": float64(i)})})
	}
	got, _ := s.Range("host/a", "x", t0.Add(5*time.Second))
	if len(got) != 3 || got[0].V != 5 || got[2].V != 7 {
		t.Fatalf("since 5s: got %v", got)
	}
	if got, _ := s.Range("host/a", "x", t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("since the future: got %v", got)
	}
	// Chunks of 10: a window that starts within one, after others.
	s = NewStore(100*time.Second, time.Second)
	for i := range 250 {
		s.Append(Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: MetricsOf(map[string]float64{"x": float64(i)})})
	}
	for _, from := range []int{0, 150, 200, 205, 249} {
		got, _ := s.Range("host/a", "x", t0.Add(time.Duration(from)*time.Second))
		want := seq(max(from, 150), 250)
		if len(got) != len(want) || got[0].V != want[0] || got[len(got)-1].V != 249 {
			t.Fatalf("since %ds: %d points from %v, want %d from %v", from, len(got), got[0].V, len(want), want[0])
		}
	}
}

// TestStoreMetricsThatComeAndGo: a source's samples need not all have the
// same metrics — one that appears later starts its series there, one
// that leaves a sample has no point at that time, and the values read
// back are exactly those written, whatever they are.
func TestStoreMetricsThatComeAndGo(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := NewStore(100*time.Second, time.Second) // chunks of 10
	rng := rand.New(rand.NewPCG(1, 2))
	values := []float64{0, math.Copysign(0, -1), 1, -1, 1e300, -1e-300, math.SmallestNonzeroFloat64, math.MaxFloat64, 42, 42, 42}
	want := map[string][]Point{}
	order := []string{"always", "later", "sometimes", "constant"}
	for i := range 250 {
		m := map[string]float64{}
		if rng.IntN(5) == 0 { // an agent sends its names in its own order, which may change
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		var names []string
		var vs []float64
		for _, name := range order {
			switch {
			case name == "later" && i < 137, name == "sometimes" && rng.IntN(3) == 0:
				continue
			}
			v := values[rng.IntN(len(values))]
			if name == "always" {
				v = rng.NormFloat64() * 1e6
			} else if name == "constant" {
				v = 17.25
			}
			m[name] = v
			names, vs = append(names, name), append(vs, v)
		}
		at := t0.Add(time.Duration(i) * time.Second)
		s.Append(Sample{Source: "host/a", Time: at, Metrics: MetricsIn(names, vs)})
		for name, v := range m {
			want[name] = append(want[name], Point{T: at, V: v})
		}
	}
	cut := t0.Add(150 * time.Second) // the newest 100 samples
	for name, pts := range want {
		var keep []Point
		for _, p := range pts {
			if !p.T.Before(cut) {
				keep = append(keep, p)
			}
		}
		got, ok := s.Range("host/a", name, time.Time{})
		if !ok || len(got) != len(keep) {
			t.Fatalf("%s: %d points, want %d", name, len(got), len(keep))
		}
		for i := range keep {
			if !got[i].T.Equal(keep[i].T) || math.Float64bits(got[i].V) != math.Float64bits(keep[i].V) {
				t.Fatalf("%s point %d = %v, want %v", name, i, got[i], keep[i])
			}
		}
		// The listing counts the same points and gives the newest.
		for _, info := range s.Series() {
			if info.Metric == name && (info.Points != len(keep) || !info.LastAt.Equal(keep[len(keep)-1].T) || math.Float64bits(info.Last) != math.Float64bits(keep[len(keep)-1].V)) {
				t.Fatalf("Series() for %s: %+v, want %d points, last %v", name, info, len(keep), keep[len(keep)-1])
			}
		}
	}
}

// TestStoreCompresses: points take less than the sixteen bytes a plain
// time and value would: a constant under two bytes (a bit for its value,
// the rest its share of the sample's time, of its chunk and of the open
// chunk's rows, eight bytes a value for a twentieth of the ring), a value
// wandering at random in three decimals under five.
func TestStoreCompresses(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Unix(1000, 0)
	for i := range 1200 {
		constant, noisy := map[string]float64{}, map[string]float64{}
		for k := range 20 {
			constant[fmt.Sprintf("fs.size_bytes{mount=/%d}", k)] = float64(int64(1) << (20 + k))
			noisy[fmt.Sprintf("cpu.percent{core=%d}", k)] = math.Round(rng.Float64()*100000) / 1000
		}
		at := t0.Add(time.Duration(i) * time.Second)
		s.Append(Sample{Source: "host/constant", Time: at, Metrics: MetricsOf(constant)})
		s.Append(Sample{Source: "host/noisy", Time: at, Metrics: MetricsOf(noisy)})
	}
	for source, most := range map[string]float64{"host/constant": 2, "host/noisy": 5} {
		s.mu.RLock()
		src := s.sources[source]
		per := float64(src.size()) / float64(20*src.n)
		s.mu.RUnlock()
		if per > most {
			t.Errorf("%s: %.2f bytes a point, want at most %v", source, per, most)
		}
		t.Logf("%s: %.2f bytes a point", source, per)
	}
}

func TestStoreAppendSteadyStateHardlyAllocates(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	m := MetricsOf(map[string]float64{"cpu.percent": 1, "mem.used_percent": 2})
	now := time.Unix(1000, 0)
	s.Append(Sample{Source: "host/a", Time: now, Metrics: m})
	allocs := testing.AllocsPerRun(6000, func() {
		now = now.Add(time.Second)
		s.Append(Sample{Source: "host/a", Time: now, Metrics: m})
	})
	if allocs > 0.1 { // a chunk of 60 samples: its few slices
		t.Fatalf("Append allocates %v times per call once the series exist", allocs)
	}
}

func TestStoreCapacityAndSplitPath(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	if s.Capacity() != 600 {
		t.Fatalf("capacity = %d, want 600 (10m at 1s)", s.Capacity())
	}
	now := time.Unix(1000, 0)
	s.Append(Sample{Source: "host/web-1", Time: now, Metrics: MetricsOf(map[string]float64{"cpu.percent": 1, "fs.used_bytes{mount=/var/lib}": 2})})
	s.Append(Sample{Source: "host/web", Time: now, Metrics: MetricsOf(map[string]float64{"1/cpu.percent": 3})})
	tests := []struct {
		path           string
		source, metric string
		ok             bool
	}{
		{"host/web-1/cpu.percent", "host/web-1", "cpu.percent", true},
		{"host/web-1/fs.used_bytes{mount=/var/lib}", "host/web-1", "fs.used_bytes{mount=/var/lib}", true},
		{"host/web/1/cpu.percent", "host/web", "1/cpu.percent", true},
		{"host/web-1/nope", "", "", false},
		{"host/web-2/cpu.percent", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		src, metric, ok := s.SplitSeriesPath(tt.path)
		if src != tt.source || metric != tt.metric || ok != tt.ok {
			t.Errorf("SplitSeriesPath(%q) = %q, %q, %v; want %q, %q, %v", tt.path, src, metric, ok, tt.source, tt.metric, tt.ok)
		}
	}
	pts, ok := s.Range("host/web-1", "cpu.percent", now)
	if !ok || len(pts) != 1 || pts[0].V != 1 {
		t.Fatalf("Range = %v, %v", pts, ok)
	}
	if series := s.Series(); len(series) != 3 || series[0].Source != "host/web" {
		t.Fatalf("Series() = %+v", series)
	}
}

// TestStoreShape: a source's Shape changes when, and only when, a sample
// has other metrics than the one before — and never comes back to a
// number it had, even for a source removed and added again.
func TestStoreShape(t *testing.T) {
	s := NewStore(time.Minute, time.Second)
	t0 := time.Unix(1000, 0)
	add := func(i int, names ...string) uint64 {
		m := map[string]float64{}
		for _, n := range names {
			m[n] = float64(i)
		}
		s.Append(Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: MetricsOf(m)})
		return s.Shape("host/a")
	}
	seen := map[uint64]bool{}
	a := add(0, "x", "y")
	seen[a] = true
	if add(1, "x", "y") != a {
		t.Fatal("the same metrics: the shape changed")
	}
	for i, names := range [][]string{{"x"}, {"x", "y"}, {"x", "z"}, {"x", "y", "z"}} {
		sh := add(i+2, names...)
		if seen[sh] {
			t.Fatalf("sample %d (%v): shape %d again", i+2, names, sh)
		}
		seen[sh] = true
	}
	s.Remove("host/a")
	if sh := add(9, "x", "y", "z"); seen[sh] {
		t.Fatalf("removed and back: shape %d again", sh)
	}
}

// TestStoreKeepsTheRetentionOfSlowerSources: a source sampled less often
// than the store's interval (a hub's upstream/<name>, every 5s) keeps the
// retention's time, not the capacity's count: at 5s, 600 points were 50
// minutes, five times what a hub was asked to keep, and what a hub of
// 1,000 agents held grew for most of an hour after its start.
func TestStoreKeepsTheRetentionOfSlowerSources(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	t0 := time.Unix(1000, 0)
	var last time.Time
	for i := range 720 { // an hour at 5s
		last = t0.Add(time.Duration(i) * 5 * time.Second)
		s.Append(Sample{Source: "upstream/a", Time: last, Metrics: MetricsOf(map[string]float64{"upstream.up": 1, "upstream.lag_seconds": float64(i % 7)})})
	}
	pts, _ := s.Range("upstream/a", "upstream.lag_seconds", time.Time{})
	if len(pts) != 120 || !pts[0].T.Equal(last.Add(-595*time.Second)) || !pts[len(pts)-1].T.Equal(last) {
		t.Fatalf("Range: %d points from %v to %v, want 120 from %v (the ten minutes to %v)", len(pts), pts[0].T, pts[len(pts)-1].T, last.Add(-595*time.Second), last)
	}
	for _, info := range s.Series() {
		if info.Points != 120 {
			t.Errorf("Series: %s has %d points, want 120", info.Metric, info.Points)
		}
	}
	s.mu.RLock()
	held := s.sources["upstream/a"].n
	s.mu.RUnlock()
	if held > 120+chunkLen(600) {
		t.Errorf("%d samples held, want at most the retention's 120 and a chunk", held)
	}

	// A clock set back an hour: what comes after is kept and read, in
	// time order (before what came before it).
	back := last.Add(-time.Hour)
	s.Append(Sample{Source: "upstream/a", Time: back, Metrics: MetricsOf(map[string]float64{"upstream.up": 1, "upstream.lag_seconds": 42})})
	if pts, _ := s.Range("upstream/a", "upstream.lag_seconds", back); len(pts) != 121 || pts[0].V != 42 || !pts[0].T.Equal(back) {
		t.Errorf("after the clock was set back: Range from then has %d points, want the sample of then first and the 120 after it", len(pts))
	}
}

// TestStoreClockJumps: a source's times are its own (an agent's clock,
// on a hub). One sample a day ahead does not take the source's minutes
// with it, and a clock set back within the open chunk hides nothing.
func TestStoreClockJumps(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewStore(10*time.Minute, time.Second)
	s.now = func() time.Time { return now }
	add := func(at time.Time, v float64) {
		s.Append(Sample{Source: "host/a", Time: at, Metrics: MetricsOf(map[string]float64{"x": v})})
	}
	for i := range 300 {
		add(now.Add(time.Duration(i-299)*time.Second), float64(i))
	}
	add(now.Add(24*time.Hour), 1000) // a clock a day ahead, for one sample
	now = now.Add(time.Second)
	add(now, 1001)
	pts, _ := s.Range("host/a", "x", time.Time{})
	if len(pts) != 302 || pts[0].V != 0 {
		t.Fatalf("after a sample a day ahead: %d points, the first %v; want the 302 taken", len(pts), pts[0])
	}

	// Set back an hour, then on again, within one chunk.
	s = NewStore(10*time.Minute, time.Second)
	s.now = func() time.Time { return now }
	add(now, 1)
	add(now.Add(-time.Hour), 2)
	add(now.Add(time.Second), 3)
	pts, _ = s.Range("host/a", "x", time.Time{})
	info := s.Series()[0]
	if len(pts) != 2 || pts[0].V != 1 || pts[1].V != 3 || info.Points != 2 || info.Last != 3 {
		t.Errorf("a clock set back an hour and on again: Range %v, Series %+v; want the two samples of the ten minutes (1 and 3)", pts, info)
	}

	// Set back fifteen seconds, within the retention: into the open
	// chunk's times and a sealed one's. Range gives the points in time order
	// (a chart draws them as they are given).
	s = NewStore(10*time.Minute, time.Second)
	s.now = func() time.Time { return now }
	var want []time.Time
	for i := range 40 { // the first chunk (30) sealed, ten in the next
		at := now.Add(time.Duration(i-40) * time.Second)
		add(at, float64(i))
		want = append(want, at)
	}
	for i := range 8 { // then the clock goes back 15 s and on
		at := now.Add(time.Duration(i-15)*time.Second - 500*time.Millisecond)
		add(at, float64(100+i))
		want = append(want, at)
	}
	slices.SortFunc(want, time.Time.Compare)
	pts, _ = s.Range("host/a", "x", time.Time{})
	var got []time.Time
	for _, p := range pts {
		got = append(got, p.T)
	}
	if !slices.Equal(got, want) {
		t.Errorf("a clock set back fifteen seconds: Range's times\n%v\nwant them in order\n%v", got, want)
	}

	// Set back an hour for one sample, then on again without the metric:
	// the series' last value is the newest of those it counts, not the
	// one beyond the retention that came after it.
	s = NewStore(10*time.Minute, time.Second)
	s.now = func() time.Time { return now }
	add(now, 1)
	add(now.Add(-time.Hour), 2)
	s.Append(Sample{Source: "host/a", Time: now.Add(time.Second), Metrics: MetricsOf(map[string]float64{"y": 0})})
	if info := s.Series()[0]; info.Metric != "x" || info.Points != 1 || info.Last != 1 || !info.LastAt.Equal(now) {
		t.Errorf("a sample an hour back, then one without the metric: Series %+v, want x's 1 point, the last 1 at %v", info, now)
	}
}
