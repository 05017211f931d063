package dashboard

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"vigil/stream"
)

// Long-poll limits.
const (
	DefaultPollTimeout = 25 * time.Second
	MaxPollTimeout     = 60 * time.Second
	MaxPollBatch       = 500
)

// pollAnswer is a batch of events and the cursor to ask from next.
type pollAnswer struct {
	Events []json.RawMessage `json:"events"`
	Next   string            `json:"next"`
}

// handlePoll answers as soon as there are events after the cursor (up to
// MaxPollBatch of them), or with an empty batch when the timeout passes.
// The events and ids are the stream's own, so a client can move between
// long polling and /events without a gap or a repeat. A waiting poller
// costs a subscription and one timer, both gone when the request ends.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	timeout := DefaultPollTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxPollTimeout {
			writeError(w, http.StatusBadRequest, "bad timeout "+quote(v)+": want a duration from 0s to 60s")
			return
		}
		timeout = d
	}
	after := q.Get("after")
	if after == "" {
		after = strconv.FormatUint(s.opts.Hub.LastID(), 10)
	} else if _, err := stream.ParseID(after); err != nil {
		writeError(w, http.StatusBadRequest, "bad cursor "+quote(after)+": want the id of the last event received (a decimal number), or no after= to start now")
		return
	}
	p := &longPoll{w: w, timer: time.NewTimer(timeout), ans: pollAnswer{Events: []json.RawMessage{}, Next: after}}
	defer p.timer.Stop()
	s.serveHTTP(r.Context(), w, r, p, after)
}

// longPoll is a long poll's answer: a batch of events and the cursor to ask
// from next, written when the first events came, or at the timeout.
type longPoll struct {
	w      http.ResponseWriter
	timer  *time.Timer
	ans    pollAnswer
	placed bool // the whole replay went in: the client can move on to the head
}

var _ interface {
	transport
	deadliner
} = (*longPoll)(nil)

func (p *longPoll) name() transportName           { return viaPoll }
func (p *longPoll) open(*stream.Subscriber) error { return nil }
func (p *longPoll) deadline() <-chan time.Time    { return p.timer.C }

func (p *longPoll) write(ev *stream.Event) error {
	if ev.IsHeartbeat() {
		// Not an event: keep waiting for the timeout asked for; with none
		// yet, the client may move on to the heartbeat's position.
		if p.placed && len(p.ans.Events) == 0 {
			p.ans.Next = strconv.FormatUint(max(ev.Position(), parseIDOr(p.ans.Next)), 10)
		}
		return nil
	}
	p.ans.Events = append(p.ans.Events, ev.JSON())
	p.ans.Next = strconv.FormatUint(ev.ID, 10)
	if len(p.ans.Events) == MaxPollBatch {
		return errDone
	}
	return nil
}

// position: every event up to the head that the filter matches is in this
// answer; with none, the client moves on to the head.
func (p *longPoll) position(id uint64) error {
	p.placed = true
	p.ans.Next = strconv.FormatUint(max(id, parseIDOr(p.ans.Next)), 10)
	return nil
}

// flush answers once there are events and no more are waiting.
func (p *longPoll) flush(more bool) error {
	if len(p.ans.Events) > 0 && !more {
		return errDone
	}
	return nil
}

func (p *longPoll) end(error) {
	p.w.Header().Set("Cache-Control", "no-store")
	writeJSON(p.w, http.StatusOK, p.ans)
}

// parseIDOr reads an id already checked, or 0.
func parseIDOr(s string) uint64 {
	id, _ := stream.ParseID(s)
	return id
}

// handleSnapshot is short polling: the newest sample of every source and
// the id of the newest event, with that id as the ETag.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	f, err := stream.ParseFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	events, last := s.opts.Hub.Snapshot(f)
	etag := `"` + strconv.FormatUint(last, 10) + `"` // an ETag is per URL, so per filter too
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	out := struct {
		LastEventID string            `json:"last_event_id"`
		Events      []json.RawMessage `json:"events"`
	}{strconv.FormatUint(last, 10), []json.RawMessage{}}
	for _, ev := range events {
		out.Events = append(out.Events, ev.JSON())
	}
	writeJSON(w, http.StatusOK, out)
}
