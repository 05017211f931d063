package collector

import (
	"testing"
	"time"
)

func TestRingWrapAround(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		cap    int
		pushes int
		want   []float64 // values left, oldest first
	}{
		{"empty", 3, 0, nil},
		{"partly filled", 3, 2, []float64{0, 1}},
		{"exactly full", 3, 3, []float64{0, 1, 2}},
		{"wrapped once", 3, 4, []float64{1, 2, 3}},
		{"wrapped many times", 3, 10, []float64{7, 8, 9}},
		{"capacity one", 1, 5, []float64{4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRing(tt.cap)
			for i := range tt.pushes {
				r.Push(t0.Add(time.Duration(i)*time.Second), float64(i))
			}
			got := r.AppendSince(nil, time.Time{})
			if len(got) != len(tt.want) || r.Len() != len(tt.want) {
				t.Fatalf("got %d points (Len %d), want %d", len(got), r.Len(), len(tt.want))
			}
			for i, p := range got {
				if p.V != tt.want[i] || !p.T.Equal(t0.Add(time.Duration(tt.want[i])*time.Second)) {
					t.Errorf("point %d = %v at %v, want %v", i, p.V, p.T, tt.want[i])
				}
			}
			last, ok := r.Last()
			if ok != (len(tt.want) > 0) || (ok && last.V != tt.want[len(tt.want)-1]) {
				t.Errorf("Last() = %v, %v", last, ok)
			}
		})
	}
}

func TestRingAppendSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRing(5)
	for i := range 8 { // holds 3..7
		r.Push(t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	got := r.AppendSince(nil, t0.Add(5*time.Second))
	if len(got) != 3 || got[0].V != 5 || got[2].V != 7 {
		t.Fatalf("since 5s: got %v", got)
	}
	if got := r.AppendSince(nil, t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("since the future: got %v", got)
	}
}

func TestRingPushDoesNotAllocate(t *testing.T) {
	r := NewRing(600)
	now := time.Unix(1000, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		r.Push(now, 1.5)
	})
	if allocs != 0 {
		t.Fatalf("Push allocates %v times per call", allocs)
	}
}

func TestStoreAppendSteadyStateDoesNotAllocate(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	m := map[string]float64{"cpu.percent": 1, "mem.used_percent": 2}
	now := time.Unix(1000, 0)
	s.Append(Sample{Source: "host/a", Time: now, Metrics: m})
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Second)
		s.Append(Sample{Source: "host/a", Time: now, Metrics: m})
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %v times per call once the series exist", allocs)
	}
}

func TestStoreCapacityAndSplitPath(t *testing.T) {
	s := NewStore(10*time.Minute, time.Second)
	if s.Capacity() != 600 {
		t.Fatalf("capacity = %d, want 600 (10m at 1s)", s.Capacity())
	}
	now := time.Unix(1000, 0)
	s.Append(Sample{Source: "host/web-1", Time: now, Metrics: map[string]float64{"cpu.percent": 1, "fs.used_bytes{mount=/var/lib}": 2}})
	s.Append(Sample{Source: "host/web", Time: now, Metrics: map[string]float64{"1/cpu.percent": 3}})
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
