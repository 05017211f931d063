package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"vigil/alerts"
	vigilv1 "vigil/proto/vigil/v1"
	"vigil/proto/vigil/v1/vigilv1connect"
	"vigil/stream"
)

// Protocols are the HTTP versions vigil serves: HTTP/1.1, HTTP/2 over
// TLS, and HTTP/2 without TLS for clients that speak it from the first
// byte (gRPC clients without TLS: h2c with prior knowledge). Browsers
// never send that preface, so they are served as before.
func Protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// rpcRoutes serves vigil.v1.EventService over gRPC, gRPC-Web and Connect
// (one handler speaks all three), with the gRPC health and reflection
// services beside it so that grpcurl and load balancers need no .proto
// file. Health and reflection are open to all, like /healthz; the events
// and alerts are behind the same tokens as the HTTP API's reads.
func (s *Server) rpcRoutes() {
	reflector := grpcreflect.NewStaticReflector(vigilv1connect.EventServiceName, grpchealth.HealthV1ServiceName)
	gated := func(path string, h http.Handler) { s.handleRPC(path, h, true) }
	open := func(path string, h http.Handler) { s.handleRPC(path, h, false) }
	cache := newRPCEvents(rpcCacheSize)
	s.rpcCache = cache
	limit := connect.WithReadMaxBytes(rpcMaxRequest)
	gated(vigilv1connect.NewEventServiceHandler(&eventService{s: s, cache: cache}, limit, connect.WithCodec(rpcCodec{cache}),
		connect.WithCodec(rpcJSON("json")), connect.WithCodec(rpcJSON("json; charset=utf-8"))))
	open(grpchealth.NewHandler(rpcHealth{s}, limit))
	// Reflection tells what the published .proto file tells, nothing of
	// vigil's data; open, so that a health check by grpcurl needs no
	// token.
	open(grpcreflect.NewHandlerV1(reflector, limit))
	open(grpcreflect.NewHandlerV1Alpha(reflector, limit))
}

// rpcMaxRequest bounds a request message: filters of at most
// stream.MaxFilterPatterns patterns of stream.MaxPatternLen bytes fit
// many times over. A larger one is RESOURCE_EXHAUSTED, unread.
const rpcMaxRequest = 64 << 10

// handleRPC serves an RPC service's path. gated: behind the read tokens.
func (s *Server) handleRPC(path string, h http.Handler, gated bool) {
	s.rpcPaths = append(s.rpcPaths, path)
	s.mux.Handle(path, s.rpc(h, gated))
}

// isRPC reports whether a path is one of the RPC services': they answer
// a refused read themselves, in the caller's protocol.
func (s *Server) isRPC(path string) bool {
	for _, p := range s.rpcPaths {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// writerKey carries an RPC's http.ResponseWriter in its context, for the
// deadlines of a stream's writes (connect does not hand it to handlers).
type writerKey struct{}

// rpc wraps an RPC handler: a read it may not make is refused as
// UNAUTHENTICATED in the client's own protocol, and the handler can reach
// the ResponseWriter.
func (s *Server) rpc(h http.Handler, gated bool) http.Handler {
	errs := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gated {
			if err := s.mayRead(r); err != nil {
				errs.Write(w, r, connect.NewError(connect.CodeUnauthenticated, err))
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), writerKey{}, w)))
	})
}

// rpcError is an error as an RPC's status: the code that matches the
// HTTP status the API would answer with, and the same message.
func (s *Server) rpcError(procedure string, err error) error {
	status, msg := statusOf(err)
	code := connect.CodeInternal
	switch status {
	case http.StatusBadRequest:
		code = connect.CodeInvalidArgument
	case http.StatusNotFound:
		code = connect.CodeNotFound
	case http.StatusConflict:
		code = connect.CodeFailedPrecondition
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		code = connect.CodeUnavailable
	default:
		s.opts.Logger.Error("rpc failed", "procedure", procedure, "err", err)
	}
	return connect.NewError(code, errors.New(msg))
}

// eventService is vigil.v1.EventService.
type eventService struct {
	s     *Server
	cache *rpcEvents
}

var _ vigilv1connect.EventServiceHandler = (*eventService)(nil)

