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
// filter — the stream carries on from where the client stands, so nothing
// is missed or repeated — and acknowledge alerts. The server pings when
// the stream is idle and closes a connection that does not answer; a
// client that falls too far behind is dropped like a slow SSE client.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ws := &wsStream{s: s, w: w, r: r, ctx: ctx, cancel: cancel, reqs: make(chan wsRequest),
		canWrite: s.mayWrite(r) == nil}
	s.serveHTTP(ctx, w, r, ws, lastEventID(r)) // a bad filter is a 400, before the upgrade
	if ws.c != nil {
		ws.c.CloseNow()
	}
}

// wsStream is a WebSocket client: events as messages, and its requests.
type wsStream struct {
	s        *Server
	w        http.ResponseWriter
	r        *http.Request
	c        *websocket.Conn
	ctx      context.Context
	cancel   context.CancelFunc // the connection ended
	reqs     chan wsRequest
	pinging  atomic.Bool // a ping is waiting for its pong
	canWrite bool        // the upgrade carried a valid token
}

var _ interface {
	transport
	talker
} = (*wsStream)(nil)

func (ws *wsStream) name() transportName { return viaWS }

func (ws *wsStream) open(*stream.Subscriber) error {
	// Same origin only, so that a page elsewhere cannot ack with a
	// visitor's browser (Accept checks it too, and answers in plain text).
	if origin := ws.r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || !strings.EqualFold(u.Host, ws.r.Host) {
			writeError(ws.w, http.StatusForbidden, "cross-origin WebSocket refused: only vigil's own pages may open one")
			return errors.New("cross-origin")
		}
	}
	c, err := websocket.Accept(ws.w, ws.r, nil)
	if err != nil {
		return err // Accept answered the request
	}
	c.SetReadLimit(wsReadLimit)
	ws.c = c
	go wsRead(ws.ctx, ws.cancel, c, ws.reqs)
	return nil
}

func (ws *wsStream) send(b []byte) error {
	wctx, done := context.WithTimeout(ws.ctx, ws.s.opts.WriteTimeout)
	defer done()
	return ws.c.Write(wctx, websocket.MessageText, b)
}

func (ws *wsStream) write(ev *stream.Event) error {
	if !ev.IsHeartbeat() {
		return ws.send(ev.JSON())
	}
	// Ping from a goroutine of its own, started only while a ping is out:
	// an idle connection holds no extra goroutine.
	if ws.pinging.CompareAndSwap(false, true) {
		go ws.s.wsPing(ws.ctx, ws.cancel, ws.c, &ws.pinging)
	}
	return nil
}

func (ws *wsStream) position(id uint64) error {
	return ws.send([]byte(`{"type":"position","seq":` + strconv.FormatUint(id, 10) + `}`))
}

func (ws *wsStream) flush(bool) error { return nil } // every message is sent as it is written

func (ws *wsStream) end(why error) {
	if why == stream.ErrSlow {
		// It is not reading: a close handshake would only wait.
		ws.s.opts.Logger.Debug("dropped slow websocket client", "remote", ws.r.RemoteAddr)
		return
	}
	ws.c.Close(websocket.StatusGoingAway, "vigil is shutting down; reconnect with lastEventId")
}

func (ws *wsStream) requests() <-chan wsRequest { return ws.reqs }

// handle answers one request; a filter change replays what the new filter
// matches from where the client stands.
func (ws *wsStream) handle(ss *session, req wsRequest) error {
	var rep wsReply
	resubscribed := false
	switch {
	case req.err != nil:
		rep.Error = req.err.Error()
	case req.Op == "ping":
	case req.Op == "subscribe":
		f, err := stream.ParseFilter(url.Values{"source": req.Source, "type": req.Type})
		if err == nil {
			err = ss.resubscribe(f)
		}
		if err != nil {
			_, rep.Error = statusOf(err)
			break
		}
		resubscribed = true
	case req.Op == "ack":
		if !ws.canWrite && ws.s.authorize("Bearer "+req.Token) != nil {
			rep.Error = "acknowledging needs a token (auth.tokens): send Authorization: Bearer when connecting, or \"token\" in the request"
			break
		}
		a, err := ws.s.ack(ws.ctx, req.Fingerprint, req.By)
		if err != nil {
			_, rep.Error = statusOf(err)
			break
		}
		rep.Alert = &a
	default:
		rep.Error = "unknown op " + quote(req.Op) + ": want subscribe, ack or ping"
	}
	if err := ws.reply(req, rep); err != nil {
		return err
	}
	if resubscribed {
		return ss.replay()
	}
	return nil
}

func (ws *wsStream) reply(req wsRequest, rep wsReply) error {
	rep.Type, rep.Op, rep.Ref = "reply", stream.Clip(req.Op, 32), stream.Clip(req.Ref, 128)
	if rep.Error == "" {
		rep.OK = true
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(rep)
	return ws.send(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
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
// the error to answer with, and its op and ref if they can be read.
func parseWSRequest(typ websocket.MessageType, data []byte) wsRequest {
	if typ != websocket.MessageText {
		return wsRequest{err: errors.New("requests are JSON text messages")}
	}
	var req wsRequest
	if err := decodeStrict(bytes.NewReader(data), &req); err != nil {
		// The reply names the request it refuses, when it can tell.
		var id struct{ Op, Ref string }
		json.Unmarshal(data, &id)
		return wsRequest{Op: id.Op, Ref: id.Ref, err: errors.New("bad JSON: " + strings.TrimPrefix(err.Error(), "json: "))}
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
