// Package cluster runs several vigil replicas on one NATS JetStream: the
// stream's events go into one JetStream stream that every replica reads,
// and an event's id is its sequence in that stream (plus the stream's
// epoch), the same on every replica, so a client resumes on any of them.
package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"vigil/stream"
)

// Stream defaults.
const (
	DefaultStream   = "VIGIL_EVENTS" // the JetStream stream of events
	DefaultSubject  = "vigil.events" // its subjects: vigil.events.<type>
	DefaultMaxAge   = 24 * time.Hour // events kept by age
	DefaultMaxBytes = 1 << 30        // and by size
	// DefaultCheck is how often a replica asks for the stream's state: a
	// stream deleted and made again, or one that lost events, begins a new
	// epoch, noticed within this.
	DefaultCheck = 5 * time.Second
)

// epochKey is the stream's metadata that holds its epoch: the id before
// its sequence 1. A stream made again begins a new one.
const epochKey = "vigil_epoch"

// Headers of an event's message; its data is the event's body.
const (
	hType    = "Vigil-Type"
	hSource  = "Vigil-Source"
	hKey     = "Vigil-Key"
	hTime    = "Vigil-Time" // RFC 3339, nanoseconds
	hReplica = "Vigil-Replica"
	hRole    = "Vigil-Role" // "agent" on what an agent pushes; none from a replica
)

// LogOptions configure a Log. Zero values take the defaults.
type LogOptions struct {
	Stream   string        // DefaultStream
	Subject  string        // DefaultSubject
	MaxAge   time.Duration // DefaultMaxAge
	MaxBytes int64         // DefaultMaxBytes
	Replicas int           // copies of the stream in a NATS cluster; 1
	Window   int           // events kept here for clients that resume: the hub's replay (stream.DefaultReplay)
	Replica  string        // this replica's name, on every event it publishes
	Check    time.Duration // DefaultCheck
	Logger   *slog.Logger
	Metrics  *metrics.Set
	Now      func() time.Time
}

// A Log is a stream.SharedLog on a JetStream stream. Append publishes an
// event; Run reads the stream from where this replica stands and hands
// every event, whoever published it, to the hub.
type Log struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts LogOptions

	mu      sync.Mutex // taken inside the hub's lock, never around a call to it
	epoch   uint64     // an event's id is epoch + its stream sequence; 0 until the stream is read
	head    uint64     // the newest id kept (epoch + start - 1 before any)
	window  *stream.Window
	errLast time.Time

	ready        chan struct{} // closed once the stream has been reached
	readyOnce    sync.Once
	published    *metrics.Counter
	publishErrs  *metrics.Counter
	received     *metrics.Counter
	epochs       *metrics.Counter
	reachable    sync.Mutex
	reachableErr error
}

var _ stream.SharedLog = (*Log)(nil)

// NewLog returns a log on the JetStream of nc; Run reads it.
func NewLog(nc *nats.Conn, opts LogOptions) (*Log, error) {
	opts.Stream = cmp.Or(opts.Stream, DefaultStream)
	opts.Subject = cmp.Or(opts.Subject, DefaultSubject)
	opts.MaxAge = cmp.Or(opts.MaxAge, DefaultMaxAge)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultMaxBytes)
	opts.Replicas = cmp.Or(opts.Replicas, 1)
	opts.Window = cmp.Or(opts.Window, stream.DefaultReplay)
	opts.Check = cmp.Or(opts.Check, DefaultCheck)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{nc: nc, opts: opts, window: stream.NewWindow(opts.Window), ready: make(chan struct{}), reachableErr: errors.New("the event stream has not been reached yet")}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(16384),
		jetstream.WithPublishAsyncTimeout(10*time.Second), // an ack that never comes is counted, not held for ever
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			l.publishFailed(m.Header.Get(hType), m.Header.Get(hSource), err)
		}))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	l.js = js
	l.published = opts.Metrics.NewCounter(`vigil_nats_events_published_total`)
	l.publishErrs = opts.Metrics.NewCounter(`vigil_nats_publish_errors_total`)
	l.received = opts.Metrics.NewCounter(`vigil_nats_events_received_total`)
	l.epochs = opts.Metrics.NewCounter(`vigil_nats_epochs_total`)
	opts.Metrics.NewGauge(`vigil_nats_connected`, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	return l, nil
}

