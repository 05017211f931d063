package dashboard

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"vigil/stream"
)

// flushLog is a transport that records when each event was flushed.
type flushLog struct {
	written []uint64
	flushes [][]uint64 // the events of each flush
	at      []time.Time
}

func (f *flushLog) name() transportName           { return viaSSE }
func (f *flushLog) open(*stream.Subscriber) error { return nil }
func (f *flushLog) position(uint64) error         { return nil }
func (f *flushLog) end(error)                     {}
func (f *flushLog) write(ev *stream.Event) error {
	if !ev.IsHeartbeat() {
		f.written = append(f.written, ev.ID)
	}
	return nil
}
func (f *flushLog) flush(bool) error {
	f.flushes = append(f.flushes, f.written)
	f.at = append(f.at, time.Now())
	f.written = nil
	return nil
}

// TestFlushesAreSpaced: a stream of many events a second is flushed at
// most once every FlushInterval — each flush a write to the client's
// socket — and no event waits longer than that; an event after a quiet
// spell goes out at once.
func TestFlushesAreSpaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Millisecond
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 4096})
		defer hub.Close()
		s := New(Options{Hub: hub, FlushInterval: interval})
		ctx, cancel := context.WithCancel(t.Context())
		f := &flushLog{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serve(ctx, f, "", stream.Filter{})
		}()
		synctest.Wait()
		f.flushes, f.at = nil, nil // the opening position

		published := map[uint64]time.Time{}
		publish := func() {
			ev, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a"})
			if err != nil {
				t.Fatal(err)
			}
			published[ev.ID] = time.Now()
		}
		// 200 events a millisecond apart.
		for range 200 {
			publish()
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * interval)
		// A quiet spell, then one event.
		time.Sleep(time.Second)
		publish()
		synctest.Wait()
		cancel()
		<-done

		n := 0
		for i, evs := range f.flushes {
			for _, id := range evs {
				if wait := f.at[i].Sub(published[id]); wait > interval {
					t.Errorf("event %d waited %s for its flush", id, wait)
				}
				n++
			}
			if i > 0 && len(evs) > 0 && f.at[i].Sub(f.at[i-1]) < interval {
				t.Errorf("flushes %d and %d %s apart", i-1, i, f.at[i].Sub(f.at[i-1]))
			}
		}
		if n != 201 {
			t.Fatalf("%d events flushed, want 201", n)
		}
		if len(f.flushes) > 200/10+3 {
			t.Fatalf("%d flushes for 200 events over 200 ms", len(f.flushes))
		}
		last := len(f.at) - 1
		if wait := f.at[last].Sub(published[f.flushes[last][0]]); wait != 0 {
			t.Fatalf("the event after a quiet spell waited %s", wait)
		}
	})
}
