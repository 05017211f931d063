package stream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Hub defaults.
const (
	DefaultReplay    = 4096             // events kept for resuming clients
	DefaultQueue     = 256              // events a subscriber may fall behind before it is dropped
	DefaultHeartbeat = 10 * time.Second // idle time after which subscribers get a heartbeat
)

// Errors a Subscriber reports once it is done.
var (
	ErrClosed = errors.New("stream: hub closed")
	ErrSlow   = errors.New("stream: subscriber too slow, disconnected; resume with Last-Event-ID")
	ErrEpoch  = errors.New("stream: the shared log began a new epoch; resume with Last-Event-ID for a reset")
)

// HubOptions configure a Hub. Zero values take the defaults.
type HubOptions struct {
	Replay    int           // events kept for resuming; DefaultReplay
	Queue     int           // per-subscriber queue; DefaultQueue
	Heartbeat time.Duration // DefaultHeartbeat
	// FirstID is the id of the first event of the default MemoryLog. Ids
	// then increase by one. Zero means the current time in microseconds,
	// which keeps ids increasing across restarts; see NextRunID.
	FirstID uint64
	// Log numbers and keeps the events; nil is a MemoryLog of Replay
	// events from FirstID.
	Log     Log
	Now     func() time.Time
	Metrics *metrics.Set // nil: a private set
	// History, when set, keeps alert and source events beyond the
	// window: Run writes them to it, and a client that lost its position
	// gets, in its reset, every one it missed.
	History History
	Logger  *slog.Logger // nil: discard
}

// A History keeps the events that are history — alert and source
// transitions — beyond the replay window and across restarts.
// Implementations must be safe for concurrent use.
type History interface {
	// Append saves events, given in id order.
	Append(ctx context.Context, evs []*Event) error
	// After returns the events after id that match, oldest first: the
	// newest limit of them, and how many older ones it left out.
	After(ctx context.Context, id uint64, match func(*Event) bool, limit int) ([]*Event, int, error)
}

// History limits.
const (
	MaxResetHistory = 1000   // transitions a reset carries at most; older ones are counted as omitted
	maxPending      = 10_000 // history events waiting to be written; beyond, the oldest are dropped and counted
)

// isHistory reports whether events of a type are history (each one
// counts) rather than state (the newest says it all).
func isHistory(typ string) bool { return typ == TypeAlert || typ == TypeSource }

// A Hub assigns every event its id, keeps a window of recent events for
// clients that resume, and fans events out to subscribers.
//
// Publish never waits for a subscriber: each has a bounded queue, and one
// whose queue is full is disconnected (Subscriber.Done) and counted; it
// resumes from the replay window with its last event id. All methods are
// safe for concurrent use. After Close, Publish and Subscribe return
// ErrClosed.
type Hub struct {
	opts HubOptions

	mu     sync.Mutex
	log    Log       // guarded by mu
	shared SharedLog // the log, when it is shared; nil otherwise
	latest map[string]*Event
	subs   []*Subscriber
	closed bool

	pending    []*Event      // history events not yet written to opts.History
	flush      chan struct{} // a signal to Run that pending has events
	historyErr time.Time     // when a failed write was last logged

	nsubs          atomic.Int64
	published      map[string]*metrics.Counter
	dropped        *metrics.Counter
	resets         map[string]*metrics.Counter
	historyErrors  *metrics.Counter
	historyDropped *metrics.Counter
}

// NewHub returns a hub; call Run to send heartbeats.
func NewHub(opts HubOptions) *Hub {
	opts.Replay = cmp.Or(max(opts.Replay, 0), DefaultReplay)
	opts.Queue = cmp.Or(max(opts.Queue, 0), DefaultQueue)
	opts.Heartbeat = cmp.Or(max(opts.Heartbeat, 0), DefaultHeartbeat)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = NewMemoryLog(opts.FirstID, opts.Replay, opts.Now)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		opts:      opts,
		log:       opts.Log,
		latest:    make(map[string]*Event),
		flush:     make(chan struct{}, 1),
		published: make(map[string]*metrics.Counter),
		resets:    make(map[string]*metrics.Counter),
	}
	h.shared, _ = opts.Log.(SharedLog)
	for _, t := range Types {
		h.published[t] = opts.Metrics.NewCounter(`vigil_events_published_total{type="` + t + `"}`)
	}
	for _, r := range []string{ResetMalformed, ResetOtherRun, ResetTooOld, ResetUnknown} {
		h.resets[r] = opts.Metrics.NewCounter(`vigil_stream_resets_total{reason="` + r + `"}`)
	}
	h.historyErrors = opts.Metrics.NewCounter(`vigil_store_errors_total{op="save_history"}`)
	h.historyDropped = opts.Metrics.NewCounter(`vigil_history_dropped_total`)
	h.dropped = opts.Metrics.NewCounter(`vigil_subscribers_dropped_total{reason="slow"}`)
	opts.Metrics.NewGauge(`vigil_subscribers`, func() float64 { return float64(h.nsubs.Load()) })
	return h
}

