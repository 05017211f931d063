package collector

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"vigil/stream"
)

// instantSource records when it is collected and keeps the function that
// triggers it.
type instantSource struct {
	name    string
	mu      sync.Mutex
	at      []time.Time
	trigger func()
}

func (s *instantSource) Name() string { return s.name }
func (s *instantSource) Instant()     {}
func (s *instantSource) Trigger(collect func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trigger = collect
}
func (s *instantSource) Collect(context.Context) (map[string]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, time.Now())
	return map[string]float64{"x": 1}, nil
}
func (s *instantSource) collected() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// Instant sources, sampled together on one goroutine, are each collected
// once an interval, exactly an interval apart, at phases spread over the
// interval rather than all in one instant; a trigger collects one at
// once; a source removed is collected no more once Remove returns, and
// one added after Run is sampled like the others.
func TestInstantSourcesTickedTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		hub := stream.NewHub(stream.HubOptions{FirstID: 1})
		defer hub.Close()
		var srcs []*instantSource
		var sources []Source
		for i := range 40 {
			src := &instantSource{name: fmt.Sprintf("upstream/agent-%d", i)}
			srcs, sources = append(srcs, src), append(sources, src)
		}
		s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: sources, Interval: time.Second}
		start := time.Now()
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		phases := map[time.Duration]bool{}
		for _, src := range srcs {
			at := src.collected()
			if first := at[0].Sub(start); first < time.Second || first >= 2*time.Second {
				t.Errorf("%s first collected %s after the start, want an interval on, at its phase", src.name, first)
			}
			if want := 1 + int(time.Since(at[0])/time.Second); len(at) != want {
				t.Fatalf("%s collected %d times in 10 s from %s, want %d: once a second", src.name, len(at), at[0].Sub(start), want)
			}
			for i := 1; i < len(at); i++ {
				if d := at[i].Sub(at[i-1]); d != time.Second {
					t.Fatalf("%s collected %s after its collect before, want 1s", src.name, d)
				}
			}
			phases[time.Duration(at[0].UnixNano()%int64(time.Second))] = true
		}
		if len(phases) < 5 {
			t.Errorf("40 sources collected at %d instants of the second, want them spread over its %d slots", len(phases), time.Second/instantSlot)
		}

		time.Sleep(instantSlot / 3) // between two slots
		srcs[0].mu.Lock()
		trigger := srcs[0].trigger
		srcs[0].mu.Unlock()
		poked := time.Now()
		trigger()
		synctest.Wait()
		if at := srcs[0].collected(); !at[len(at)-1].Equal(poked) {
			t.Errorf("triggered at %s: collected last at %v, want at once", poked.Sub(start), at[len(at)-1].Sub(start))
		}

		s.Remove(srcs[1].name)
		removed := len(srcs[1].collected())
		late := &instantSource{name: "upstream/late"}
		if !s.Add(late) {
			t.Fatal("a source added while running was refused")
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if n := len(srcs[1].collected()); n != removed {
			t.Errorf("a removed source collected %d times more", n-removed)
		}
		if n := len(late.collected()); n < 2 || n > 3 {
			t.Errorf("a source added while running collected %d times in 4 s, want 2 or 3", n)
		}
		cancel()
		<-done
	})
}
