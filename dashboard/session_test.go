package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/stream"
)

// flushLog is a ResponseWriter that notes, at each flush, the time and
// the events flushed since the one before.
type flushLog struct {
	*httptest.ResponseRecorder
	mu      sync.Mutex
	sent    int // bytes of the body flushed so far
	flushes []flushed
}

type flushed struct {
	at     time.Time
	events int // "data:" lines
}

func (f *flushLog) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	body := f.Body.String()
	f.flushes = append(f.flushes, flushed{time.Now(), strings.Count(body[f.sent:], "\ndata:")})
	f.sent = len(body)
}

// eventFlushes returns the flushes that carried events.
func (f *flushLog) eventFlushes() []flushed {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []flushed
	for _, fl := range f.flushes {
		if fl.events > 0 {
			out = append(out, fl)
		}
	}
	return out
}

// A busy SSE stream is flushed at most once a FlushInterval, with every
// event written meanwhile; an event after a quiet spell goes at once.
func TestBusyStreamFlushesAtMostEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Metrics: metrics.NewSet()})
		defer hub.Close()
		srv := New(Options{Hub: hub, Store: collector.NewStore(time.Minute, time.Second), Metrics: metrics.NewSet(),
			Interval: time.Second, FlushInterval: 10 * time.Millisecond, Loopback: true})
		ctx, cancel := context.WithCancel(t.Context())
		w := &flushLog{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/events", nil)
		done := make(chan struct{})
		go func() { defer close(done); srv.ServeHTTP(w, r) }()
		synctest.Wait()
		publish := func() {
			t.Helper()
			if _, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"metrics": map[string]float64{"v": 1}}}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		start := time.Now()

		publish() // quiet before: at once
		if got := w.eventFlushes(); len(got) != 1 || got[0].events != 1 || got[0].at != start {
			t.Fatalf("first event: flushes %+v, want one of one event at once", got)
		}
		for range 5 { // one a millisecond: held until 10 ms after the first flush
			time.Sleep(time.Millisecond)
			publish()
		}
		if got := w.eventFlushes(); len(got) != 1 {
			t.Fatalf("5 events within the interval: %d flushes, want them held", len(got))
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		got := w.eventFlushes()
		if len(got) != 2 || got[1].events != 5 || got[1].at != start.Add(10*time.Millisecond) {
			t.Fatalf("flushes %+v, want the 5 held events in one flush 10ms after the first", got)
		}

		time.Sleep(time.Second) // quiet: the next goes at once
		at := time.Now()
		publish()
		got = w.eventFlushes()
		if len(got) != 3 || got[2].events != 1 || got[2].at != at {
			t.Fatalf("after a quiet second: flushes %+v, want the event flushed at once", got)
		}
		cancel()
		<-done
	})
}
