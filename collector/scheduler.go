package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/internal/decimal"
	"vigil/stream"
)

// DefaultInterval is how often sources are sampled unless configured.
const DefaultInterval = time.Second

// Source states, as carried by "source" events.
const (
	StateUp     = "up"     // the source reported for the first time, or again after failing
	StateFailed = "failed" // the last collect failed, wholly or in part
	StateGone   = "gone"   // a hub no longer follows the agent it came from
)

// A Primer is a Source that wants to take a first reading before its first
// tick, so that rates are available from the first sample on.
type Primer interface {
	Prime(ctx context.Context) error
}

// A Labeled source has labels of its own (an upstream's role, dc), put
// on its samples and on its alerts.
type Labeled interface {
	Labels() map[string]string
}

// An Instant source's Collect reads what is in memory and returns at
// once: the scheduler collects every such source on one goroutine of its
// own (instants), without the goroutine, ticker and timeout each source
// that may block gets (a hub has one per agent). One that is a Primer
// too gets a goroutine of its own, to prime on.
type Instant interface {
	Instant()
}

// A Triggered source is also collected, between its ticks, whenever it
// calls the function the scheduler gives it (an agent's connection made
// or lost). Calls made before the collect they ask for has run ask for
// that one collect.
type Triggered interface {
	Trigger(collect func())
}

// A Scheduled source sets its own interval and collect timeout; zero
// values take the scheduler's.
type Scheduled interface {
	Schedule() (interval, timeout time.Duration)
}

// maxErrorBytes bounds a source's whole error, as the scheduler publishes
// and logs it. A service names each failing instance in its error, each
// part already cut to stream.MaxTextBytes, so the whole gets room for a few.
const maxErrorBytes = 4 * stream.MaxTextBytes

// Publisher is the one method of stream.Hub the scheduler calls.
type Publisher interface {
	Publish(m stream.Message) (*stream.Event, error)
}

var _ Publisher = (*stream.Hub)(nil)

// A Scheduler samples each source every interval, on a goroutine of its own
// (the Instant sources on one they share), and hands the results to the
// store and the hub.
//
// A collect that runs past its timeout is reported as failed; if the source
// ignores its context, the scheduler skips that source's ticks until the
// call returns rather than piling up calls. Other sources are not delayed.
type Scheduler struct {
	Store    *Store
	Hub      Publisher
	Sources  []Source
	Interval time.Duration // DefaultInterval when zero
	Timeout  time.Duration // per collect; the interval when zero
	Now      func() time.Time
	Metrics  *metrics.Set
	Logger   *slog.Logger

	ready   atomic.Int64 // sources that finished a first collect
	readyCh chan struct{}
	once    sync.Once

	mu       sync.Mutex
	ctx      context.Context     // Run's, once it runs; nil before and after
	wg       sync.WaitGroup      // every source's goroutine, and the instants'
	running  map[string]*running // by source name
	added    []Source            // added before Run
	instants *instants           // the Instant sources' goroutine, while Run runs
}