// JetStream is the log's JetStream context, for the replica's buckets.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Ready is closed once the log has read its stream up to the end the
// stream had when it was first reached: a client that resumes here from
// another replica then finds its id.
func (l *Log) Ready() <-chan struct{} { return l.ready }

// Err says why the stream cannot be read now; nil while it is read.
func (l *Log) Err() error {
	if !l.nc.IsConnected() {
		return errors.New("not connected to NATS (" + strings.ToLower(l.nc.Status().String()) + ")")
	}
	l.reachable.Lock()
	defer l.reachable.Unlock()
	return l.reachableErr
}

func (l *Log) setErr(err error) {
	l.reachable.Lock()
	defer l.reachable.Unlock()
	l.reachableErr = err
}

// Append publishes an event to the stream and returns nil: it comes back
// through Run, numbered. It does not wait for NATS; an event NATS does not
// take is counted (vigil_nats_publish_errors_total) and logged once a
// minute, never handed back to the publisher as an error to retry.
func (l *Log) Append(e stream.Entry) (*stream.Event, error) {
	l.publish(e, false)
	return nil, nil
}

// publish sends an event to the stream without waiting; id, when set, is
// its Nats-Msg-Id: the stream takes one message of an id within its
// duplicate window (two minutes).
func (l *Log) publish(e stream.Entry, agent bool) {
	m := &nats.Msg{Subject: l.opts.Subject + "." + e.Type, Data: e.Body, Header: nats.Header{
		hType:    []string{e.Type},
		hTime:    []string{e.Time.UTC().Format(time.RFC3339Nano)},
		hReplica: []string{l.opts.Replica},
	}}
	if e.Source != "" {
		m.Header[hSource] = []string{e.Source}
	}
	if e.Key != "" {
		m.Header[hKey] = []string{e.Key}
	}
	if e.ID != "" {
		m.Header[nats.MsgIdHdr] = []string{e.ID}
	}
	if agent {
		m.Header[hRole] = []string{"agent"}
	}
	if _, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(10*time.Millisecond)); err != nil {
		l.publishFailed(e.Type, e.Source, err)
		return
	}
	l.published.Inc()
}

// Prepare makes the stream if there is none, trying again with backoff
// until it can or ctx is done: what an agent, which publishes to the
// stream and reads nothing of it, runs.
func (l *Log) Prepare(ctx context.Context) error {
	retry(ctx, func() (bool, error) {
		_, _, err := l.ensure(ctx, false) // an agent leaves the replicas' limits alone
		if err == nil {
			l.setErr(nil)
			l.readyOnce.Do(func() { close(l.ready) })
		}
		return false, err
	}, func(err error, wait time.Duration) {
		l.setErr(err)
		l.opts.Logger.Warn("making the event stream in NATS", "stream", l.opts.Stream, "err", err, "retry_in", wait)
	})
	return nil
}

// A Tee is the log of an agent that pushes into NATS (cluster.role:
// agent): its own stream numbers and keeps the events as always (Log, a
// MemoryLog), and a copy of each goes to the shared stream, where every
// replica takes it as it takes another replica's. The copy's Nats-Msg-Id
// is the agent's name and the event's own id.
type Tee struct {
	stream.Log
	Shared *Log
}

// Append numbers the event in the agent's log and publishes a copy.
func (t *Tee) Append(e stream.Entry) (*stream.Event, error) {
	ev, err := t.Log.Append(e)
	if err != nil {
		return nil, err
	}
	e.ID = t.Shared.opts.Replica + "-" + strconv.FormatUint(ev.ID, 10)
	t.Shared.publish(e, true)
	return ev, nil
}

