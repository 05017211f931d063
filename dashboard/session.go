package dashboard

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"vigil/stream"
)

// transportName names a transport in vigil_stream_clients{transport}.
type transportName string

// The transports.
const (
	viaSSE    transportName = "sse"
	viaNDJSON transportName = "ndjson"
	viaPoll   transportName = "poll"
	viaWS     transportName = "ws"
	// Watch, by its protocol (rpc.go).
	viaGRPC    transportName = "grpc"
	viaGRPCWeb transportName = "grpcweb"
	viaConnect transportName = "connect"
)

var transportNames = []transportName{viaSSE, viaNDJSON, viaPoll, viaWS, viaGRPC, viaGRPCWeb, viaConnect}

// maxBatch bounds how many queued events are written before one flush.
const maxBatch = 64

// errDone ends a session: the client has its answer (a long poll).
var errDone = errors.New("dashboard: answered")

// A transport is how one kind of client gets events: a Server-Sent Events
// frame, an NDJSON line, a long poll's batch, a WebSocket message. The
// session does everything else — where the client starts, the
// subscription, counting it, the replay, batching, dropping it when it
// falls behind — so every transport resumes, filters and fails alike.
// A transport is used by one session's goroutine only.
type transport interface {
	name() transportName
	// open starts the answer: headers and whatever opens the stream.
	open(sub *stream.Subscriber) error
	// write writes an event, or a heartbeat (ev.IsHeartbeat), not yet
	// flushed. errDone: take no more.
	write(ev *stream.Event) error
	// position tells the client where it stands after a replay: an id to
	// resume from even if no event matched its filter.
	position(id uint64) error
	// flush sends what was written; more says events are waiting already.
	// errDone: the client has its answer.
	flush(more bool) error
	// end is called once when the session ends for any reason but the
	// client going away: nil (answered, timed out), stream.ErrSlow (it fell
	// too far behind) or stream.ErrClosed (vigil is stopping).
	end(why error)
}

// A talker is a transport whose client sends requests too (WebSocket).
type talker interface {
	requests() <-chan wsRequest
	handle(ss *session, req wsRequest) error
}

// A deadliner is a transport that ends its session at a time of its own
// (a long poll's timeout).
type deadliner interface {
	deadline() <-chan time.Time
}

// A session is one client's stream, over any transport.
type session struct {
	s   *Server
	ctx context.Context
	t   transport
	sub *stream.Subscriber
	pos uint64 // where the client stands: the last event, heartbeat or position sent
}

// serveHTTP runs the stream of an HTTP client whose filter is in the
// query (?source=, ?type=). A bad filter or cursor is answered before the
// transport opens.
func (s *Server) serveHTTP(ctx context.Context, w http.ResponseWriter, r *http.Request, t transport, cursor string) {
	f, err := stream.ParseFilter(r.URL.Query())
	if err == nil {
		err = s.serve(ctx, t, cursor, f)
	}
	if err != nil {
		s.fail(w, r, err)
	}
}

// serve runs a client's stream from cursor ("" starts now) until the client
// goes, has its answer, falls too far behind, or vigil stops. It returns
// an error only when the stream cannot start (a bad cursor), before the
// transport opens.
func (s *Server) serve(ctx context.Context, t transport, cursor string, f stream.Filter) error {
	sub, err := s.opts.Hub.Subscribe(stream.Cursor{LastID: cursor}, f)
	if err != nil {
		return err
	}
	ss := &session{s: s, ctx: ctx, t: t, sub: sub}
	defer func() { ss.sub.Close() }()
	n := s.clients[t.name()]
	n.Add(1)
	defer n.Add(-1)
	if t.open(sub) != nil {
		return nil
	}
	if err := ss.replay(); err != nil {
		if errors.Is(err, errDone) {
			t.end(nil)
		}
		return nil
	}
	ss.live()
	return nil
}

// replay writes the subscription's replay in batches, then the position,
// flushed with the last batch.
func (ss *session) replay() error {
	evs := ss.sub.Replay
	ss.sub.Replay = nil
	for i := 0; i < len(evs); i += maxBatch {
		if i > 0 {
			if err := ss.t.flush(true); err != nil {
				return err
			}
		}
		for _, ev := range evs[i:min(i+maxBatch, len(evs))] {
			if err := ss.write(ev); err != nil {
				return ss.flushAfter(err)
			}
		}
	}
	ss.pos = ss.sub.Head
	if err := ss.t.position(ss.sub.Head); err != nil {
		return err
	}
	return ss.t.flush(len(ss.sub.C()) > 0)
}

// flushAfter flushes what a transport took before it said it would take
// no more.
func (ss *session) flushAfter(err error) error {
	if !errors.Is(err, errDone) {
		return err
	}
	if ferr := ss.t.flush(false); ferr != nil && !errors.Is(ferr, errDone) {
		return ferr
	}
	return errDone
}

func (ss *session) write(ev *stream.Event) error {
	if err := ss.t.write(ev); err != nil {
		return err
	}
	ss.pos = ev.Position()
	return nil
}

// live writes events as they come, in batches of what is queued.
func (ss *session) live() {
	var deadline <-chan time.Time
	if d, ok := ss.t.(deadliner); ok {
		deadline = d.deadline()
	}
	var reqs <-chan wsRequest
	tk, talks := ss.t.(talker)
	if talks {
		reqs = tk.requests()
	}
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-ss.sub.Done():
			ss.t.end(ss.sub.Err())
			return
		case <-deadline:
			// Nothing matched in time: the client moves on past what
			// its filter passed over, if nothing is waiting.
			if id, ok := ss.sub.Caught(); ok {
				ss.t.position(id)
			}
			ss.t.end(nil)
			return
		case req := <-reqs:
			if tk.handle(ss, req) != nil {
				return
			}
		case ev := <-ss.sub.C():
			if err := ss.batch(ev); err != nil {
				if errors.Is(err, errDone) {
					ss.t.end(nil)
				}
				return
			}
		}
	}
}

// batch writes an event and whatever else is queued, up to maxBatch, and
// flushes them together.
func (ss *session) batch(ev *stream.Event) error {
	if err := ss.write(ev); err != nil {
		return ss.flushAfter(err)
	}
	for range maxBatch - 1 {
		select {
		case ev = <-ss.sub.C():
			if err := ss.write(ev); err != nil {
				return ss.flushAfter(err)
			}
			continue
		default:
		}
		break
	}
	return ss.t.flush(len(ss.sub.C()) > 0)
}

// resubscribe changes the session's filter: the stream carries on from
// where the client stands, so nothing is missed or repeated.
func (ss *session) resubscribe(f stream.Filter) error {
	next, err := ss.s.opts.Hub.Subscribe(stream.Cursor{LastID: strconv.FormatUint(ss.pos, 10)}, f)
	if err != nil {
		return err
	}
	ss.sub.Close()
	ss.sub = next
	return nil
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

// clientGauges counts connected clients by transport.
func clientGauges(s *Server) map[transportName]*atomic.Int64 {
	out := make(map[transportName]*atomic.Int64, len(transportNames))
	for _, t := range transportNames {
		n := new(atomic.Int64)
		out[t] = n
		s.opts.Metrics.GetOrCreateGauge(`vigil_stream_clients{transport="`+string(t)+`"}`, func() float64 { return float64(n.Load()) })
	}
	return out
}