// running is a source's goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Scheduler) init() {
	s.once.Do(func() {
		if s.Interval <= 0 {
			s.Interval = DefaultInterval
		}
		if s.Timeout <= 0 || s.Timeout > s.Interval {
			s.Timeout = s.Interval
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Metrics == nil {
			s.Metrics = metrics.NewSet()
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		s.readyCh = make(chan struct{})
		if len(s.Sources) == 0 {
			close(s.readyCh)
		}
	})
}

// Ready is closed once every source has finished its first collect,
// successfully or not.
func (s *Scheduler) Ready() <-chan struct{} {
	s.init()
	return s.readyCh
}

// Run samples the sources, and those added while it runs, until ctx is
// done.
func (s *Scheduler) Run(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.ctx, s.running = ctx, map[string]*running{}
	for _, src := range s.Sources {
		s.startLocked(src, true)
	}
	for _, src := range s.added {
		s.startLocked(src, false)
	}
	s.added = nil
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.ctx, s.instants = nil, nil
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Add starts sampling a source (a service a hub learns of from its
// agents); a source of the same name already sampled is left as it is,
// and Add reports false. Sources added do not count towards Ready.
func (s *Scheduler) Add(src Source) bool {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil && s.ctx == nil { // not running yet
		for _, a := range s.added {
			if a.Name() == src.Name() {
				return false
			}
		}
		s.added = append(s.added, src)
		return true
	}
	if s.ctx == nil || s.running[src.Name()] != nil {
		return false // stopped, or sampled already
	}
	s.startLocked(src, false)
	return true
}

// Has says whether the scheduler samples a source of that name.
func (s *Scheduler) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[name] != nil {
		return true
	}
	for _, srcs := range [][]Source{s.Sources, s.added} {
		for _, src := range srcs {
			if src.Name() == name {
				return true
			}
		}
	}
	return false
}

// Remove stops sampling a source and waits until it has published its
// last (a collect under way is cut short).
func (s *Scheduler) Remove(name string) {
	s.mu.Lock()
	r := s.running[name]
	delete(s.running, name)
	s.added = slices.DeleteFunc(s.added, func(src Source) bool { return src.Name() == name }) // added before Run
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// startLocked starts sampling a source: on a goroutine of its own, or
// with the other Instant sources; initial says it is one of Sources, whose
// first collects Ready waits for.
func (s *Scheduler) startLocked(src Source, initial bool) {
	l := s.newSourceLoop(src, initial)
	_, instant := src.(Instant)
	if _, primes := src.(Primer); instant && !primes {
		if s.instants == nil {
			g := &instants{start: time.Now(), wake: make(chan struct{}, 1)}
			s.instants = g
			s.wg.Add(1)
			go func(ctx context.Context) {
				defer s.wg.Done()
				g.run(ctx)
			}(s.ctx)
		}
		s.running[l.name] = s.instants.add(l)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	r := &running{cancel: cancel, done: make(chan struct{})}
	s.running[l.name] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer cancel()
		l.loop(ctx)
	}()
}

type sourceMetrics struct {
	samples  *metrics.Counter
	errors   *metrics.Counter
	duration *metrics.PrometheusHistogram
}

// sourceLoop is the state of one source's goroutine.
type sourceLoop struct {
	s        *Scheduler
	interval time.Duration
	timeout  time.Duration
	src      Source
	name     string
	m        sourceMetrics
	state    string // "", StateUp or StateFailed
	lastErr  string
	first    bool // the first collect has finished, or Ready does not wait for it
	running  chan collectResult
}

type collectResult struct {
	metrics map[string]float64
	err     error
	took    time.Duration
}

var collectBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// newSourceLoop makes the state of a source's sampling.
func (s *Scheduler) newSourceLoop(src Source, initial bool) *sourceLoop {
	name := src.Name()
	label := `{source=` + strconv.Quote(name) + `}`
	l := &sourceLoop{s: s, src: src, name: name, interval: s.Interval, timeout: s.Timeout, first: !initial, m: sourceMetrics{
		samples:  s.Metrics.GetOrCreateCounter(`vigil_samples_collected_total` + label),
		errors:   s.Metrics.GetOrCreateCounter(`vigil_collect_errors_total` + label),
		duration: s.Metrics.GetOrCreatePrometheusHistogramExt(`vigil_collect_duration_seconds`+label, collectBuckets),
	}}
	if sc, ok := src.(Scheduled); ok {
		iv, to := sc.Schedule()
		if iv > 0 {
			l.interval = iv
		}
		if to > 0 {
			l.timeout = to
		}
	}
	return l
}

// loop samples a source on its own goroutine until ctx is done.
func (l *sourceLoop) loop(ctx context.Context) {
	if p, ok := l.src.(Primer); ok {
		pctx, cancel := context.WithTimeout(ctx, l.timeout)
		err := p.Prime(pctx)
		cancel()
		if err != nil {
			l.s.Logger.Warn("prime source", "source", l.name, "err", stream.Clip(err.Error(), maxErrorBytes))
		}
	}
	var trigger chan struct{}
	if tr, ok := l.src.(Triggered); ok {
		trigger = make(chan struct{}, 1)
		tr.Trigger(func() {
			select {
			case trigger <- struct{}{}:
			default:
			}
		})
	}
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.tick(ctx)
		case <-trigger:
			l.tick(ctx)
		}
	}
}

func (l *sourceLoop) tick(ctx context.Context) {
	s := l.s
	if l.running != nil {
		select {
		case r := <-l.running: // the late call finally returned; drop its result
			l.running = nil
			_ = r
		default:
			l.fail(nil, fmt.Errorf("collect %s: previous collect still running after %s", l.name, l.timeout))
			return
		}
	}
	start := s.Now()
	r, ok := l.collect(ctx)
	if !ok {
		return // shutting down
	}
	l.m.duration.Update(r.took.Seconds())
	if len(r.metrics) > 0 {
		finite(r.metrics)
		for k, v := range r.metrics {
			r.metrics[k] = decimal.Significant(v, 6) // more digits are noise on every stream
		}
		smp := Sample{Source: l.name, Time: start, Metrics: MetricsOf(r.metrics)}
		if lb, ok := l.src.(Labeled); ok {
			smp.Labels = lb.Labels()
		}
		s.Store.Append(smp)
		l.m.samples.Inc()
		body := SampleBody{Metrics: r.metrics, Labels: smp.Labels}
		if ts, ok := l.src.(TrafficSource); ok {
			if t, ok := ts.Traffic(); ok {
				body.Traffic = &t
			}
		}
		if _, err := s.Hub.Publish(stream.Message{
			Type: stream.TypeSample, Source: l.name, Time: start, Key: stream.TypeSample + "/" + l.name, Body: body,
		}); err != nil && !errors.Is(err, stream.ErrClosed) {
			s.Logger.Error("publish sample", "source", l.name, "err", err)
		}
	}
	if r.err != nil {
		l.fail(r.metrics, r.err)
	} else {
		l.setState(StateUp, "", false)
	}
	if !l.first {
		l.first = true
		if s.ready.Add(1) == int64(len(s.Sources)) {
			close(s.readyCh)
		}
	}
}

// collect runs the source's Collect, bounded by its timeout unless it is
// Instant; ok is false when ctx ended first.
func (l *sourceLoop) collect(ctx context.Context) (r collectResult, ok bool) {
	if _, instant := l.src.(Instant); instant {
		t0 := time.Now()
		m, err := l.src.Collect(ctx)
		return collectResult{metrics: m, err: err, took: time.Since(t0)}, true
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	done := make(chan collectResult, 1)
	go func() {
		t0 := time.Now()
		m, err := l.src.Collect(cctx)
		done <- collectResult{metrics: m, err: err, took: time.Since(t0)}
	}()
	select {
	case r = <-done:
		return r, true
	case <-cctx.Done():
		if ctx.Err() != nil {
			return r, false
		}
		l.running = done
		return collectResult{err: fmt.Errorf("collect %s: timed out after %s", l.name, l.timeout), took: l.timeout}, true
	}
}

// fail records a failed collect. The error's text is made one line (the
// parts of a joined error separated by "; ") and cut to a bound here,
// whatever source produced it, before it is stored, logged and published:
// it may quote what a target said.
func (l *sourceLoop) fail(partial map[string]float64, err error) {
	l.m.errors.Inc()
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	l.setState(StateFailed, stream.Clip(msg, maxErrorBytes), len(partial) > 0)
}

// setState publishes a "source" event when the state or the error changes,
// so a source that keeps failing the same way is one event, not one a
// second.
func (l *sourceLoop) setState(state, msg string, partial bool) {
	if state == l.state && msg == l.lastErr {
		return
	}
	l.state, l.lastErr = state, msg
	l.s.Store.SetStatus(l.name, state, msg, l.s.Now())
	if state == StateFailed {
		l.s.Logger.Warn("source failed", "source", l.name, "err", msg, "partial", partial)
	} else {
		l.s.Logger.Info("source up", "source", l.name)
	}
	_, err := l.s.Hub.Publish(stream.Message{
		Type: stream.TypeSource, Source: l.name, Key: stream.TypeSource + "/" + l.name,
		Body: SourceState{State: state, Error: msg, Partial: partial},
	})
	if err != nil && !errors.Is(err, stream.ErrClosed) {
		l.s.Logger.Error("publish source event", "source", l.name, "err", err)
	}
}

// SampleBody is the body of a "sample" event.
type SampleBody struct {
	Metrics map[string]float64 `json:"metrics"`
	// Traffic is a service's counts of this interval (see Traffic).
	Traffic *Traffic `json:"traffic,omitempty"`
	// Labels are the labels of the upstream a hub got the sample from.
	Labels map[string]string `json:"labels,omitempty"`
	// Upstream says which agent, and which of its events, a hub
	// republishes.
	Upstream *UpstreamRef `json:"upstream,omitempty"`
}

// UpstreamRef names the agent an event came from and the event's id there.
type UpstreamRef struct {
	Name string `json:"name"`
	Seq  uint64 `json:"seq"`
}

// SourceState is the body of a "source" event.
type SourceState struct {
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
	Partial bool   `json:"partial,omitempty"` // failed in part; the sample still went out
	// Gap, on an upstream's source, says the hub lost some of the agent's
	// events.
	Gap      *Gap         `json:"gap,omitempty"`
	Upstream *UpstreamRef `json:"upstream,omitempty"` // on a hub: the agent it came from
}
