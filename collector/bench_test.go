package collector

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func BenchmarkRingPush(b *testing.B) {
	r := NewRing(600)
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Push(now.Add(time.Duration(i)*time.Second), float64(i))
	}
}

func BenchmarkStoreAppend(b *testing.B) {
	s := NewStore(10*time.Minute, time.Second)
	m := make(map[string]float64, 40)
	for i := range 40 {
		m[fmt.Sprintf("metric.%d", i)] = float64(i)
	}
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Append(Sample{Source: "host/a", Time: now.Add(time.Duration(i) * time.Second), Metrics: m})
	}
}

// BenchmarkPublish is the cost of one Publish (encoding once and queueing
// for every subscriber), with subscribers that keep up.
func BenchmarkPublish(b *testing.B) {
	metrics := map[string]float64{"cpu.percent": 12.5, "mem.used_percent": 40, "load.1": 0.5}
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := NewHub(HubOptions{Queue: 1 << 16})
			defer h.Close()
			var wg sync.WaitGroup
			for range n {
				s, _ := h.Subscribe(Cursor{}, Filter{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-s.C():
						case <-s.Done():
							return
						}
					}
				}()
			}
			b.ReportAllocs()
			for b.Loop() {
				h.Publish(Message{Type: TypeSample, Source: "host/a", Body: map[string]any{"metrics": metrics}})
			}
			b.StopTimer()
			h.Close()
			wg.Wait()
		})
	}
}

// BenchmarkHostCollect is one real sample of this machine.
func BenchmarkHostCollect(b *testing.B) {
	h, err := NewHost(HostOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	h.Prime(ctx)
	b.ReportAllocs()
	for b.Loop() {
		h.Collect(ctx)
	}
}
