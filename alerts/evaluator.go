package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/stream"
)

// Alert states.
const (
	StateInactive = "inactive"
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved" // a transition; the alert is inactive afterwards
	StateNoData   = "nodata"
)

// KindAcknowledged is the transition announced when someone acknowledges
// an active alert. It changes no state and sends no webhook.
const KindAcknowledged = "acknowledged"

// KindSilenced and KindUnsilenced are announced when the silences that
// mute an active alert change (silences.go): a silence began or ended.
// They change no state; an unsilenced alert whose firing was muted sends
// it then (Transition.Late).
const (
	KindSilenced   = "silenced"
	KindUnsilenced = "unsilenced"
)

// ErrNotActive is returned when acknowledging an alert that is not
// pending, firing or without data.
var ErrNotActive = errors.New("alerts: no pending, firing or nodata alert has that fingerprint")

// ErrStore wraps the error of a store that refused to save (a full disk):
// an alert's transition, an acknowledgement, a receiver's change.
var ErrStore = errors.New("alerts: the store cannot save")

// An AckRequest is an acknowledgement made on a replica that does not
// evaluate the rules, for the one that does.
type AckRequest struct {
	Fingerprint string    `json:"-"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	Revision    uint64    `json:"-"` // the queue's, so that removing it leaves a newer request alone
}

// An AckQueue carries acknowledgements from the replicas that do not
// evaluate the rules to the one that does (cluster.AlertStates).
type AckQueue interface {
	RequestAck(ctx context.Context, r AckRequest) error
	PendingAcks() []AckRequest
	DoneAck(ctx context.Context, r AckRequest) error
}

// A Versioned StateStore says when its states change (cluster.AlertStates
// counts the changes it watches): a replica that does not hold the lease
// reads them again only then, not every interval.
type Versioned interface {
	Version() uint64
}

// A Resumer is a StateStore with work that a holder of the alert lease
// may have left half done when it died or was cut off
// (cluster.AlertStates: the webhooks of transitions it saved). The
// evaluator calls Resume when it takes the lease, once it has read the
// states.
type Resumer interface {
	Resume(ctx context.Context)
}

// ErrNotLeader: another replica holds the alert lease and evaluates the
// rules; acknowledgements are made there.
var ErrNotLeader = errors.New("alerts: another replica evaluates the alerts now")

// An Alert is one (rule, source, metric) and where it stands.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Rule        string            `json:"rule"`
	Source      string            `json:"source,omitempty"` // left out of alert events, whose own "source" says it
	Metric      string            `json:"metric"`
	State       string            `json:"state"`
	Value       float64           `json:"value"`
	Threshold   float64           `json:"threshold"`
	Op          string            `json:"op"`
	Severity    string            `json:"severity"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	ActiveAt    time.Time         `json:"active_at,omitzero"`  // pending (or firing, without for) since
	StartedAt   time.Time         `json:"started_at,omitzero"` // firing since
	EndedAt     time.Time         `json:"ended_at,omitzero"`   // resolved at
	ClearedAt   time.Time         `json:"-"`                   // value back to normal while firing (keep_firing_for)
	AckedBy     string            `json:"acked_by,omitempty"`  // who acknowledged it, until it ends
	AckedAt     time.Time         `json:"acked_at,omitzero"`
	SilencedBy  []string          `json:"silenced_by,omitempty"` // the ids of the active silences that mute it
	Muted       bool              `json:"muted,omitempty"`       // it fired while silenced, and its firing was not sent
	NotifiedAt  time.Time         `json:"notified_at,omitzero"`  // when its firing was sent: when it fired, or (late) when its silences ended
	UpdatedAt   time.Time         `json:"updated_at"`
}

// Fingerprint identifies an alert across restarts.
func Fingerprint(rule, source, metric string) string {
	h := sha256.Sum256([]byte(rule + "\x00" + source + "\x00" + metric))
	return hex.EncodeToString(h[:8])
}

// step moves an alert given the rule's value now (ok false: no data) and
// returns the transition to announce, or "" for none. It is the whole state
// machine and does no I/O. An acknowledgement lasts until the alert is
// inactive again.
func (r *Rule) step(a *Alert, v float64, ok bool, now time.Time) string {
	kind := r.move(a, v, ok, now)
	if a.State == StateInactive {
		a.AckedBy, a.AckedAt = "", time.Time{}
	}
	return kind
}