func (e *eventService) Watch(ctx context.Context, req *connect.Request[vigilv1.WatchRequest], out *connect.ServerStream[vigilv1.WatchResponse]) error {
	f, err := stream.ParseFilter(url.Values{"source": req.Msg.Sources, "type": req.Msg.Types})
	if err != nil {
		return e.s.rpcError(req.Spec().Procedure, err)
	}
	cursor := ""
	if req.Msg.AfterId != 0 {
		cursor = strconv.FormatUint(req.Msg.AfterId, 10)
	}
	t := &rpcStream{s: e.s, cache: e.cache, out: out, via: rpcTransport(req.Peer().Protocol)}
	if w, ok := ctx.Value(writerKey{}).(http.ResponseWriter); ok {
		t.rc = http.NewResponseController(w)
	}
	if err := e.s.serve(ctx, t, cursor, f); err != nil {
		return e.s.rpcError(req.Spec().Procedure, err)
	}
	return t.err
}

func (e *eventService) Snapshot(ctx context.Context, req *connect.Request[vigilv1.SnapshotRequest]) (*connect.Response[vigilv1.SnapshotResponse], error) {
	f, err := stream.ParseFilter(url.Values{"source": req.Msg.Sources, "type": req.Msg.Types})
	if err != nil {
		return nil, e.s.rpcError(req.Spec().Procedure, err)
	}
	evs, last := e.s.opts.Hub.Snapshot(f)
	res := &vigilv1.SnapshotResponse{Position: last, Events: make([]*vigilv1.Event, 0, len(evs))}
	for _, ev := range evs {
		msg, _ := e.cache.get(ev)
		res.Events = append(res.Events, msg)
	}
	return connect.NewResponse(res), nil
}

// alertStates are the states ListAlerts may select: an active alert's.
var alertStates = []string{alerts.StatePending, alerts.StateFiring, alerts.StateNoData}

func (e *eventService) ListAlerts(ctx context.Context, req *connect.Request[vigilv1.ListAlertsRequest]) (*connect.Response[vigilv1.ListAlertsResponse], error) {
	f, err := stream.ParseFilter(url.Values{"source": req.Msg.Sources})
	if err != nil {
		return nil, e.s.rpcError(req.Spec().Procedure, err)
	}
	for _, st := range req.Msg.States {
		if !slices.Contains(alertStates, st) {
			return nil, connect.NewError(connect.CodeInvalidArgument,
				errors.New("unknown state "+strconv.Quote(stream.Clip(st, 64))+" (want one of "+strings.Join(alertStates, ", ")+")"))
		}
	}
	res := &vigilv1.ListAlertsResponse{Alerts: []*vigilv1.Alert{}}
	if e.s.opts.Alerts == nil {
		return connect.NewResponse(res), nil
	}
	for _, a := range e.s.opts.Alerts.Active() {
		if !f.Match(stream.TypeAlert, a.Source) || (len(req.Msg.States) > 0 && !slices.Contains(req.Msg.States, a.State)) {
			continue
		}
		res.Alerts = append(res.Alerts, rpcAlert(a))
	}
	return connect.NewResponse(res), nil
}

func rpcAlert(a alerts.Alert) *vigilv1.Alert {
	return &vigilv1.Alert{
		Fingerprint: a.Fingerprint, Rule: a.Rule, Source: a.Source, Metric: a.Metric, State: a.State,
		Value: a.Value, Threshold: a.Threshold, Op: a.Op, Severity: a.Severity,
		Labels: a.Labels, Annotations: a.Annotations,
		ActiveAt: rpcTime(a.ActiveAt), StartedAt: rpcTime(a.StartedAt),
		AckedBy: a.AckedBy, AckedAt: rpcTime(a.AckedAt),
		SilencedBy: a.SilencedBy, Muted: a.Muted, NotifiedAt: rpcTime(a.NotifiedAt),
		UpdatedAt: rpcTime(a.UpdatedAt),
	}
}

// rpcTime is a time as a Timestamp; the zero time is unset.
func rpcTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// rpcTransport names a Watch stream by its protocol in
// vigil_stream_clients{transport}.
func rpcTransport(protocol string) transportName {
	switch protocol {
	case connect.ProtocolGRPC:
		return viaGRPC
	case connect.ProtocolGRPCWeb:
		return viaGRPCWeb
	}
	return viaConnect
}

