package stream

import (
	"fmt"
	"sync"
	"testing"
)

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
