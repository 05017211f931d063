package dashboard

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"vigil/stream"
)

func randomJitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// handleEvents streams events as Server-Sent Events.
//
// Headers and a retry: hint go out at once, before the first event, so
// clients and proxies see a live stream immediately; then the client's
// position, as an "id:" line. The client resumes with Last-Event-ID (or
// ?lastEventId= where it cannot set headers).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	s.serveHTTP(r.Context(), w, r, &httpStream{s: s, w: w, r: r, via: viaSSE}, lastEventID(r))
}

// handleNDJSON streams the same events as /events, one JSON object per
// line (heartbeats are empty lines), for curl | jq and for clients behind
// proxies that mangle text/event-stream. Same filters and resume.
func (s *Server) handleNDJSON(w http.ResponseWriter, r *http.Request) {
	s.serveHTTP(r.Context(), w, r, &httpStream{s: s, w: w, r: r, via: viaNDJSON}, lastEventID(r))
}

// httpStream is a streaming HTTP answer: Server-Sent Events frames or
// NDJSON lines, every batch written under a deadline and flushed.
type httpStream struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	rc  *http.ResponseController
	via transportName // viaSSE or viaNDJSON
	// armed: a write deadline is set for the batch being written.
	armed bool
	// A batch's first frame goes to w, the rest to queued, written to w
	// at the flush in one piece: ResponseWriter's 2 KiB buffer and its
	// connection's 4 KiB would send a batch (a replay of up to maxBatch
	// events, a backlog) a few frames a system call. The buffer is taken
	// from queues for a batch and given back once the stream caught up.
	started bool
	queued  *[]byte
}

// maxQueued is the most a stream keeps of its queue's buffer for the next
// batch, while it has more waiting, and the most queues keeps.
const maxQueued = 256 << 10

// queues are the buffers of batches being written. A live stream's
// events that come together are batches of a few frames: a buffer each
// was, for a hub's subscriber, the most its stream allocated after the
// events themselves; a stream that caught up holds none.
var queues = sync.Pool{New: func() any { return new([]byte) }}

var _ transport = (*httpStream)(nil)

func (h *httpStream) name() transportName { return h.via }

func (h *httpStream) open(sub *stream.Subscriber) error {
	h.rc = http.NewResponseController(h.w)
	hd := h.w.Header()
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	hd.Set("X-Content-Type-Options", "nosniff")
	h.deadline()
	if h.via == viaNDJSON {
		hd.Set("Content-Type", "application/x-ndjson")
		// Where the stream starts: a client whose filter matches nothing
		// for a while resumes from here.
		hd.Set("Last-Event-ID", startPosition(h.r, sub))
		h.w.WriteHeader(http.StatusOK)
		return h.rc.Flush()
	}
	sess, err := sse.Upgrade(h.w, h.r)
	if err != nil {
		writeError(h.w, http.StatusInternalServerError, "streaming unsupported by this connection")
		return err
	}
	hd.Set("Content-Type", "text/event-stream")
	hello := &sse.Message{Retry: h.s.opts.Retry + h.s.opts.Jitter(h.s.opts.Retry)}
	hello.AppendComment("vigil stream")
	if err := sess.Send(hello); err != nil {
		return err
	}
	return sess.Flush()
}

// deadline bounds the writes of a batch, from its first. Not every
// ResponseWriter supports deadlines (httptest's recorder); the stream
// still works without.
func (h *httpStream) deadline() {
	if !h.armed {
		_ = h.rc.SetWriteDeadline(time.Now().Add(h.s.opts.WriteTimeout))
		h.armed = true
	}
}

func (h *httpStream) write(ev *stream.Event) error {
	b := ev.Frame()
	if h.via == viaNDJSON {
		b = ev.Line()
	}
	return h.put(b)
}

// put writes a frame of the batch.
func (h *httpStream) put(b []byte) error {
	h.deadline()
	if h.started {
		if h.queued == nil {
			h.queued = queues.Get().(*[]byte)
		}
		*h.queued = append(*h.queued, b...)
		return nil
	}
	h.started = true
	_, err := h.w.Write(b)
	return err
}

// position is, on SSE, an "id:" line alone: EventSource (and every client
// that follows the spec) takes it as its last event id and dispatches
// nothing. NDJSON said where it starts in a header.
func (h *httpStream) position(id uint64) error {
	if h.via == viaNDJSON {
		return nil
	}
	return h.put([]byte("id: " + strconv.FormatUint(id, 10) + "\n\n"))
}

func (h *httpStream) flush(more bool) error {
	h.deadline()
	h.armed, h.started = false, false
	if q := h.queued; q != nil {
		var err error
		if len(*q) > 0 {
			_, err = h.w.Write(*q)
		}
		// Kept for the next batch while more are waiting (a replay),
		// not by a stream that caught up.
		if *q = (*q)[:0]; !more || cap(*q) > maxQueued {
			if cap(*q) <= maxQueued {
				queues.Put(q)
			}
			h.queued = nil
		}
		if err != nil {
			return err
		}
	}
	if err := h.rc.Flush(); err != nil {
		return err
	}
	// No deadline while idle: over HTTP/2 one that passes resets the
	// stream, written to or not.
	_ = h.rc.SetWriteDeadline(time.Time{})
	return nil
}

func (h *httpStream) end(why error) {
	if why == stream.ErrSlow {
		// Close the connection rather than end the response: a client
		// this far behind should reconnect and resume from the window,
		// not keep an idle connection.
		h.s.opts.Logger.Debug("dropped slow stream client", "transport", h.via, "remote", h.r.RemoteAddr)
		panic(http.ErrAbortHandler)
	}
}

// startPosition is where a stream starts, before its replay: the client's
// own cursor when it resumes, or now.
func startPosition(r *http.Request, sub *stream.Subscriber) string {
	if last := lastEventID(r); last != "" {
		if _, err := stream.ParseID(last); err == nil {
			return last
		}
	}
	return strconv.FormatUint(sub.Head, 10)
}
