package dashboard

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"vigil/stream"
)

// maxBatch bounds how many queued events are written before one flush.
const maxBatch = 64

func randomJitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// handleEvents streams events as Server-Sent Events.
//
// Headers and a retry: hint go out at once, before the first event, so
// clients and proxies see a live stream immediately. Every write has its own
// deadline, and every batch of events is flushed as it is written. The
// client resumes with Last-Event-ID (or ?lastEventId= where it cannot set
// headers); the header wins when both are present, since a browser's
// EventSource keeps the original URL but updates the header.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, "sse", func(sub *stream.Subscriber) bool {
		sess, err := sse.Upgrade(w, r)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "streaming unsupported by this connection")
			return false
		}
		w.Header().Set("Content-Type", "text/event-stream")
		hello := &sse.Message{Retry: s.opts.Retry + s.opts.Jitter(s.opts.Retry)}
		hello.AppendComment("vigil stream")
		return sess.Send(hello) == nil && sess.Flush() == nil
	}, (*stream.Event).Frame, ssePosition)
}

// ssePosition is an "id:" line alone: EventSource (and every client that
// follows the spec) takes it as its last event id and dispatches nothing.
func ssePosition(id uint64) []byte {
	return []byte("id: " + strconv.FormatUint(id, 10) + "\n\n")
}

// handleNDJSON streams the same events as /events, one JSON object per
// line (heartbeats are empty lines), for curl | jq and for clients behind
// proxies that mangle text/event-stream. Same filters and resume.
func (s *Server) handleNDJSON(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, "ndjson", func(sub *stream.Subscriber) bool {
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Where the stream starts: a client whose filter matches nothing
		// for a while resumes from here.
		w.Header().Set("Last-Event-ID", startPosition(r, sub))
		w.WriteHeader(http.StatusOK)
		return http.NewResponseController(w).Flush() == nil
	}, (*stream.Event).Line, nil)
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

// lastEventID is where a streaming client resumes from: the Last-Event-ID
// header, or ?lastEventId= for clients that cannot set headers. The header
// wins, since a browser's EventSource keeps the URL but updates the header.
func lastEventID(r *http.Request) string {
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		return last
	}
	return r.URL.Query().Get("lastEventId")
}

// stream is the body of every streaming transport: parse the filter and
// the resume position, subscribe, send the headers (start), then the
// replay, then live events, each batch written with a deadline and
// flushed, until the client goes, falls too far behind, or the hub closes.
//
// position, when set, encodes where the client stands after the replay,
// sent at once so that even a client whose filter matches nothing has a
// position to resume from.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, transport string, start func(*stream.Subscriber) bool,
	encode func(*stream.Event) []byte, position func(uint64) []byte) {
	sub, ok := s.subscribe(w, r, lastEventID(r))
	if !ok {
		return
	}
	defer sub.Close()
	s.clients[transport].Add(1)
	defer s.clients[transport].Add(-1)

	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	deadline := func() {
		// Not every ResponseWriter supports deadlines (httptest's
		// recorder); the stream still works, only without the bound.
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	}
	deadline()
	if !start(sub) {
		return
	}
	for i := 0; i < len(sub.Replay); i += maxBatch {
		deadline()
		for _, ev := range sub.Replay[i:min(i+maxBatch, len(sub.Replay))] {
			if _, err := w.Write(encode(ev)); err != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
	sub.Replay = nil
	if position != nil {
		deadline()
		if _, err := w.Write(position(sub.Head)); err != nil || rc.Flush() != nil {
			return
		}
	}

	ctx := r.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Done():
			if errors.Is(sub.Err(), stream.ErrSlow) {
				// Close the connection rather than end the response: a
				// client this far behind should reconnect and resume
				// from the window, not keep an idle connection.
				s.opts.Logger.Debug("dropped slow stream client", "remote", r.RemoteAddr)
				panic(http.ErrAbortHandler)
			}
			return
		case ev := <-sub.C():
			deadline()
			if _, err := w.Write(encode(ev)); err != nil {
				return
			}
		batch:
			for range maxBatch - 1 {
				select {
				case ev = <-sub.C():
					if _, err := w.Write(encode(ev)); err != nil {
						return
					}
				default:
					break batch
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// parseFilter reads ?source= and ?type=, or answers 400 and returns false.
func parseFilter(w http.ResponseWriter, r *http.Request) (stream.Filter, bool) {
	f, err := stream.ParseFilter(r.URL.Query())
	if err != nil {
		status, msg := errorStatus(err)
		writeError(w, status, msg)
		return f, false
	}
	return f, true
}

// subscribe subscribes a request to the hub from a cursor, with the
// request's filter, or answers with the error and returns false. Every
// transport (SSE, NDJSON, long polling) starts here.
func (s *Server) subscribe(w http.ResponseWriter, r *http.Request, last string) (*stream.Subscriber, bool) {
	f, ok := parseFilter(w, r)
	if !ok {
		return nil, false
	}
	sub, err := s.opts.Hub.Subscribe(stream.Cursor{LastID: last}, f)
	if err != nil {
		status, msg := errorStatus(err)
		writeError(w, status, msg)
		return nil, false
	}
	return sub, true
}