func (l *Log) publishFailed(typ, source string, err error) {
	l.publishErrs.Inc()
	l.mu.Lock()
	now := l.opts.Now()
	quiet := now.Sub(l.errLast) < time.Minute
	if !quiet {
		l.errLast = now
	}
	l.mu.Unlock()
	if !quiet {
		l.opts.Logger.Error("publishing an event to NATS failed; counted in vigil_nats_publish_errors_total, logged once a minute",
			"type", typ, "source", source, "err", err)
	}
}

// Keep adds an event Run delivered to the window.
func (l *Log) Keep(ev *stream.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.head = ev.ID
	l.window.Keep(ev)
}

// After returns the events after id in the window.
func (l *Log) After(id uint64) ([]*stream.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldest := l.window.Oldest()
	switch {
	case id == l.head:
		return nil, nil
	case id > l.head:
		return nil, &stream.PositionError{ID: id, Reason: stream.ResetUnknown}
	case id < l.epoch:
		return nil, &stream.PositionError{ID: id, Reason: stream.ResetOtherRun}
	case oldest == nil || id+1 < oldest.ID:
		return nil, &stream.PositionError{ID: id, Reason: stream.ResetTooOld}
	}
	return l.window.After(id), nil
}

// Head is the id of the newest event delivered.
func (l *Log) Head() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// Epoch is the first id of the stream's epoch.
func (l *Log) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch + 1
}

// A Hub is what Run hands the events to: stream.Hub.
type Hub interface {
	Deliver(ev *stream.Event, key string) error
	NewEpoch()
}

// Run reads the stream and hands every event to hub, in order, then to
// took (nil: none) with who published it, until
// ctx is done or the hub closes. It makes the stream if there is none.
// While NATS cannot be reached it tries again with backoff, and carries
// on from where it stood.
func (l *Log) Run(ctx context.Context, hub Hub, took func(ev *stream.Event, from From)) error {
	retry(ctx, func() (bool, error) {
		caught, err := l.follow(ctx, hub, took)
		if errors.Is(err, stream.ErrClosed) {
			return caught, nil // the hub closed: vigil stops
		}
		return caught, err
	}, func(err error, wait time.Duration) {
		l.setErr(err)
		l.opts.Logger.Warn("reading the event stream from NATS", "stream", l.opts.Stream, "err", err, "retry_in", wait)
	})
	return nil
}

// errMoved ends a follow: the stream is not the one it was reading.
var errMoved = errors.New("the stream began a new epoch")