// FirstID is the id of this run's (or epoch's) first event.
func (h *Hub) FirstID() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.Epoch()
}

// LastID is the id of the newest event, or FirstID-1 before the first.
func (h *Hub) LastID() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.Head()
}

// Publish assigns the message the next id, encodes it, keeps it in the
// replay window and queues it for every matching subscriber. It never
// blocks on a subscriber. With a SharedLog it only sends the message to
// the log and returns a nil event: the event comes back through Deliver.
func (h *Hub) Publish(m Message) (*Event, error) {
	if _, ok := h.published[m.Type]; !ok || m.Type == TypeReset {
		return nil, fmt.Errorf("stream: publish: unknown event type %q", m.Type)
	}
	var body []byte
	if raw, ok := m.Body.(json.RawMessage); ok {
		// Encoded already (a hub republishing an agent's sample): taken
		// as it is, once it is seen to be an object on one line.
		if len(raw) < 2 || raw[0] != '{' || bytes.IndexByte(raw, '\n') >= 0 {
			return nil, fmt.Errorf("stream: publish %s %s: body is not a JSON object on one line", m.Type, m.Source)
		}
		body = raw
	} else if m.Body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // "op":">" rather than "\u003e": this is not HTML
		if err := enc.Encode(m.Body); err != nil {
			return nil, fmt.Errorf("stream: publish %s %s: %w", m.Type, m.Source, err)
		}
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if len(b) < 2 || b[0] != '{' {
			return nil, fmt.Errorf("stream: publish %s %s: body is not a JSON object", m.Type, m.Source)
		}
		body = b
	}
	if m.Time.IsZero() {
		m.Time = h.opts.Now()
	}

	if shared := h.shared; shared != nil {
		// Sent, not kept: the event comes back through Deliver. Not under
		// the lock, so that a NATS that is slow to take it holds up no
		// subscriber and no delivery.
		h.mu.Lock()
		closed := h.closed
		h.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if _, ok := m.Body.(json.RawMessage); ok {
			body = bytes.Clone(body) // the log sends it later; the caller's buffer is the caller's
		}
		if _, err := shared.Append(Entry{Type: m.Type, Source: m.Source, Key: m.Key, ID: m.ID, Time: m.Time, Body: body}); err != nil {
			return nil, fmt.Errorf("stream: publish %s %s: %w", m.Type, m.Source, err)
		}
		return nil, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	ev, err := h.log.Append(Entry{Type: m.Type, Source: m.Source, Key: m.Key, ID: m.ID, Time: m.Time, Body: body})
	if err != nil {
		return nil, fmt.Errorf("stream: publish %s %s: %w", m.Type, m.Source, err)
	}
	h.deliverLocked(ev, m.Key)
	return ev, nil
}

// Deliver takes an event from a SharedLog, numbered by it, and sends it
// as Publish would: into the log's window, the newest under key (if not
// empty), the history, every matching subscriber. A SharedLog calls it
// once an event, in id order.
func (h *Hub) Deliver(ev *Event, key string) error {
	if h.shared == nil {
		return errors.New("stream: deliver: the hub's log is not shared")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.shared.Keep(ev)
	h.deliverLocked(ev, key)
	return nil
}

// NewEpoch disconnects every subscriber (ErrEpoch) and forgets the newest
// events by key: the SharedLog lost what it held (its stream was deleted
// or its server lost its data) and numbers events in a new epoch, so every
// client must resume, and gets a reset.
func (h *Hub) NewEpoch() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.latest)
	for len(h.subs) > 0 {
		h.removeLocked(h.subs[len(h.subs)-1], ErrEpoch)
	}
}

// deliverLocked sends an event numbered by the log to what keeps it and
// to every subscriber it matches.
func (h *Hub) deliverLocked(ev *Event, key string) {
	if key != "" {
		h.latest[key] = ev
	}
	if h.opts.History != nil && isHistory(ev.Type) {
		if len(h.pending) == maxPending {
			h.pending = h.pending[1:]
			h.historyDropped.Inc()
		}
		h.pending = append(h.pending, ev)
		select {
		case h.flush <- struct{}{}:
		default:
		}
	}
	if c := h.published[ev.Type]; c != nil { // a SharedLog passes only known types; a nil counter must not crash the hub
		c.Inc()
	}
	for i := 0; i < len(h.subs); {
		s := h.subs[i]
		if !s.match(ev) {
			i++
			continue
		}
		select {
		case s.c <- ev:
			i++
		default:
			h.dropped.Inc()
			h.removeLocked(s, ErrSlow) // swaps another subscriber into i
		}
	}
}