func (r *Rule) move(a *Alert, v float64, ok bool, now time.Time) string {
	a.UpdatedAt = now
	if !ok {
		if a.State == StateNoData {
			return ""
		}
		a.State = StateNoData
		a.ActiveAt, a.ClearedAt = now, time.Time{}
		return StateNoData
	}
	a.Value = v
	switch a.State {
	case StateFiring:
		if !r.cleared(v) {
			a.ClearedAt = time.Time{}
			return ""
		}
		if a.ClearedAt.IsZero() {
			a.ClearedAt = now
		}
		if now.Sub(a.ClearedAt) < r.KeepFiringFor {
			return ""
		}
		a.State, a.EndedAt, a.ClearedAt = StateInactive, now, time.Time{}
		return StateResolved
	case StatePending:
		if !r.breaches(v) {
			a.State, a.ActiveAt = StateInactive, time.Time{}
			return StateInactive
		}
		if now.Sub(a.ActiveAt) >= r.For {
			a.State, a.StartedAt, a.EndedAt = StateFiring, now, time.Time{}
			return StateFiring
		}
		return ""
	default: // inactive, nodata, or new
		if !r.breaches(v) {
			if a.State == StateNoData {
				a.State, a.ActiveAt = StateInactive, time.Time{}
				return StateInactive
			}
			a.State = StateInactive
			return ""
		}
		// A new episode: the last one's start and end are not its own.
		a.ActiveAt, a.StartedAt, a.EndedAt = now, time.Time{}, time.Time{}
		if r.For <= 0 {
			a.State, a.StartedAt, a.EndedAt = StateFiring, now, time.Time{}
			return StateFiring
		}
		a.State = StatePending
		return StatePending
	}
}

// A Transition is one alert's change of state, as announced.
type Transition struct {
	Kind  string // StatePending, StateFiring, StateResolved, StateInactive, StateNoData, or one of the Kind constants
	Alert Alert
	// Late, on an unsilenced alert that fires, says its firing was muted
	// and is sent now (at Alert.UpdatedAt).
	Late bool
}

// Webhook is the webhook a transition sends, as the transition to render
// it from; ok false: none. A silenced alert sends nothing; a resolution
// is sent unless its firing was muted; an alert's muted firing is sent
// late when its silences end.
func (t Transition) Webhook() (w Transition, ok bool) {
	switch {
	case t.Late:
		return Transition{Kind: StateFiring, Alert: t.Alert, Late: true}, len(t.Alert.SilencedBy) == 0
	case WebhookEvent(t.Kind) == "":
		return t, false
	case t.Kind == StateResolved:
		return t, !t.Alert.Muted
	}
	return t, len(t.Alert.SilencedBy) == 0
}

// A StateStore keeps alert states (and, with them, whatever must change
// in the same transaction: DB adds the webhooks' outbox events).
// Implementations must be safe for concurrent use.
type StateStore interface {
	LoadAlerts(ctx context.Context) ([]Alert, error)
	// SaveTransitions writes the new states of the alerts that changed,
	// atomically.
	SaveTransitions(ctx context.Context, ts []Transition) error
}

// Publisher is what the evaluator needs of the hub.
type Publisher interface {
	Publish(m stream.Message) (*stream.Event, error)
}

// Evaluator runs the rules over the ring buffer every interval. Reading the
// ring rather than decoding events keeps windows (avg over 1m) a lookup,
// and means the evaluator can never be a slow subscriber.
//
// A transition is saved before it takes effect: while the store refuses
// writes (a full disk), every alert stays in its last saved state and the
// same transitions are made again on the next evaluation, so nothing is
// announced or sent that is not saved, and nothing is lost.
type Evaluator struct {
	Rules    []Rule
	Ring     *collector.Store // the samples the rules read
	Hub      Publisher
	States   StateStore // may be nil: states then live in memory only
	Interval time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
	Metrics  *metrics.Set // nil: a private set
	// Saved, when set, is called after transitions were saved (to wake
	// the webhook dispatcher).
	Saved func()
	// Lead, when set, says whether this replica evaluates the rules now
	// (it holds the alert lease, cluster.Lease) and the lease's term. A
	// replica that does not reads the states from States every interval —
	// the holder's, in a store the replicas share — and changes nothing;
	// one that takes the lease reads them once more and evaluates on from
	// there, so a takeover neither fires an alert again nor forgets one.
	// until is when the lease runs out if not written again: a save must
	// end before it (it is the save's deadline). nil: always.
	Lead func() (held bool, term uint64, until time.Time)
	// Acks, with Lead, carries an acknowledgement made on a replica that
	// does not hold the lease to the one that does, which applies it
	// within an interval; nil: such a replica answers ErrNotLeader.
	Acks AckQueue
	// Silences mute alerts (silences.go), read every evaluation; nil:
	// none.
	Silences SilenceStore

	write    sync.Mutex // held by Evaluate and Ack, the only writers, from their first read to their commit
	repeatMu sync.Mutex
	repeated time.Time  // when the firing alerts were last handed to a Repeater; guarded by repeatMu
	mu       sync.Mutex // guards the maps and the alerts in them
	alerts   map[string]*Alert
	rules    map[string]*Rule
	series   map[string]*series      // every alert's series, by fingerprint
	watches  map[string]*sourceWatch // by source
	steps    uint64                  // steps run
	points   []collector.Point       // a step's: a window's points, for each series in turn
	silences []Silence               // as last read from Silences; guarded by write

	leading     atomic.Bool   // evaluating, as of the last interval (with Lead)
	term        atomic.Uint64 // the lease's term it evaluates in
	loaded      uint64        // a Versioned store's version when last read, plus one; guarded by write
	failure     storeFailure
	storeErrors *metrics.Counter
	transitions map[string]*metrics.Counter
}