// follow reads the stream from where the log stands until an error. caught
// says it read at least once.
func (l *Log) follow(ctx context.Context, hub Hub, took func(*stream.Event, From)) (caught bool, err error) {
	s, epoch, err := l.ensure(ctx, true)
	if err != nil {
		return false, err
	}
	info := s.CachedInfo()
	if l.lost(epoch, info.State.LastSeq) {
		// The stream lost events this replica read (a NATS server that
		// lost its disk kept the stream): numbering it on would give their
		// ids to other events. A new epoch numbers above every id given.
		if err := l.rebase(ctx, s); err != nil {
			return false, err
		}
		return false, errMoved
	}
	start, moved := l.position(epoch, info.State.FirstSeq, info.State.LastSeq)
	if moved {
		l.epochs.Inc()
		hub.NewEpoch()
	}
	l.setErr(nil)
	// Ready once the stream's end as of now is read: a client that
	// resumes here from another replica finds its id.
	caughtUp := info.State.LastSeq
	if start > caughtUp {
		l.readyOnce.Do(func() { close(l.ready) })
	}
	// A consumer that cannot be made again within a few tries (no stream
	// leader, no permission) ends the follow, which Run reports in Err
	// and starts again from where it stood.
	cons, err := l.js.OrderedConsumer(ctx, l.opts.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start, MaxResetAttempts: 5})
	if err != nil {
		return false, err
	}
	// Heartbeats every second: a consumer lost with its NATS server is
	// noticed and made again on another within about two, not fifteen.
	it, err := cons.Messages(jetstream.PullMaxMessages(1024), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return false, err
	}
	defer it.Stop()
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(fctx, it.Stop)
	defer stop()
	go l.watch(fctx, cancel, s, epoch)

	next := start
	for {
		m, err := it.Next()
		if err != nil {
			if cause := context.Cause(fctx); cause != nil {
				err = cause
			}
			return true, err
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		if seq < next {
			return true, errMoved // it went back: events the stream lost are numbered again
		}
		next = seq + 1
		l.received.Inc()
		ev, key, from, err := decode(epoch+seq, m)
		from.Stored = meta.Timestamp
		if err != nil {
			l.opts.Logger.Warn("skipping an event of the stream vigil cannot read", "seq", seq, "subject", m.Subject(), "err", err)
		} else {
			if err := hub.Deliver(ev, key); err != nil {
				return true, err
			}
			if took != nil {
				took(ev, from)
			}
		}
		// Ready once the end's event is in the hub, not as it is read: a
		// client that asks for it at once finds it.
		if seq >= caughtUp {
			l.readyOnce.Do(func() {
				close(l.ready)
				l.opts.Logger.Info("read the shared event stream", "stream", l.opts.Stream, "epoch", epoch, "head", epoch+seq)
			})
		}
	}
}

// watch asks for the stream's state every Check, and ends the follow
// (cancel) when the stream is not the one it reads: made again (a new
// epoch), or without events this replica has read.
func (l *Log) watch(ctx context.Context, cancel context.CancelCauseFunc, s jetstream.Stream, epoch uint64) {
	t := time.NewTicker(l.opts.Check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The head first: events stored after the server answers may be
		// read before it is taken, and would pass for events the stream
		// lost.
		l.mu.Lock()
		seq := l.head - l.epoch
		l.mu.Unlock()
		ictx, done := context.WithTimeout(ctx, l.opts.Check)
		info, err := s.Info(ictx)
		done()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			cancel(fmt.Errorf("%w: %s was deleted", errMoved, l.opts.Stream))
			return
		case err != nil:
			continue // NATS away or slow: the consumer's own resets give up and say so
		}
		if epochOf(info) != epoch || info.State.LastSeq < seq {
			cancel(errMoved)
			return
		}
	}
}

// position says where to read from in the stream's epoch: after the
// newest event read if it is the epoch read so far, else the newest
// Window events. moved says the epoch is new, or events were lost.
func (l *Log) position(epoch, first, last uint64) (start uint64, moved bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == epoch {
		seq := l.head - l.epoch
		if seq+1 >= first {
			return seq + 1, false
		}
		// Events went by age before they were read.
		l.opts.Logger.Warn("events of the stream went by age before this replica read them; clients get a reset", "stream", l.opts.Stream, "read", seq, "first", first)
	}
	moved = l.epoch != 0
	start = max(first, 1)
	if last >= uint64(l.opts.Window) {
		start = max(start, last-uint64(l.opts.Window)+1)
	}
	l.epoch, l.head = epoch, epoch+start-1
	l.window.Clear()
	return start, moved
}

// lost says the stream, in the epoch read so far, ends before what this
// replica read.
func (l *Log) lost(epoch, last uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch == epoch && l.head-l.epoch > last
}

// rebase begins a new epoch on the stream: its metadata says it, and every
// replica sees it within Check.
func (l *Log) rebase(ctx context.Context, s jetstream.Stream) error {
	l.mu.Lock()
	next := max(stream.EpochStart(l.opts.Now()), l.head+1)
	l.mu.Unlock()
	cfg := s.CachedInfo().Config
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[epochKey] = strconv.FormatUint(next, 10)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s lost events; beginning a new epoch: %w", l.opts.Stream, err)
	}
	l.opts.Logger.Warn("the event stream lost events; it begins a new epoch and clients get a reset", "stream", l.opts.Stream, "epoch", next)
	return nil
}