// Forget drops the newest event under each key (a source that went
// away): a reset snapshot carries it no more.
func (h *Hub) Forget(keys ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		delete(h.latest, k)
	}
}

// Subscribe registers a subscriber that receives, in order and without
// gaps or repeats: the events after the cursor still in the window (in
// Subscriber.Replay), then live events on C(). If the cursor cannot be
// resumed from, Replay holds a single reset event instead, carrying the
// newest event of every key that matches the filter and — with a History —
// every alert and source event the client missed, in order. Head is the
// position after Replay.
func (h *Hub) Subscribe(cur Cursor, f Filter) (*Subscriber, error) {
	s := &Subscriber{
		hub:    h,
		filter: f,
		all:    f.IsZero(),
		c:      make(chan *Event, h.opts.Queue),
		done:   make(chan struct{}),
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	var lost *resetPlan
	if cur.LastID != "" {
		s.Replay, lost = h.replayLocked(cur.LastID, s)
	}
	s.Head = h.log.Head()
	s.index = len(h.subs)
	h.subs = append(h.subs, s)
	h.nsubs.Add(1)
	h.mu.Unlock()
	if lost != nil {
		// Reading the history is I/O: not under the lock. Live events
		// queue meanwhile, after Head.
		s.Replay = []*Event{h.reset(lost, s)}
	}
	return s, nil
}

// A resetPlan is what a reset is built from, gathered under the lock.
type resetPlan struct {
	reason, last string
	after        uint64   // the client's id, when the history may hold what it missed
	head         uint64   // the reset's id: the newest event's
	state        []*Event // the newest event of every key that matches
	recent       []*Event // history events after the client's id not yet written to the History
}

func (h *Hub) replayLocked(last string, s *Subscriber) ([]*Event, *resetPlan) {
	id, err := ParseID(last)
	if err != nil {
		return nil, h.planLocked(ResetMalformed, last, 0, s)
	}
	evs, err := h.log.After(id)
	var lost *PositionError
	switch {
	case errors.As(err, &lost) && lost.Reason == ResetUnknown:
		return nil, h.planLocked(lost.Reason, last, 0, s) // nothing after it to tell of
	case errors.As(err, &lost):
		return nil, h.planLocked(lost.Reason, last, id, s)
	case err != nil:
		return nil, h.planLocked(ResetUnknown, last, 0, s)
	}
	out := evs[:0:0]
	for _, ev := range evs {
		if s.match(ev) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// planLocked gathers, under the lock, what a reset is built from: the
// newest state of every key, and the history events not written yet (the
// others the History has).
func (h *Hub) planLocked(reason, last string, after uint64, s *Subscriber) *resetPlan {
	h.resets[reason].Inc()
	p := &resetPlan{reason: reason, last: last, after: after, head: h.log.Head()}
	for _, ev := range h.latest {
		if s.match(ev) {
			p.state = append(p.state, ev)
		}
	}
	if after > 0 && h.opts.History != nil {
		for _, ev := range h.pending {
			if ev.ID > after && s.match(ev) {
				p.recent = append(p.recent, ev)
			}
		}
	}
	return p
}

// historyTimeout bounds reading the history for one reset.
const historyTimeout = 5 * time.Second

// reset builds a reset event for one subscriber: its id is the newest
// event's, so the client resumes from there, and its data carries the
// newest event of every key and every history event the client missed,
// oldest first.
func (h *Hub) reset(p *resetPlan, s *Subscriber) *Event {
	byIDs := map[uint64]*Event{}
	for _, ev := range p.state {
		byIDs[ev.ID] = ev
	}
	omitted := 0
	if p.after > 0 && h.opts.History != nil {
		ctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
		missed, n, err := h.opts.History.After(ctx, p.after, s.match, MaxResetHistory)
		cancel()
		if err != nil {
			h.opts.Logger.Warn("reading the event history for a reset", "err", err)
		}
		omitted = n
		for _, ev := range append(missed, p.recent...) {
			if ev.ID <= p.head {
				byIDs[ev.ID] = ev
			}
		}
	}
	snap := make([]*Event, 0, len(byIDs))
	for _, ev := range byIDs {
		snap = append(snap, ev)
	}
	slices.SortFunc(snap, byID)
	var body bytes.Buffer
	body.WriteString(`{"reason":`)
	writeJSONString(&body, p.reason)
	body.WriteString(`,"last_event_id":`)
	writeJSONString(&body, Clip(p.last, 32))
	if omitted > 0 {
		body.WriteString(`,"omitted":`)
		body.WriteString(strconv.Itoa(omitted))
	}
	body.WriteString(`,"events":[`)
	for i, ev := range snap {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(ev.data)
	}
	body.WriteString(`]}`)
	return encodeEvent(p.head, TypeReset, "", h.opts.Now(), body.Bytes())
}

func (h *Hub) removeLocked(s *Subscriber, why error) {
	if s.index < 0 {
		return
	}
	last := len(h.subs) - 1
	h.subs[s.index] = h.subs[last]
	h.subs[s.index].index = s.index
	h.subs[last] = nil
	h.subs = h.subs[:last]
	s.index = -1
	s.err = why
	close(s.done)
	h.nsubs.Add(-1)
}

// Run sends a heartbeat to every subscriber with nothing queued, every
// heartbeat interval, and writes history events to the History, until ctx
// is done or the hub is closed. A heartbeat carries the newest id: every
// event before it that the subscriber wanted has been sent, so it is a
// position to resume from even for a subscriber whose filter matched
// nothing for a long time.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(h.opts.Heartbeat)
	defer t.Stop()
	defer func() { // what is left, as vigil stops: briefly, a stop must not wait on a disk
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		h.writeHistory(fctx)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.flush:
			h.writeHistory(ctx)
		case <-t.C:
			h.mu.Lock()
			if h.closed {
				h.mu.Unlock()
				return nil
			}
			beat := heartbeatAt(h.log.Head())
			for _, s := range h.subs {
				if len(s.c) == 0 {
					select {
					case s.c <- beat:
					default:
					}
				}
			}
			again := len(h.pending) > 0 // after a failed write
			h.mu.Unlock()
			if again {
				h.writeHistory(ctx)
			}
		}
	}
}

func (h *Hub) pendingCopy() []*Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.pending)
}

