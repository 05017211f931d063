package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/coder/websocket"

	"vigil/alerts"
	"vigil/stream"
)

// wsReadLimit bounds one message from a WebSocket client; requests are
// small JSON objects.
const wsReadLimit = 16 << 10

// A wsRequest is a message from a WebSocket client:
//
//	{"op": "subscribe", "source": ["host/*"], "type": ["sample", "alert"]}
//	{"op": "ack", "fingerprint": "…", "by": "alice", "token": "…"}
//	{"op": "ping"}
//
// "ref", when given, is echoed in the reply so a client can match them.
type wsRequest struct {
	Op          string     `json:"op"`
	Ref         string     `json:"ref,omitempty"`
	Source      stringList `json:"source,omitempty"`
	Type        stringList `json:"type,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	By          string     `json:"by,omitempty"`
	Token       string     `json:"token,omitempty"`

	err error // the message could not be read as a request
}

// A wsReply answers one request. Its type, "reply", is not an event type,
// so a client can tell replies from events by "type" alone.
type wsReply struct {
	Type  string        `json:"type"`
	Op    string        `json:"op"`
	Ref   string        `json:"ref,omitempty"`
	OK    bool          `json:"ok"`
	Error string        `json:"error,omitempty"`
	Alert *alerts.Alert `json:"alert,omitempty"`
}

// stringList is a JSON string (comma-separated, like the query parameters)
// or an array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or an array of strings")
	}
	*l = many
	return nil
}

// handleWS serves the event stream over a WebSocket: each event is one
// text message holding the same JSON as /events and /api/v1/stream, with
// the same ids, filters (?source=, ?type=) and resume (?lastEventId= or
// Last-Event-ID). Over the same connection the client can change its
// filter — the stream carries on from the last event it was sent, so
// nothing is missed or repeated — and acknowledge alerts. The server pings
// when the stream is idle and closes a connection that does not answer;
// a client that falls too far behind is dropped like a slow SSE client.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscribe(w, r, lastEventID(r)) // a bad filter is a 400, before the upgrade
	if !ok {
		return
	}
	// Where the client stands: after the replay, the subscription's head;
	// then the last event (or heartbeat) sent. A filter change carries on
	// from there.
	var cursor string
	defer func() { sub.Close() }()
	c, err := websocket.Accept(w, r, nil) // same-origin only: a page elsewhere cannot ack
	if err != nil {
		return // Accept answered the request
	}
	defer c.CloseNow()
	c.SetReadLimit(wsReadLimit)
	s.clients["ws"].Add(1)
	defer s.clients["ws"].Add(-1)
	canWrite := s.authorized(r.Header.Get("Authorization"))

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	reqs := make(chan wsRequest)
	go wsRead(ctx, cancel, c, reqs)
	var pinging atomic.Bool // a ping is waiting for its pong

	write := func(b []byte) error {
		wctx, done := context.WithTimeout(ctx, s.opts.WriteTimeout)
		defer done()
		return c.Write(wctx, websocket.MessageText, b)
	}
	send := func(ev *stream.Event) error {
		if ev.IsHeartbeat() {
			// Ping from a goroutine of its own, started only while a ping
			// is out: an idle connection holds no extra goroutine.
			if pinging.CompareAndSwap(false, true) {
				go s.wsPing(ctx, cancel, c, &pinging)
			}
		} else if err := write(ev.JSON()); err != nil {
			return err
		}
		cursor = strconv.FormatUint(ev.Position(), 10)
		return nil
	}
	reply := func(req wsRequest, rep wsReply) error {
		rep.Type, rep.Op, rep.Ref = "reply", stream.Clip(req.Op, 32), stream.Clip(req.Ref, 128)
		if rep.Error == "" {
			rep.OK = true
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(rep)
		return write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
	}
	// After each replay the client is told where it stands, so that even
	// one whose filter matches nothing has a position to resume from.
	replay := func() error {
		for _, ev := range sub.Replay {
			if err := send(ev); err != nil {
				return err
			}
		}
		sub.Replay = nil
		cursor = strconv.FormatUint(sub.Head, 10)
		return write([]byte(`{"type":"position","seq":` + cursor + `}`))
	}
	if replay() != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Done():
			if errors.Is(sub.Err(), stream.ErrSlow) {
				// It is not reading: a close handshake would only wait.
				s.opts.Logger.Debug("dropped slow websocket client", "remote", r.RemoteAddr)
				return
			}
			c.Close(websocket.StatusGoingAway, "vigil is shutting down; reconnect with lastEventId")
			return
		case req := <-reqs:
			var rep wsReply
			switch {
			case req.err != nil:
				rep.Error = req.err.Error()
			case req.Op == "ping":
			case req.Op == "subscribe":
				q := url.Values{"source": req.Source, "type": req.Type}
				f, err := stream.ParseFilter(q)
				if err != nil {
					_, rep.Error = errorStatus(err)
					break
				}
				next, err := s.opts.Hub.Subscribe(stream.Cursor{LastID: cursor}, f)
				if err != nil {
					_, rep.Error = errorStatus(err)
					break
				}
				sub.Close()
				sub = next
			case req.Op == "ack":
				if !canWrite && !s.authorized("Bearer "+req.Token) {
					rep.Error = "acknowledging needs a token (auth.tokens): send Authorization: Bearer when connecting, or \"token\" in the request"
					break
				}
				a, err := s.ack(ctx, req.Fingerprint, req.By)
				if err != nil {
					_, rep.Error = ackError(err)
					break
				}
				rep.Alert = &a
			default:
				rep.Error = "unknown op " + quote(req.Op) + ": want subscribe, ack or ping"
			}
			if reply(req, rep) != nil || replay() != nil {
				return
			}
		case ev := <-sub.C():
			if send(ev) != nil {
				return
			}
		}
	}
}

// wsRead reads the client's requests until the connection ends, then
// cancels the connection's context. Reading also answers the client's
// pings and takes in the pongs to ours.
func wsRead(ctx context.Context, cancel context.CancelFunc, c *websocket.Conn, reqs chan<- wsRequest) {
	defer cancel()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		req := parseWSRequest(typ, data)
		select {
		case reqs <- req:
		case <-ctx.Done():
			return
		}
	}
}

// parseWSRequest reads one client message strictly: a JSON object with
// known fields only, nothing after it. A message that is not one carries
// the error to answer with.
func parseWSRequest(typ websocket.MessageType, data []byte) wsRequest {
	if typ != websocket.MessageText {
		return wsRequest{err: errors.New("requests are JSON text messages")}
	}
	var req wsRequest
	if err := decodeStrict(bytes.NewReader(data), &req); err != nil {
		return wsRequest{err: errors.New("bad JSON: " + strings.TrimPrefix(err.Error(), "json: "))}
	}
	return req
}

// wsPing pings the client (the stream has been idle for a heartbeat) and
// ends the connection when no pong comes back within the write timeout.
func (s *Server) wsPing(ctx context.Context, cancel context.CancelFunc, c *websocket.Conn, pinging *atomic.Bool) {
	defer pinging.Store(false)
	pctx, done := context.WithTimeout(ctx, s.opts.WriteTimeout)
	defer done()
	if err := c.Ping(pctx); err != nil && ctx.Err() == nil {
		s.opts.Logger.Debug("websocket client did not answer a ping", "err", err)
		cancel()
	}
}