// ensure returns the stream, made if there is none, with its epoch. With
// limits it sets the stream's age, size and copies to this vigil's
// configuration (a replica's is the one that counts).
func (l *Log) ensure(ctx context.Context, limits bool) (jetstream.Stream, uint64, error) {
	cfg := jetstream.StreamConfig{
		Name:        l.opts.Stream,
		Description: "vigil's events",
		Subjects:    []string{l.opts.Subject + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      l.opts.MaxAge,
		MaxBytes:    l.opts.MaxBytes,
		Replicas:    l.opts.Replicas,
		Duplicates:  min(2*time.Minute, l.opts.MaxAge), // the server refuses a window longer than the age
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := l.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg.Metadata = map[string]string{epochKey: strconv.FormatUint(stream.EpochStart(l.opts.Now()), 10)}
		s, err = l.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica made it first
			s, err = l.js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	info := s.CachedInfo()
	if have := info.Config; limits && (have.MaxAge != cfg.MaxAge || have.MaxBytes != cfg.MaxBytes || have.Replicas != cfg.Replicas) {
		l.opts.Logger.Info("setting the event stream's limits", "stream", cfg.Name, "max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes, "replicas", cfg.Replicas)
		have.MaxAge, have.MaxBytes, have.Replicas, have.Duplicates = cfg.MaxAge, cfg.MaxBytes, cfg.Replicas, min(have.Duplicates, cfg.MaxAge)
		if us, err := l.js.UpdateStream(ctx, have); err != nil {
			l.opts.Logger.Warn("updating the event stream's limits", "stream", cfg.Name, "err", err)
		} else {
			s, info = us, us.CachedInfo()
		}
	}
	return s, epochOf(info), nil
}

// epochOf is a stream's epoch: its metadata, or when it has none (made by
// hand) its creation time in microseconds.
func epochOf(info *jetstream.StreamInfo) uint64 {
	if e, err := strconv.ParseUint(info.Config.Metadata[epochKey], 10, 64); err == nil && e > 0 && e < stream.MaxID/2 {
		return e
	}
	return stream.EpochStart(info.Created)
}

// decode makes a message of the stream an event numbered id.
func decode(id uint64, m jetstream.Msg) (ev *stream.Event, key string, from From, err error) {
	h := m.Headers()
	typ := h.Get(hType)
	if typ == stream.TypeReset || !slices.Contains(stream.Types, typ) {
		// A newer vigil's type, or another publisher on the subjects:
		// what no client here knows is not passed on.
		return nil, "", from, fmt.Errorf("%s %q is not an event type this vigil sends", hType, stream.Clip(typ, 32))
	}
	t, err := time.Parse(time.RFC3339Nano, h.Get(hTime))
	if err != nil {
		return nil, "", from, fmt.Errorf("%s: %w", hTime, err)
	}
	source := h.Get(hSource)
	if len(source) > stream.MaxTextBytes || stream.Readable(source) != source {
		return nil, "", from, fmt.Errorf("%s %q is not readable text", hSource, stream.Clip(source, 32))
	}
	body := m.Data()
	// One line of JSON, an object: what Hub.Publish takes, and what an SSE
	// data line and an NDJSON line can carry.
	if len(body) > 0 && (body[0] != '{' || bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 || !json.Valid(body)) {
		return nil, "", from, errors.New("the body is not a JSON object on one line")
	}
	from = From{Replica: h.Get(hReplica), Agent: h.Get(hRole) == "agent"}
	return stream.NewEvent(id, typ, source, t, body), h.Get(hKey), from, nil
}

// From says who published an event of the stream, and when.
type From struct {
	Replica string    // its cluster.name
	Agent   bool      // an agent that pushes (cluster.role: agent), not a replica
	Stored  time.Time // when the stream stored it, by the NATS server's clock
}
