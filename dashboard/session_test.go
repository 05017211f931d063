package dashboard

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
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
		t.Errorf("a stream caught up keeps %d bytes of queue", cap(*h.queued))
	}
	quiet := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
	h = &httpStream{s: &Server{}, w: quiet, via: viaSSE}
	h.rc = http.NewResponseController(quiet)
	for _, ev := range evs[:3] {
		h.write(ev)
		h.flush(false)
	}
	if quiet.writes != 3 || h.queued != nil {
		t.Errorf("three lone events in %d writes, with a queue: %v", quiet.writes, h.queued != nil)
	}
}

// discardWriter is a response that keeps nothing and supports what a
// stream asks of its ResponseController.
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header              { return d.header }
func (discardWriter) Write(b []byte) (int, error)        { return len(b), nil }
func (discardWriter) WriteHeader(int)                    {}
func (discardWriter) FlushError() error                  { return nil }
func (discardWriter) SetWriteDeadline(t time.Time) error { return nil }

// A live stream's events that come together make batches of a few
// frames. Their queue is a buffer taken from a pool and given back at the
// flush, not a new one each batch: a hub's subscriber made one for every
// such batch, the most its stream allocated after the events themselves.
// (The race detector's pool drops a quarter of what it is given back, and
// a dropped buffer is three allocations to make again: a batch then
// makes three quarters of one on average, which AllocsPerRun's whole
// number over two thousand batches rounds down to none; over two hundred,
// a run in a few hundred would not.)
func TestStreamBatchesReuseABuffer(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	ev, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]int{"i": 1}})
	if err != nil {
		t.Fatal(err)
	}
	w := discardWriter{header: http.Header{}}
	h := &httpStream{s: &Server{}, w: w, via: viaSSE}
	h.rc = http.NewResponseController(w)
	allocs := testing.AllocsPerRun(2000, func() {
		for range 3 {
			if err := h.write(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.flush(false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs >= 1 {
		t.Errorf("a batch of three frames made %v allocations, want none", allocs)
	}
	if h.queued != nil {
		t.Error("a stream caught up keeps its queue")
	}
}
