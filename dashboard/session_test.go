package dashboard

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

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
