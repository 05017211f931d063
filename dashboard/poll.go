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
	sub, ok := s.subscribe(w, r, after)
	if !ok {
		return
	}
	defer sub.Close()
	s.clients["poll"].Add(1)
	defer s.clients["poll"].Add(-1)
	ans := pollAnswer{Events: []json.RawMessage{}, Next: after}
	add := func(ev *stream.Event) bool {
		if ev.IsHeartbeat() {
			return true
		}
		ans.Events = append(ans.Events, ev.JSON())
		ans.Next = strconv.FormatUint(ev.ID, 10)
		return len(ans.Events) < MaxPollBatch
	}
	whole := true // the replay fits in one answer
	for _, ev := range sub.Replay {
		if !add(ev) {
			whole = false
			break
		}
	}
	if whole {
		// Every event up to the head that the filter matches is in this
		// answer: with none, the client moves on to the head.
		ans.Next = strconv.FormatUint(max(sub.Head, parseIDOr(ans.Next)), 10)
	}
	if len(ans.Events) == 0 && timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
	wait: // heartbeats are not events: keep waiting for the timeout asked for
		for len(ans.Events) == 0 {
			select {
			case ev := <-sub.C():
				add(ev)
				if ev.IsHeartbeat() && whole {
					ans.Next = strconv.FormatUint(max(ev.Position(), parseIDOr(ans.Next)), 10)
				}
			case <-t.C:
				break wait
			case <-sub.Done():
				break wait
			case <-r.Context().Done():
				return
			}
		}
	}
	if len(ans.Events) > 0 && len(ans.Events) < MaxPollBatch && len(sub.Replay) == 0 {
	drain: // whatever else is already queued goes in the same answer
		for {
			select {
			case ev := <-sub.C():
				if !add(ev) {
					break drain
				}
			default:
				break drain
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, ans)
}

// parseIDOr reads an id already checked, or 0.
func parseIDOr(s string) uint64 {
	id, _ := stream.ParseID(s)
	return id
}

// handleSnapshot is short polling: the newest sample of every source and
// the id of the newest event, with that id as the ETag.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	f, ok := parseFilter(w, r)
	if !ok {
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