// storeFailure is the state of a store that refuses writes; guarded by
// Evaluator.mu.
type storeFailure struct {
	err      error
	since    time.Time
	loggedAt time.Time
	count    int
}

// failureLogEvery is how often a store that keeps failing is logged.
const failureLogEvery = time.Minute

// Load restores saved states; call it before Run.
func (e *Evaluator) Load(ctx context.Context) error {
	e.init()
	if e.States == nil {
		return nil
	}
	saved, err := e.States.LoadAlerts(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.restoreLocked(saved)
	return nil
}

// restoreLocked takes saved alerts whose rule is still there.
func (e *Evaluator) restoreLocked(saved []Alert) {
	now := e.Now()
	for _, a := range saved {
		if _, ok := e.rules[a.Rule]; !ok {
			continue // the rule is gone
		}
		a := a
		e.alerts[a.Fingerprint] = &a
		// Sources get the rule's no-data time to report after a restart
		// (or a takeover) before their alerts count as silent.
		e.series[a.Fingerprint] = &series{alert: &a, seenAt: now}
	}
}

func (e *Evaluator) init() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.alerts != nil {
		return
	}
	e.alerts = map[string]*Alert{}
	e.rules = map[string]*Rule{}
	e.series = map[string]*series{}
	e.watches = map[string]*sourceWatch{}
	for i := range e.Rules {
		e.rules[e.Rules[i].Name] = &e.Rules[i]
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Interval <= 0 {
		e.Interval = time.Second
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Metrics == nil {
		e.Metrics = metrics.NewSet()
	}
	e.storeErrors = e.Metrics.GetOrCreateCounter(`vigil_store_errors_total{op="save_alerts"}`)
	e.transitions = map[string]*metrics.Counter{}
	for _, k := range []string{StatePending, StateFiring, StateResolved, StateInactive, StateNoData, KindAcknowledged, KindSilenced, KindUnsilenced} {
		e.transitions[k] = e.Metrics.GetOrCreateCounter(`vigil_alert_transitions_total{transition="` + k + `"}`)
	}
}

// Run evaluates every interval until ctx is done.
func (e *Evaluator) Run(ctx context.Context) error {
	e.init()
	t := time.NewTicker(e.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if !e.lead(ctx) {
				continue
			}
			e.applyAcks(ctx)
			// A failing store is logged by save, once a minute.
			if err := e.Evaluate(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrStore) {
				e.Logger.Error("evaluate alert rules", "err", err)
			}
		}
	}
}

// lead says whether to evaluate this interval (see Lead): a replica that
// does not hold the lease reads the holder's states; one that has just
// taken it reads them before it evaluates.
func (e *Evaluator) lead(ctx context.Context) bool {
	if e.Lead == nil {
		return true
	}
	held, term, _ := e.Lead()
	switch {
	case !held:
		if e.leading.Swap(false) {
			e.Logger.Warn("not evaluating the alert rules: this replica no longer holds the alert lease")
		}
		if err := e.reload(ctx, false); err != nil && !errors.Is(err, context.Canceled) {
			e.Logger.Debug("reading the alert states", "err", err)
		}
		return false
	case !e.leading.Load() || term != e.term.Load():
		if err := e.reload(ctx, true); err != nil {
			if !errors.Is(err, context.Canceled) {
				e.Logger.Error("reading the alert states before evaluating; tried again next interval", "err", err)
			}
			return false
		}
		e.term.Store(term)
		e.leading.Store(true)
		e.Logger.Info("evaluating the alert rules: this replica holds the alert lease")
		if r, ok := e.States.(Resumer); ok {
			r.Resume(ctx)
		}
	}
	return true
}

// applyAcks applies the acknowledgements other replicas passed on.
func (e *Evaluator) applyAcks(ctx context.Context) {
	if e.Acks == nil {
		return
	}
	for _, r := range e.Acks.PendingAcks() {
		e.write.Lock()
		_, err := e.ackLocked(ctx, r.Fingerprint, r.By, r.At)
		e.write.Unlock()
		switch {
		case errors.Is(err, ErrNotLeader):
			return // the lease went meanwhile: the next holder applies it
		case err != nil && !errors.Is(err, ErrNotActive):
			e.Logger.Warn("applying an acknowledgement made on another replica; tried again", "fingerprint", r.Fingerprint, "err", err)
			continue
		}
		if err := e.Acks.DoneAck(ctx, r); err != nil {
			e.Logger.Debug("removing an applied acknowledgement", "err", err)
		}
	}
}

// leaseDeadline bounds a save by the lease: with Lead, ok is false unless
// the lease is held in the term evaluated in, and ctx ends when it runs
// out, so that nothing is saved once another replica may hold it.
func (e *Evaluator) leaseDeadline(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	if e.Lead == nil {
		return ctx, func() {}, true
	}
	held, term, until := e.Lead()
	if !held || !e.leading.Load() || term != e.term.Load() {
		return ctx, func() {}, false
	}
	ctx, cancel := context.WithDeadline(ctx, until)
	return ctx, cancel, true
}

// reload replaces every alert with the states saved in States, as Load
// does at a start: if they changed since last read, or always with force.
func (e *Evaluator) reload(ctx context.Context, force bool) error {
	if e.States == nil {
		return nil
	}
	e.write.Lock()
	defer e.write.Unlock()
	versioned, _ := e.States.(Versioned)
	var version uint64
	if versioned != nil {
		version = versioned.Version() + 1 // before reading: a change meanwhile is read next time
		if !force && version == e.loaded {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a store that does not answer holds up no Ack
	defer cancel()
	saved, err := e.States.LoadAlerts(ctx)
	if err != nil {
		return err
	}
	e.loaded = version
	e.mu.Lock()
	defer e.mu.Unlock()
	e.alerts = make(map[string]*Alert, len(saved))
	e.series = make(map[string]*series, len(saved))
	clear(e.watches)
	e.restoreLocked(saved)
	return nil
}

// Evaluate runs every rule once. Transitions are saved first and take
// effect and are published after, so a crash between the two loses an
// event on the stream, never a state (or, later, a delivery); and a save
// that fails changes nothing: the next evaluation makes them again.
func (e *Evaluator) Evaluate(ctx context.Context) error {
	e.init()
	now := e.Now()
	err := e.evaluate(ctx, now)
	e.repeat(ctx, now) // not under e.write: a slow store holds up no acknowledgement
	return err
}

func (e *Evaluator) evaluate(ctx context.Context, now time.Time) error {
	e.write.Lock()
	defer e.write.Unlock()
	e.readSilences(ctx)
	changes := e.step(now)
	if len(changes) == 0 {
		return nil
	}
	ts := make([]Transition, len(changes))
	for i, c := range changes {
		ts[i] = c.Transition
	}
	sctx, cancel, ok := e.leaseDeadline(ctx)
	defer cancel()
	if !ok {
		return nil // the lease ran out while this step ran: the holder's to make
	}
	if err := e.save(sctx, ts, now); err != nil {
		return err
	}
	e.commit(changes)
	for _, t := range ts {
		a := t.Alert
		e.Logger.Info("alert", "rule", a.Rule, "source", a.Source, "metric", a.Metric, "transition", t.Kind, "value", a.Value)
		if err := e.publish(t, now); err != nil {
			return err
		}
	}
	return nil
}

// change is a transition not yet in effect: the alert it moves and how.
type change struct {
	alert *Alert
	Transition
}

// step runs the rules over the ring. Changes that are not transitions
// (the latest value, when a firing alert's value cleared) take effect at
// once; transitions are returned, to take effect once saved.
func (e *Evaluator) step(now time.Time) []change {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []change
	move := func(r *Rule, a *Alert, v float64, ok bool) {
		next := *a
		kind := r.step(&next, v, ok, now)
		if kind == "" {
			*a = next
			return
		}
		e.describe(r, &next)
		out = append(out, change{alert: a, Transition: Transition{Kind: kind, Alert: next}})
	}
	e.steps++
	sources := e.Ring.Sources()
	for _, source := range sources {
		latest, _ := e.Ring.Latest(source)
		sw := e.watch(source, latest.Metrics)
		if !latest.Time.Equal(sw.newest) {
			age, live := e.Ring.Arrival(source)
			sw.newest, sw.live, sw.seenAt = latest.Time, live, now.Add(-age)
		}
		if !sw.live {
			continue // the history's past, given back after a restart: its alerts wait for it (restoreLocked)
		}
		for _, w := range sw.list {
			w.step, w.seenAt = e.steps, sw.seenAt
			v, ok := e.value(w, source, latest, now)
			move(w.rule, w.alert, v, ok)
		}
	}
	if len(e.watches) > len(sources) { // sources gone
		keep := make(map[string]bool, len(sources))
		for _, s := range sources {
			keep[s] = true
		}
		for s := range e.watches {
			if !keep[s] {
				delete(e.watches, s)
			}
		}
	}
	// Alerts whose source was removed (an agent taken out of a hub's
	// upstreams) end: what they were about is gone, not silent. Alerts
	// whose series stopped reporting (the source went silent, or the
	// metric left its samples) have no data once the rule's no-data time
	// has passed.
	for _, w := range e.series {
		a := w.alert
		if w.step == e.steps || a.State == StateInactive {
			continue
		}
		switch r := e.rules[a.Rule]; {
		case e.Ring.Removed(a.Source):
			e.end(a, now, &out)
		case a.State == StateNoData || now.Sub(w.seenAt) <= r.NoData:
		default:
			move(r, a, 0, false)
		}
	}
	e.silence(now, &out)
	return out
}

// readSilences reads the silences, holding e.write. While the store
// cannot answer (a replica's NATS has not been read), the last read
// stands: a silence does not lapse for a hiccup.
func (e *Evaluator) readSilences(ctx context.Context) {
	if e.Silences == nil {
		return
	}
	list, err := e.Silences.Silences(ctx)
	if err != nil {
		e.Logger.Debug("reading silences; the last read stands", "err", err)
		return
	}
	e.silences = list
}

// silence marks each active alert with the silences that mute it now,
// holding e.mu: a transition carries them (a firing while muted is
// Muted; one sent has NotifiedAt), and an alert whose silences changed
// otherwise makes a "silenced" or "unsilenced" transition of its own; one
// that fires and whose firing was muted sends it then (Late). It runs
// whether or not there are silences: an alert saved as silenced by one
// that is gone is freed.
func (e *Evaluator) silence(now time.Time, out *[]change) {
	mark := func(a *Alert) {
		a.SilencedBy = nil
		if len(e.silences) > 0 && (a.State == StatePending || a.State == StateFiring || a.State == StateNoData) {
			a.SilencedBy = Muting(e.silences, MatchLabels(*a), now)
		}
	}
	moved := make(map[*Alert]bool, len(*out))
	for i := range *out {
		c := &(*out)[i]
		moved[c.alert] = true
		mark(&c.Alert)
		switch c.Kind {
		case StatePending:
			c.Alert.Muted, c.Alert.NotifiedAt = false, time.Time{} // a new episode
		case StateFiring:
			c.Alert.Muted, c.Alert.NotifiedAt = len(c.Alert.SilencedBy) > 0, time.Time{}
			if !c.Alert.Muted {
				c.Alert.NotifiedAt = c.Alert.StartedAt
			}
		}
	}
	for _, a := range e.alerts {
		if moved[a] || (len(a.SilencedBy) == 0 && len(e.silences) == 0) {
			continue
		}
		next := *a
		mark(&next)
		if slices.Equal(next.SilencedBy, a.SilencedBy) {
			continue
		}
		t := Transition{Kind: KindSilenced, Alert: next}
		if len(next.SilencedBy) == 0 {
			t.Kind = KindUnsilenced
			if next.State == StateFiring && next.Muted {
				t.Alert.Muted, t.Alert.NotifiedAt, t.Late = false, now, true
			}
		}
		t.Alert.UpdatedAt = now
		*out = append(*out, change{alert: a, Transition: t})
	}
}

// end ends an alert whose source is gone: a firing one resolves, any
// other becomes inactive.
func (e *Evaluator) end(a *Alert, now time.Time, out *[]change) {
	next := *a
	kind := StateInactive
	if a.State == StateFiring {
		kind, next.EndedAt = StateResolved, now
	}
	next.State, next.UpdatedAt, next.ActiveAt, next.ClearedAt = StateInactive, now, time.Time{}, time.Time{}
	next.AckedBy, next.AckedAt = "", time.Time{} // its labels stay: the source's are gone with it
	*out = append(*out, change{alert: a, Transition: Transition{Kind: kind, Alert: next}})
}

// A series is what a rule evaluates of a source: one of its metrics, and
// the alert about it.
type series struct {
	rule   *Rule
	metric string
	alert  *Alert
	seenAt time.Time // when the newest sample that had it was first seen, by our clock
	step   uint64    // the last step whose samples had it
	// window holds the points of the rule's window (for rules that
	// aggregate one), oldest first, as of the last step: each step reads
	// only the ring's points after them, not the whole window again.
	window []collector.Point
}

// sourceWatch is what the rules evaluate of a source, for the metrics its
// samples had when it was worked out (its Shape then), and when its
// newest sample was first seen.
//
// A source's samples carry its own clock's time (an agent's), which may
// be behind or ahead of ours: whether it is silent is judged by when its
// samples came, by our clock — the ring knows, so an evaluator that sees
// a source for the first time (after a takeover) knows how long it has
// been silent — and a rule's window is the window before its newest
// sample, by its clock. Neither needs the two clocks to agree.
// Samples given back from the history after a restart are not the source
// reporting: its series are judged as those of a source not seen yet.
type sourceWatch struct {
	shape  uint64 // the store's Shape of the source when it was worked out
	list   []*series
	newest time.Time // the newest sample's time, by the source's clock
	seenAt time.Time // when it came, by ours (its age in the ring, collector.Store.Arrival)
	live   bool      // it was collected in this run, not given back from the history
}

// watch returns the series of a source the rules evaluate, given its
// newest sample's metrics: worked out again only when the store says they
// differ from the last sample's (Shape), so that a step does not match
// every rule against every metric of a fleet, nor hash every
// fingerprint, each second.
func (e *Evaluator) watch(source string, m collector.Metrics) *sourceWatch {
	shape := e.Ring.Shape(source)
	w := e.watches[source]
	if w != nil && w.shape == shape {
		return w
	}
	if w == nil {
		w = &sourceWatch{}
		e.watches[source] = w
	}
	w.shape, w.list = shape, nil
	for i := range e.Rules {
		r := &e.Rules[i]
		if !stream.Glob(r.Source, source) {
			continue
		}
		for _, name := range m.Names().List() {
			if stream.Glob(r.Metric, name) {
				w.list = append(w.list, e.seriesOf(r, source, name))
			}
		}
	}
	return w
}

// seriesOf returns the series of a rule, a source and a metric, with its
// alert (inactive, if it had none).
func (e *Evaluator) seriesOf(r *Rule, source, metric string) *series {
	fp := Fingerprint(r.Name, source, metric)
	s := e.series[fp]
	if s == nil {
		a := e.alerts[fp]
		if a == nil {
			a = &Alert{Fingerprint: fp, Rule: r.Name, Source: source, Metric: metric, State: StateInactive}
			e.alerts[fp] = a
		}
		s = &series{alert: a}
		e.series[fp] = s
	}
	s.rule, s.metric = r, metric
	return s
}

// save writes transitions to the store. A failure is counted, logged at
// most once a minute, and reported by Healthy until a save succeeds.
func (e *Evaluator) save(ctx context.Context, ts []Transition, now time.Time) error {
	if e.States == nil {
		return nil
	}
	err := e.States.SaveTransitions(ctx, ts)
	e.mu.Lock()
	f := &e.failure
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		e.storeErrors.Inc()
		if f.err == nil {
			f.since, f.loggedAt = now, time.Time{}
		}
		f.err = err
		f.count++
		if f.loggedAt.IsZero() || now.Sub(f.loggedAt) >= failureLogEvery {
			f.loggedAt = now
			e.Logger.Error("saving alert transitions failed; they take effect once a save succeeds, retried every evaluation",
				"err", err, "transitions", len(ts), "failing_since", f.since, "failures", f.count)
		}
	case err == nil && f.err != nil:
		e.Logger.Info("alert store writable again", "failed_for", now.Sub(f.since), "failures", f.count)
		*f = storeFailure{}
	}
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if e.Saved != nil {
		e.Saved()
	}
	return nil
}

// repeat hands the firing alerts to a Repeater store every RepeatCheck,
// within the lease, after the evaluation's own saves.
func (e *Evaluator) repeat(ctx context.Context, now time.Time) {
	r, ok := e.States.(Repeater)
	if !ok {
		return
	}
	e.repeatMu.Lock()
	defer e.repeatMu.Unlock()
	if now.Sub(e.repeated) < RepeatCheck {
		return
	}
	sctx, cancel, ok := e.leaseDeadline(ctx)
	defer cancel()
	if !ok {
		return
	}
	sctx, cancelT := context.WithTimeout(sctx, 5*time.Second)
	defer cancelT()
	e.repeated = now // tried again after RepeatCheck, failed or not
	var firing []Alert
	e.mu.Lock()
	for _, a := range e.alerts {
		if a.Repeats() { // not acknowledged, nor silenced
			firing = append(firing, *a)
		}
	}
	e.mu.Unlock()
	if len(firing) == 0 {
		return
	}
	if err := r.Repeat(sctx, firing, now); err != nil && !errors.Is(err, context.Canceled) {
		e.Logger.Warn("repeating webhooks of firing alerts; tried again in 30 s", "err", err)
	}
}

// commit puts saved transitions into effect.
func (e *Evaluator) commit(changes []change) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range changes {
		*c.alert = c.Alert
		e.transitions[c.Kind].Inc()
	}
}

// Healthy is nil while alert states can be saved, and the store's error,
// with since when, while they cannot.
func (e *Evaluator) Healthy() error {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	if f := e.failure; f.err != nil {
		return fmt.Errorf("alert store failing since %s: %w", f.since.Format(time.RFC3339), f.err)
	}
	return nil
}

// Ack acknowledges an active alert: someone is on it. The acknowledgement
// is saved with the alert, announced as an "alert" event with transition
// "acknowledged", and lasts until the alert is inactive again. It sends no
// webhook and changes no state. Acknowledging again replaces who and when.
func (e *Evaluator) Ack(ctx context.Context, fingerprint, by string) (Alert, error) {
	e.init()
	by = strings.TrimSpace(by)
	if by == "" {
		by = "anonymous"
	}
	by = stream.Clip(by, 100)
	e.write.Lock()
	defer e.write.Unlock()
	a, err := e.ackLocked(ctx, fingerprint, by, time.Time{})
	if errors.Is(err, ErrNotLeader) {
		return e.forwardAck(ctx, fingerprint, by)
	}
	return a, err
}

// ackLocked acknowledges an alert on the replica that evaluates (or the
// only one), holding e.write; ErrNotLeader elsewhere. An acknowledgement
// passed on, made at asked, is not applied again if the alert was
// acknowledged since.
func (e *Evaluator) ackLocked(ctx context.Context, fingerprint, by string, asked time.Time) (Alert, error) {
	ctx, cancel, ok := e.leaseDeadline(ctx)
	defer cancel()
	if !ok {
		return Alert{}, ErrNotLeader
	}
	now := e.Now()
	e.mu.Lock()
	a := e.activeLocked(fingerprint)
	if a == nil {
		e.mu.Unlock()
		return Alert{}, ErrNotActive
	}
	if !asked.IsZero() && !a.AckedAt.Before(asked) {
		defer e.mu.Unlock()
		return *a, nil // applied already (a request seen twice)
	}
	next := *a
	next.AckedBy, next.AckedAt, next.UpdatedAt = by, now, now
	t := Transition{Kind: KindAcknowledged, Alert: next}
	e.mu.Unlock()
	if err := e.save(ctx, []Transition{t}, now); err != nil {
		return Alert{}, err
	}
	e.commit([]change{{alert: a, Transition: t}})
	e.Logger.Info("alert acknowledged", "rule", t.Alert.Rule, "source", t.Alert.Source, "metric", t.Alert.Metric, "by", by)
	if err := e.publish(t, now); err != nil {
		return Alert{}, err
	}
	return t.Alert, nil
}

// activeLocked is an alert that can be acknowledged: pending, firing or
// without data; nil if there is none of that fingerprint.
func (e *Evaluator) activeLocked(fingerprint string) *Alert {
	a := e.alerts[fingerprint]
	if a == nil || (a.State != StatePending && a.State != StateFiring && a.State != StateNoData) {
		return nil
	}
	return a
}

// forwardAck passes an acknowledgement to the lease holder, for an alert
// active as this replica last read the states, and returns the alert as
// it will be once applied.
func (e *Evaluator) forwardAck(ctx context.Context, fingerprint, by string) (Alert, error) {
	if e.Acks == nil {
		return Alert{}, ErrNotLeader
	}
	now := e.Now()
	e.mu.Lock()
	a := e.activeLocked(fingerprint)
	if a == nil {
		e.mu.Unlock()
		return Alert{}, ErrNotActive
	}
	next := *a
	e.mu.Unlock()
	if err := e.Acks.RequestAck(ctx, AckRequest{Fingerprint: fingerprint, By: by, At: now}); err != nil {
		return Alert{}, fmt.Errorf("%w: %w", ErrStore, err)
	}
	next.AckedBy, next.AckedAt, next.UpdatedAt = by, now, now
	return next, nil
}

func (e *Evaluator) publish(t Transition, now time.Time) error {
	a := t.Alert
	body := event{Transition: t.Kind, Alert: a}
	body.Alert.Source = ""
	_, err := e.Hub.Publish(stream.Message{Type: stream.TypeAlert, Source: a.Source, Time: now,
		Key: "alert/" + a.Fingerprint, Body: body})
	if errors.Is(err, stream.ErrClosed) {
		return nil
	}
	return err
}

// event is the body of an "alert" event: the alert with the transition
// that made it.
type event struct {
	Transition string `json:"transition"`
	Alert
}

// value is the rule's aggregate for one series, over the window before
// the source's newest sample, or ok false when the source has been silent
// longer than the rule allows (see sourceWatch).
func (e *Evaluator) value(w *series, source string, latest collector.Sample, now time.Time) (float64, bool) {
	r := w.rule
	if now.Sub(w.seenAt) > r.NoData {
		return 0, false
	}
	if r.Aggregate == "last" {
		v, ok := latest.Metrics.Get(w.metric)
		return v, ok
	}
	w.window = slide(w.window, latest.Time.Add(-r.Window), latest.Time, func(dst []collector.Point, since time.Time) []collector.Point {
		dst, _ = e.Ring.AppendRange(dst, source, w.metric, since)
		return dst
	})
	return aggregate(r.Aggregate, w.window)
}

// slide moves a window of points (oldest first) to hold those from from
// to to: the points before from go, and read gives the points after the
// newest held (or all since from, if none is held), in time order.
// A fleet's evaluator reads a second of each series a step, not a
// minute. A source whose clock was set back has points after to, of the
// time before: they are left out, and a window that held some is read
// again whole. Its points then mix the two runs of the clock over the
// times both covered, as a store that orders points by time must (as
// VictoriaMetrics does); what came after the clock went back is in the
// window at once, rather than waiting for the clock to pass what came
// before.
func slide(window []collector.Point, from, to time.Time, read func(dst []collector.Point, since time.Time) []collector.Point) []collector.Point {
	since := from
	if n := len(window); n > 0 && !window[n-1].T.Before(from) && !window[n-1].T.After(to) {
		since = window[n-1].T.Add(time.Nanosecond)
	} else {
		window = window[:0]
	}
	held := len(window)
	kept := read(window, since) // after the newest held, in time order
	for len(kept) > held && kept[len(kept)-1].T.After(to) {
		kept = kept[:len(kept)-1]
	}
	drop := 0
	for drop < len(kept) && kept[drop].T.Before(from) {
		drop++
	}
	return append(kept[:0], kept[drop:]...)
}

// describe sets what the rule says of an alert. Its labels are the
// source's (an upstream's role, dc, …), then the rule's, which win.
func (e *Evaluator) describe(r *Rule, a *Alert) {
	a.Threshold, a.Op, a.Severity, a.Labels = r.Threshold, r.Op, r.Severity, r.Labels
	if smp, _ := e.Ring.Latest(a.Source); len(smp.Labels) > 0 {
		a.Labels = maps.Clone(smp.Labels)
		maps.Copy(a.Labels, r.Labels)
	}
	a.Annotations = r.annotate(a)
}

// Active lists pending, firing and nodata alerts: firing first, then
// pending, then nodata; within each, by severity and rule.
func (e *Evaluator) Active() []Alert {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, a := range e.alerts {
		if a.State == StatePending || a.State == StateFiring || a.State == StateNoData {
			out = append(out, *a)
		}
	}
	rank := map[string]int{StateFiring: 0, StatePending: 1, StateNoData: 2}
	sev := func(s string) int { return -slices.Index([]string{"info", "warning", "critical"}, strings.ToLower(s)) }
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank[a.State] != rank[b.State] {
			return rank[a.State] < rank[b.State]
		}
		if sev(a.Severity) != sev(b.Severity) {
			return sev(a.Severity) < sev(b.Severity)
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Source+a.Metric < b.Source+b.Metric
	})
	return out
}

// RuleList is the loaded rules.
func (e *Evaluator) RuleList() []Rule { return e.Rules }