// rpcStream is a Watch client: each batch of events is one
// WatchResponse, written under a deadline.
type rpcStream struct {
	s     *Server
	cache *rpcEvents
	out   *connect.ServerStream[vigilv1.WatchResponse]
	rc    *http.ResponseController // nil: no deadlines (not served through Server.rpc)
	via   transportName
	res   vigilv1.WatchResponse // the batch being written
	size  int                   // its events' encoded bytes
	moved bool                  // the batch's position is new, events or not
	err   error                 // the status the stream ends with
}

var _ transport = (*rpcStream)(nil)

func (t *rpcStream) name() transportName { return t.via }

// open sends nothing: the response's headers go with its first message,
// the position, which follows at once.
func (t *rpcStream) open(*stream.Subscriber) error { return nil }

func (t *rpcStream) write(ev *stream.Event) error {
	if !ev.IsHeartbeat() {
		msg, n := t.cache.get(ev)
		if t.size > 0 && t.size+n > rpcMaxBatch {
			// A response within what gRPC clients take by default (4 MiB):
			// the batch goes now, this event starts the next.
			if err := t.flush(true); err != nil {
				return err
			}
		}
		t.res.Events = append(t.res.Events, msg)
		t.size += n
	}
	t.res.Position, t.moved = ev.Position(), true
	return nil
}

func (t *rpcStream) position(id uint64) error {
	t.res.Position, t.moved = id, true
	return nil
}

func (t *rpcStream) flush(bool) error {
	if !t.moved {
		return nil
	}
	if t.rc != nil {
		_ = t.rc.SetWriteDeadline(time.Now().Add(t.s.opts.WriteTimeout))
	}
	err := t.out.Send(&t.res)
	t.res.Events, t.moved, t.size = t.res.Events[:0], false, 0
	if err == nil && t.rc != nil {
		// No deadline while idle: over HTTP/2 one that passes resets the
		// stream, written to or not.
		_ = t.rc.SetWriteDeadline(time.Time{})
	}
	return err
}

func (t *rpcStream) end(why error) {
	switch why {
	case stream.ErrSlow:
		t.s.opts.Logger.Debug("dropped slow stream client", "transport", t.via)
		t.err = connect.NewError(connect.CodeResourceExhausted, errors.New("this client fell too far behind the stream: watch again with after_id set to the last position"))
	case stream.ErrClosed:
		t.err = connect.NewError(connect.CodeUnavailable, errors.New("vigil is shutting down: watch again with after_id set to the last position"))
	}
}

// rpcCacheSize is how many events keep their message: the replay window
// and the live stream's recent events, which every Watch client sends.
const rpcCacheSize = 1024

// rpcEvents turns events into messages, and encodes them, once for every
// client, as the hub encodes their JSON once: the newest few are kept, by
// event. A message is shared by every stream that sends it and never
// changed.
type rpcEvents struct {
	mu   sync.Mutex
	msgs map[*stream.Event]*vigilv1.Event
	wire map[*vigilv1.Event][]byte // each kept message, encoded
	ring []*stream.Event           // the kept events, oldest at next once full
	next int
}

func newRPCEvents(n int) *rpcEvents {
	return &rpcEvents{msgs: make(map[*stream.Event]*vigilv1.Event, n), wire: make(map[*vigilv1.Event][]byte, n),
		ring: make([]*stream.Event, n)}
}

// get is an event's message and its encoded size, made once and kept,
// but for a reset's.
func (c *rpcEvents) get(ev *stream.Event) (*vigilv1.Event, int) {
	if ev.Type == stream.TypeReset {
		msg := rpcEvent(ev) // made for one client: nobody else sends it
		return msg, proto.Size(msg)
	}
	c.mu.Lock()
	msg, ok := c.msgs[ev]
	n := len(c.wire[msg])
	c.mu.Unlock()
	if ok {
		return msg, n
	}
	msg = rpcEvent(ev)
	b, err := proto.Marshal(msg)
	if err != nil {
		return msg, proto.Size(msg) // not kept: the codec encodes it itself
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if kept, ok := c.msgs[ev]; ok {
		return kept, len(c.wire[kept]) // made by another client meanwhile
	}
	if old := c.ring[c.next]; old != nil {
		delete(c.wire, c.msgs[old])
		delete(c.msgs, old)
	}
	c.ring[c.next] = ev
	c.next = (c.next + 1) % len(c.ring)
	c.msgs[ev], c.wire[msg] = msg, b
	return msg, len(b)
}

// rpcMaxBatch bounds the events of one WatchResponse, in encoded bytes,
// well within the 4 MiB gRPC clients take by default; a single event
// larger than that (a reset of a very large fleet) goes alone.
const rpcMaxBatch = 1 << 20

// encoded is a kept message's encoding.
func (c *rpcEvents) encoded(msg *vigilv1.Event) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.wire[msg]
	return b, ok
}

