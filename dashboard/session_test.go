package dashboard

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"vigil/stream"
)

// recorder is a transport that keeps what was written, and when each
// flush sent it.
type recorder struct {
	written []uint64    // event ids, in order
	flushed []int       // how many were written at each flush
	at      []time.Time // when each flush was
}

func (r *recorder) name() transportName           { return viaSSE }
func (r *recorder) open(*stream.Subscriber) error { return nil }
func (r *recorder) position(uint64) error         { return nil }
func (r *recorder) end(error)                     {}

func (r *recorder) write(ev *stream.Event) error {
	if !ev.IsHeartbeat() {
		r.written = append(r.written, ev.ID)
	}
	return nil
}

func (r *recorder) flush(bool) error {
	r.flushed = append(r.flushed, len(r.written))
	r.at = append(r.at, time.Now())
	return nil
}

// flushedAt is when the n-th event written (from 1) was flushed.
func (r *recorder) flushedAt(n int) (time.Time, bool) {
	for i, k := range r.flushed {
		if k >= n {
			return r.at[i], true
		}
	}
	return time.Time{}, false
}

// A busy stream — a hub's thousand agents each publishing on its own — is
// flushed at most every flushGap, not once an event; a quiet one's event
// goes at once. Every event is sent, none later than flushGap after it
// was published.
func TestBusyStreamsFlushAtMostEveryGap(t *testing.T) {
	for _, tc := range []struct {
		name       string
		apart      time.Duration
		n          int
		maxFlushes int
		maxLate    time.Duration
	}{
		{name: "busy", apart: time.Millisecond, n: 200, maxFlushes: 200/int(flushGap/time.Millisecond) + 2, maxLate: flushGap},
		{name: "quiet", apart: 100 * time.Millisecond, n: 20, maxFlushes: 20, maxLate: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := stream.NewHub(stream.HubOptions{FirstID: 1, Heartbeat: time.Hour})
				defer hub.Close()
				sub, err := hub.Subscribe(stream.Cursor{}, stream.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				rec := &recorder{}
				ss := &session{s: &Server{}, ctx: ctx, t: rec, sub: sub}
				done := make(chan struct{})
				go func() { ss.live(); close(done) }()
				time.Sleep(time.Second) // past the gap after the opening flush

				published := make([]time.Time, tc.n)
				for i := range tc.n {
					if _, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]int{"i": i}}); err != nil {
						t.Fatal(err)
					}
					published[i] = time.Now()
					time.Sleep(tc.apart)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				cancel()
				<-done
				sub.Close()

				if len(rec.written) != tc.n {
					t.Fatalf("%d events written, want %d", len(rec.written), tc.n)
				}
				for i, id := range rec.written {
					if id != uint64(i+1) {
						t.Fatalf("event %d has id %d, want %d", i, id, i+1)
					}
				}
				if len(rec.flushed) > tc.maxFlushes {
					t.Errorf("%d flushes for %d events %s apart, want at most %d", len(rec.flushed), tc.n, tc.apart, tc.maxFlushes)
				}
				for i := range tc.n {
					at, ok := rec.flushedAt(i + 1)
					if !ok {
						t.Fatalf("event %d never flushed (flushes: %v)", i+1, rec.flushed)
					}
					if late := at.Sub(published[i]); late > tc.maxLate {
						t.Errorf("event %d flushed %s after it was published, want at most %s", i+1, late, tc.maxLate)
					}
				}
			})
		})
	}
}

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
// included, so that a busy stream's batch is not sent a few frames a
// system call; a quiet stream's lone event keeps no buffer.
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