// writeHistory writes the pending history events. On failure they stay
// pending (the oldest dropped past maxPending) and the failure is counted
// and logged once a minute.
func (h *Hub) writeHistory(ctx context.Context) {
	evs := h.pendingCopy()
	if len(evs) == 0 || h.opts.History == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, historyTimeout)
	err := h.opts.History.Append(wctx, evs)
	cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.historyErrors.Inc()
		if now := h.opts.Now(); now.Sub(h.historyErr) >= time.Minute {
			h.historyErr = now
			h.opts.Logger.Error("writing the event history failed; retried every heartbeat", "err", err, "waiting", len(h.pending))
		}
		return
	}
	// Events published meanwhile came after these.
	n := 0
	for n < len(h.pending) && n < len(evs) && h.pending[n] == evs[n] {
		n++
	}
	h.pending = append(h.pending[:0], h.pending[n:]...)
}

// Close disconnects every subscriber; later calls do nothing.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for len(h.subs) > 0 {
		h.removeLocked(h.subs[len(h.subs)-1], ErrClosed)
	}
}

// Subscribers is the number of subscribers connected now.
func (h *Hub) Subscribers() int { return int(h.nsubs.Load()) }

// Snapshot returns the newest event of every key that f matches, oldest
// first, and the id of the newest event.
func (h *Hub) Snapshot(f Filter) ([]*Event, uint64) {
	s := &Subscriber{filter: f, all: f.IsZero()}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Event
	for _, ev := range h.latest {
		if s.match(ev) {
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, byID)
	return out, h.log.Head()
}

// A Subscriber receives events from a Hub. Its methods are safe for
// concurrent use.
type Subscriber struct {
	// Replay holds the events to send before any from C, fixed at
	// Subscribe.
	Replay []*Event
	// Head is the id of the newest event when the subscriber was
	// registered: once Replay is sent, the client stands there (a
	// position to resume from, even if its filter matched nothing).
	Head uint64

	hub    *Hub
	filter Filter
	all    bool
	c      chan *Event
	done   chan struct{}
	index  int   // in hub.subs; -1 once removed; guarded by hub.mu
	err    error // why done was closed; guarded by hub.mu
}

func (s *Subscriber) match(ev *Event) bool {
	return s.all || s.filter.Match(ev.Type, ev.Source)
}

// Caught returns the newest id when nothing is waiting on C: the
// subscriber has had every event up to it that its filter matched, and
// a client can move on to it. ok is false while events are queued.
func (s *Subscriber) Caught() (id uint64, ok bool) {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if len(s.c) > 0 || s.index < 0 {
		return 0, false
	}
	return s.hub.log.Head(), true
}

// C delivers live events, and heartbeats when idle.
func (s *Subscriber) C() <-chan *Event { return s.c }

// Done is closed when the subscriber is disconnected: the hub closed, or the
// subscriber fell too far behind. Err says which.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err is nil while the subscriber is connected, then ErrClosed or ErrSlow.
func (s *Subscriber) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close unsubscribes; it is idempotent.
func (s *Subscriber) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s, nil)
}