// rpcEvent is an event as a message: its data the same JSON object.
func rpcEvent(ev *stream.Event) *vigilv1.Event {
	data := new(structpb.Struct)
	if err := protojson.Unmarshal(ev.JSON(), data); err != nil {
		// The hub encodes every event as a JSON object; this would be a
		// bug there, and the client still gets the event's identity.
		data = nil
	}
	return &vigilv1.Event{Id: ev.ID, Type: ev.Type, Source: ev.Source, Time: timestamppb.New(ev.Time), Data: data}
}

// rpcCodec is connect's binary protobuf codec, except that a
// WatchResponse is written from its events' encodings, made once for
// every client (rpcEvents), not once each: a field of a message is its
// tag, its length and its encoding, so the bytes are the same message
// proto.Marshal would write (TestRPCCodec).
type rpcCodec struct{ cache *rpcEvents }

// The fields of a WatchResponse.
var (
	watchFields   = (*vigilv1.WatchResponse)(nil).ProtoReflect().Descriptor().Fields()
	watchEvents   = watchFields.ByName("events").Number()
	watchPosition = watchFields.ByName("position").Number()
)

func (rpcCodec) Name() string { return "proto" }

func (c rpcCodec) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend lets connect encode into its pooled buffers.
func (c rpcCodec) MarshalAppend(b []byte, m any) ([]byte, error) {
	res, ok := m.(*vigilv1.WatchResponse)
	if !ok {
		pm, ok := m.(proto.Message)
		if !ok {
			return nil, errors.New("not a protobuf message")
		}
		return proto.MarshalOptions{}.MarshalAppend(b, pm)
	}
	for _, ev := range res.Events {
		wire, ok := c.cache.encoded(ev)
		if !ok { // evicted since it was sent to the stream: rare
			var err error
			if wire, err = proto.Marshal(ev); err != nil {
				return nil, err
			}
		}
		b = protowire.AppendTag(b, watchEvents, protowire.BytesType)
		b = protowire.AppendBytes(b, wire)
	}
	if res.Position != 0 {
		b = protowire.AppendTag(b, watchPosition, protowire.VarintType)
		b = protowire.AppendVarint(b, res.Position)
	}
	return b, nil
}

func (rpcCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return errors.New("not a protobuf message")
	}
	return proto.Unmarshal(data, pm)
}

// rpcJSON is connect's JSON codec, except that empty lists and zero
// values are written, as the HTTP API writes them: {"alerts": []} when
// there are none, for jq and for clients that index without checking.
type rpcJSON string

func (c rpcJSON) Name() string { return string(c) }

func (c rpcJSON) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

func (rpcJSON) MarshalAppend(b []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, errors.New("not a protobuf message")
	}
	return protojson.MarshalOptions{EmitDefaultValues: true}.MarshalAppend(b, pm)
}

func (rpcJSON) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return errors.New("not a protobuf message")
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	// Unknown fields are let through, as connect's own codec does, so
	// that a client of a newer schema still works.
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, pm)
}

// rpcHealth answers the gRPC health check as /readyz does: SERVING when
// vigil is ready, or ready but degraded; NOT_SERVING while it starts,
// stops, or a check fails. The empty service is the server as a whole.
type rpcHealth struct{ s *Server }

func (h rpcHealth) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && req.Service != vigilv1connect.EventServiceName && req.Service != grpchealth.HealthV1ServiceName {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no service "+strconv.Quote(stream.Clip(req.Service, 128))+" here: ask for \"\" or "+vigilv1connect.EventServiceName))
	}
	if err := h.s.readiness(); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
