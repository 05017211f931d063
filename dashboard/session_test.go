package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"vigil/stream"
)

// countingWriter counts the writes to a response.
type countingWriter struct {
	*httptest.ResponseRecorder
	writes int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(b)
}

// A batch of a stream is written to its response in two pieces — its
// first frame as it comes, the rest at the flush — in order, a position
// included, so that a replay's or a backlog's batch is not sent a few
// frames a system call; a stream of lone events keeps no buffer.
func TestStreamWritesABatchInOnePiece(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	var evs []*stream.Event
	for i := range 30 {
		ev, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]int{"i": i}})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	w := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
	h := &httpStream{s: &Server{}, w: w, via: viaSSE}
	h.rc = http.NewResponseController(w)
	var want bytes.Buffer
	for _, ev := range evs {
		if err := h.write(ev); err != nil {
			t.Fatal(err)
		}
		want.Write(ev.Frame())
	}
	if err := h.position(30); err != nil {
		t.Fatal(err)
	}
	want.WriteString("id: 30\n\n")
	if err := h.flush(false); err != nil {
		t.Fatal(err)
	}
	if w.writes != 2 {
		t.Errorf("a batch of 31 frames in %d writes, want 2", w.writes)
	}
	if got := w.Body.String(); got != want.String() {
		t.Fatalf("the batch as written:\n%s\nwant\n%s", got, want.String())
	}
	if h.queued != nil {
		t.Errorf("a stream caught up keeps %d bytes of queue", cap(h.queued))
	}
	quiet := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
	h = &httpStream{s: &Server{}, w: quiet, via: viaSSE}
	h.rc = http.NewResponseController(quiet)
	for _, ev := range evs[:3] {
		h.write(ev)
		h.flush(false)
	}
	if quiet.writes != 3 || h.queued != nil {
		t.Errorf("three lone events in %d writes, with %d bytes of queue", quiet.writes, cap(h.queued))
	}
}

// flushLog records, at each flush of a response, when it was and how many
// samples it carried.
type flushLog struct {
	*httptest.ResponseRecorder
	mu      sync.Mutex
	start   time.Time
	sent    int // body bytes flushed so far
	flushes []flushed
}

type flushed struct {
	at      time.Duration // since start
	samples int
}

func (f flushed) String() string { return fmt.Sprintf("%d at %s", f.samples, f.at) }

func (f *flushLog) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ResponseRecorder.Write(b)
}

func (f *flushLog) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	body := f.Body.String()
	if n := strings.Count(body[f.sent:], "event: sample\n"); n > 0 {
		f.flushes = append(f.flushes, flushed{time.Since(f.start), n})
	}
	f.sent = len(body)
}

func (f *flushLog) took() []flushed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]flushed(nil), f.flushes...)
}

// A client sent events faster than the write delay gets them gathered,
// a write a delay rather than one an event; an event after a quiet spell
// is written at once, and with no delay every event is.
func TestStreamGathersEventsWithinTheWriteDelay(t *testing.T) {
	for _, tc := range []struct {
		delay time.Duration
		want  []flushed
	}{
		{20 * time.Millisecond, []flushed{
			{0, 1},                      // alone: at once
			{20 * time.Millisecond, 10}, // 1 to 10 ms after it: at the delay's end, together
			{2 * time.Second, 1},        // after a quiet spell: at once
		}},
		{0, append(append([]flushed{{0, 1}}, func() (f []flushed) {
			for i := range 10 {
				f = append(f, flushed{time.Duration(i+1) * time.Millisecond, 1})
			}
			return f
		}()...), flushed{2 * time.Second, 1})},
	} {
		t.Run(tc.delay.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := stream.NewHub(stream.HubOptions{FirstID: 1})
				defer hub.Close()
				s := New(Options{Hub: hub, WriteDelay: tc.delay, Loopback: true})
				ctx, cancel := context.WithCancel(t.Context())
				w := &flushLog{ResponseRecorder: httptest.NewRecorder(), start: time.Now()}
				done := make(chan struct{})
				go func() {
					defer close(done)
					s.handleEvents(w, httptest.NewRequestWithContext(ctx, "GET", "/events", nil))
				}()
				synctest.Wait()
				publish := func() {
					if _, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]int{"x": 1}}); err != nil {
						t.Fatal(err)
					}
				}
				publish()
				for range 10 {
					time.Sleep(time.Millisecond)
					publish()
				}
				time.Sleep(2*time.Second - 10*time.Millisecond)
				publish()
				synctest.Wait()
				cancel()
				<-done
				got := w.took()
				if len(got) != len(tc.want) {
					t.Fatalf("flushes (at, samples) %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("flushes (at, samples) %v, want %v", got, tc.want)
					}
				}
			})
		})
	}
}
