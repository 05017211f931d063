// Package history keeps every series' past beyond the ring: each source's
// samples rolled up into tiers — by default 10 s steps for a day, 1 min
// for a week, 10 min for 90 days — with the min, the sum and the count
// (so the mean) and the max of each step, in SQLite under --data. A step
// of one tier is made of the steps of the tier before it, so every tier
// is exact for what it covers, and a tier's step being filled can be made
// again from the rows of the finer one after a restart.
//
// Samples are recorded in memory as they are taken (Record, called by the
// ring for each); the steps that close wait, encoded, and are written in
// one transaction a minute (Run); each tier is pruned to what it keeps. A
// crash loses at most that minute and the step being filled (a stop
// loses nothing), and Fill gives the ring back its recent past from the
// first tier, so a page is never blank.
package history

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/internal/decimal"
)

// A Tier is one resolution of the history: a step, and how long steps
// are kept.
type Tier struct {
	Step time.Duration
	Keep time.Duration
}

// DefaultTiers are the tiers without configuration.
var DefaultTiers = []Tier{
	{Step: 10 * time.Second, Keep: 24 * time.Hour},
	{Step: time.Minute, Keep: 7 * 24 * time.Hour},
	{Step: 10 * time.Minute, Keep: 90 * 24 * time.Hour},
}

// Limits on tiers.
const (
	MinStep  = time.Second
	MaxTiers = 6
)

// CheckTiers says what is wrong with a list of tiers: each step a whole
// number of seconds and a multiple of the one before, each tier keeping
// at least one step and longer than the one before.
func CheckTiers(tiers []Tier) []error {
	var errs []error
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("tier %d: "+format, append([]any{i + 1}, args...)...))
	}
	if len(tiers) == 0 {
		return []error{errors.New("no tiers: give at least one step and how long to keep it")}
	}
	if len(tiers) > MaxTiers {
		errs = append(errs, fmt.Errorf("%d tiers: at most %d", len(tiers), MaxTiers))
	}
	for i, t := range tiers {
		switch {
		case t.Step < MinStep || t.Step%time.Second != 0:
			bad(i, "step %s: want whole seconds, at least %s", t.Step, MinStep)
		case t.Keep < t.Step:
			bad(i, "keep %s: shorter than its step %s", t.Keep, t.Step)
		case i > 0 && t.Step <= tiers[i-1].Step:
			bad(i, "step %s: not longer than the step before it, %s", t.Step, tiers[i-1].Step)
		case i > 0 && t.Step%tiers[i-1].Step != 0:
			bad(i, "step %s: not a multiple of the step before it, %s", t.Step, tiers[i-1].Step)
		case i > 0 && t.Keep <= tiers[i-1].Keep:
			bad(i, "keep %s: not longer than the tier before it keeps, %s", t.Keep, tiers[i-1].Keep)
		}
	}
	return errs
}

// An Agg is a series over one step: the least, the greatest and the sum
// of its values, and how many there were.
type Agg struct {
	T     time.Time // the step's start
	Min   float64
	Max   float64
	Sum   float64
	Count int
}

// Mean is the step's mean value.
func (a Agg) Mean() float64 { return a.Sum / float64(a.Count) }

// agg is an Agg being made.
type agg struct {
	min, max, sum float64
	n             uint32
}

func (a *agg) add(v float64) {
	if a.n == 0 || v < a.min {
		a.min = v
	}
	if a.n == 0 || v > a.max {
		a.max = v
	}
	a.sum += v
	a.n++
}

// merge merges each of src into dst's aggregate of the same place.
func merge(dst, src []agg) {
	for i, a := range src {
		dst[i].merge(a)
	}
}

func (a *agg) merge(b agg) {
	if b.n == 0 {
		return
	}
	if a.n == 0 || b.min < a.min {
		a.min = b.min
	}
	if a.n == 0 || b.max > a.max {
		a.max = b.max
	}
	a.sum += b.sum
	a.n += b.n
}

// Options configure a DB.
type Options struct {
	Path    string // the SQLite file
	Tiers   []Tier // nil: DefaultTiers
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Set
	// MaxPending bounds the rows waiting to be written while writes fail;
	// the oldest go first. 0: 100,000.
	MaxPending int
	// WriteEvery is how often the steps closed are written; DefaultWriteEvery
	// when zero.
	WriteEvery time.Duration
}

// DefaultWriteEvery is how often a DB writes the steps closed. Each
// source's steps of a tier lie together in the file, so a write dirties a
// page a source however many steps it writes: a hub of a thousand hosts
// that wrote its ten-second steps as they closed spent most of its
// history's CPU reading and writing the same thousand pages six times a
// minute.
const DefaultWriteEvery = time.Minute

// A DB is the history of every source.
type DB struct {
	opts    Options
	tiers   []Tier
	steps   []int64 // the tiers' steps in milliseconds
	sql     *sqlStore
	mu      sync.Mutex
	sources map[string]*source
	pending []row            // steps closed, not yet written: encoded (row.data)
	writing []row            // pending rows being written, which queries still see
	scratch []byte           // queue's, under mu
	gone    map[string]int64 // sources removed (when), not yet written
	m       dbMetrics
}

type dbMetrics struct {
	written, dropped, late, writeErrors *metrics.Counter
}

// A source is one source's steps being filled, a level a tier.
type source struct {
	name   string
	behind int64          // how far the source's clock is behind ours (ms), as of its newest sample
	cols   map[string]int // by metric
	names  []string       // by column
	levels []level
	places collector.Places // the columns of the last sample's names
}

// A level is a tier's step being filled: the first tier's of samples,
// each other's of the closed steps of the tier before it.
//
// A step closed because its source went quiet may open again: what the
// source sent meanwhile comes late (a hub reads an agent's events after
// a drop). So a closed level keeps its step's aggregates until another
// step opens; one opened again holds them as its base, and takes what
// comes in aggs, which is what the next tier takes in at its close, so
// that the step is written whole and nothing is counted twice above it.
type level struct {
	start  int64 // unix milliseconds; meaningful while aggs has a count
	aggs   []agg // by column
	base   []agg // of a step opened again: what it held when it closed; else nil
	closed int64 // the end of the newest step closed
	open   bool
}

// A row is a closed step of a source in a tier: what is written, an
// aggregate a metric. One waiting to be written holds its aggregates
// encoded, as they are written but numbered by their place in names
// (encodeRow without ids): a minute of a thousand hosts' steps takes
// about 6 MB so, and twice that as aggs.
type row struct {
	tier   int
	source string
	start  int64
	open   bool // a first-tier step unfinished, written at a Close
	names  []string
	aggs   []agg  // a count of 0: none of that metric in the step
	data   []byte // instead of aggs, encoded
}

// aggregates are the row's aggregates, decoded into dst when they are
// encoded.
func (r row) aggregates(dst []agg) ([]agg, error) {
	if r.data == nil {
		return r.aggs, nil
	}
	dst = slices.Grow(dst[:0], len(r.names))[:len(r.names)]
	clear(dst)
	bad := false
	err := decodeRow(r.data, nil, func(i int64, _ int, a agg) {
		if i < int64(len(dst)) {
			dst[i] = a
		} else {
			bad = true
		}
	})
	if err == nil && bad {
		err = errCorrupt
	}
	return dst, err
}

// decoded is the row with its aggregates, if they were encoded.
func (r row) decoded() (row, error) {
	aggs, err := r.aggregates(nil)
	r.aggs, r.data = aggs, nil
	return r, err
}

// value is a metric's aggregate in the row.
func (r *row) value(name string) agg {
	if i := slices.Index(r.names, name); i >= 0 {
		return r.aggs[i]
	}
	return agg{}
}

// Open opens (creating it if need be) the history at opts.Path, and makes
// the steps being filled again from what the finer tiers hold.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.Tiers == nil {
		opts.Tiers = DefaultTiers
	}
	if errs := CheckTiers(opts.Tiers); len(errs) > 0 {
		return nil, fmt.Errorf("history tiers: %w", errors.Join(errs...))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.WriteEvery <= 0 {
		opts.WriteEvery = DefaultWriteEvery
	}
	st, err := openSQL(ctx, opts.Path, len(opts.Tiers))
	if err != nil {
		return nil, err
	}
	h := &DB{opts: opts, tiers: opts.Tiers, sql: st, sources: map[string]*source{}, gone: map[string]int64{}}
	for _, t := range opts.Tiers {
		h.steps = append(h.steps, t.Step.Milliseconds())
	}
	set := opts.Metrics
	h.m = dbMetrics{
		written:     set.GetOrCreateCounter(`vigil_history_steps_written_total`),
		dropped:     set.GetOrCreateCounter(`vigil_history_steps_dropped_total`),
		late:        set.GetOrCreateCounter(`vigil_history_late_samples_total`),
		writeErrors: set.GetOrCreateCounter(`vigil_store_errors_total{op="save_tiers"}`),
	}
	set.GetOrCreateGauge(`vigil_history_steps_waiting`, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.pending))
	})
	if err := h.reopen(ctx); err != nil {
		st.close()
		return nil, err
	}
	return h, nil
}

// Tiers are the DB's tiers.
func (h *DB) Tiers() []Tier { return slices.Clone(h.tiers) }

// Close writes what is waiting, the first tier's steps being filled too,
// and closes the file. A step opened again (see level) is closed, so that
// the next run finds it whole among the finished ones, as it would have
// had it not opened again; the coarser tiers' steps it opens again are
// closed in turn.
func (h *DB) Close() error {
	h.mu.Lock()
	for _, src := range h.sources {
		for k := range src.levels {
			if lv := &src.levels[k]; lv.open && lv.base != nil {
				h.close(src, k)
			}
		}
		if lv := &src.levels[0]; lv.open {
			r := h.rowOf(src, 0, lv)
			r.open = true
			h.queue(r)
		}
	}
	h.mu.Unlock()
	err := h.Flush(context.Background())
	return errors.Join(err, h.sql.close())
}

// Record folds a sample into its source's first-tier step, closing the
// steps it is past. A sample older than the step being filled comes too
// late and is counted, not kept.
func (h *DB) Record(smp collector.Sample) {
	t := smp.Time.UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	src := h.source(smp.Source)
	// Late: before the step being filled, or before the newest closed
	// when none is (which is opened again).
	if lv := &src.levels[0]; lv.open && t < lv.start || !lv.open && t < lv.closed-h.steps[0] {
		h.m.late.Inc()
		return
	}
	h.advance(src, 0, t)
	src.behind = h.opts.Now().UnixMilli() - t
	names, values := smp.Metrics.Names(), smp.Metrics.Values()
	cols, have := src.places.Of(names, src.cols)
	aggs := src.levels[0].aggs
	for i, col := range cols {
		if col >= 0 {
			aggs[col].add(values[i])
		}
	}
	if have < len(values) { // metrics new to the source
		for i, name := range names.List() {
			if cols[i] < 0 {
				src.column(name)
				src.levels[0].aggs[src.cols[name]].add(values[i])
			}
		}
		src.places.Forget()
	}
}

// Forget notes that the ring removed a source (a hub's agent taken out
// of its upstreams), to be written with the next steps: its past stays,
// but the next run's Fill does not give the ring what came before now.
func (h *DB) Forget(source string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone[source] = h.opts.Now().UnixMilli()
}

var _ collector.Forgetter = (*DB)(nil)

// source returns a source's state, new if need be.
func (h *DB) source(name string) *source {
	src := h.sources[name]
	if src == nil {
		src = &source{name: name, cols: map[string]int{}, levels: make([]level, len(h.tiers))}
		h.sources[name] = src
	}
	return src
}

// column adds a metric to the source, a place in each level.
func (src *source) column(name string) {
	src.cols[name] = len(src.names)
	src.names = append(src.names, name)
	for k := range src.levels {
		lv := &src.levels[k]
		lv.aggs = append(lv.aggs, agg{})
		if lv.base != nil {
			lv.base = append(lv.base, agg{})
		}
	}
}

// advance makes tier k's level the step holding t, closing the one it
// holds if it is another: written as a row, and merged into the next
// tier's level. The step it closed last opens again with what it held
// (see level).
func (h *DB) advance(src *source, k int, t int64) {
	start := t - t%h.steps[k]
	lv := &src.levels[k]
	if lv.open && lv.start == start {
		return
	}
	if lv.open {
		h.close(src, k)
	}
	if start == lv.start && start < lv.closed {
		lv.base, lv.aggs = lv.aggs, make([]agg, len(lv.aggs))
	} else {
		clear(lv.aggs)
	}
	lv.start, lv.open = start, true
}

// close ends tier k's level: a row, and a part of tier k+1's. Its
// aggregates stay until another step opens.
func (h *DB) close(src *source, k int) {
	lv := &src.levels[k]
	part := lv.aggs
	if lv.base != nil {
		merge(lv.base, part)
		lv.aggs, lv.base = lv.base, nil
	}
	h.queue(h.rowOf(src, k, lv))
	lv.closed, lv.open = max(lv.closed, lv.start+h.steps[k]), false
	if k+1 < len(h.tiers) {
		h.advance(src, k+1, lv.start)
		merge(src.levels[k+1].aggs, part)
	}
}

// rowOf is the row of a level: its aggs are the level's own when it has
// every metric, to be used before the level changes.
func (h *DB) rowOf(src *source, k int, lv *level) row {
	r := row{tier: k, source: src.name, start: lv.start}
	all := true
	for _, a := range lv.aggs {
		all = all && a.n > 0
	}
	if all { // the usual step, of every metric: the names are the source's own (only ever appended to)
		r.names, r.aggs = src.names[:len(lv.aggs):len(lv.aggs)], lv.aggs
		return r
	}
	for i, a := range lv.aggs {
		if a.n > 0 {
			r.names = append(r.names, src.names[i])
			r.aggs = append(r.aggs, a)
		}
	}
	return r
}

// queue adds a row to write, encoded, dropping the oldest past
// MaxPending.
func (h *DB) queue(r row) {
	if len(r.aggs) == 0 {
		return
	}
	h.scratch = encodeRow(h.scratch[:0], nil, r.aggs)
	r.data, r.aggs = bytes.Clone(h.scratch), nil
	if len(h.pending) >= h.opts.MaxPending {
		drop := len(h.pending) - h.opts.MaxPending + 1
		h.pending = append(h.pending[:0], h.pending[drop:]...)
		h.m.dropped.Add(drop)
	}
	h.pending = append(h.pending, r)
}

// closeStale closes the steps whose time is past by a first-tier step,
// for sources that stopped sending. A source's time is its own clock's:
// an agent's that is behind the hub's (or its samples that are late on
// the way) has its steps closed as its samples come, not before.
func (h *DB) closeStale(now time.Time) {
	for _, src := range h.sources {
		t := now.UnixMilli() - src.behind
		for k := range h.tiers {
			if lv := &src.levels[k]; lv.open && t >= lv.start+h.steps[k]+h.steps[0] {
				h.close(src, k)
			}
		}
	}
}

// Run closes the steps of sources gone quiet every first-tier step,
// writes the closed steps every WriteEvery, checkpoints the file every
// minute and prunes the tiers every ten minutes, until ctx is done. Each
// is a count of ticks, so that a tick a little late does not put a write
// off by a whole tick.
func (h *DB) Run(ctx context.Context) error {
	interval := min(h.tiers[0].Step, h.opts.WriteEvery)
	every := func(d time.Duration) uint64 { return uint64(max(1, d/interval)) }
	writeTicks, checkpointTicks, pruneTicks := every(h.opts.WriteEvery), every(checkpointEvery), every(pruneEvery)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := uint64(1); ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		h.mu.Lock()
		h.closeStale(h.opts.Now())
		h.mu.Unlock()
		if n%writeTicks == 0 {
			if err := h.Flush(ctx); err != nil && ctx.Err() == nil {
				h.opts.Logger.Error("history: writing steps failed; they are kept and written again", "err", err)
			}
		}
		if n%checkpointTicks == 0 {
			if err := h.sql.checkpoint(ctx); err != nil && ctx.Err() == nil {
				h.opts.Logger.Warn("history: checkpoint failed", "err", err)
			}
		}
		if n%pruneTicks == 0 {
			if err := h.Prune(ctx); err != nil && ctx.Err() == nil {
				h.opts.Logger.Error("history: pruning failed", "err", err)
			}
		}
	}
}

const pruneEvery = 10 * time.Minute

// checkpointEvery is how often the write-ahead log is copied into the
// file. A checkpoint after each write (SQLite's, every 1,000 pages) costs
// a hub most of its history's I/O: each of its sources' steps dirties a
// page of its own, written again at every checkpoint. Once a minute, a
// page is copied once for six writes, and the log stays a minute long.
const checkpointEvery = time.Minute

// Flush writes the closed steps and the sources gone, in one
// transaction. What could not be written stays, to be written next time.
func (h *DB) Flush(ctx context.Context) error {
	h.mu.Lock()
	rows, gone := h.pending, h.gone
	h.pending, h.gone, h.writing = nil, map[string]int64{}, rows
	h.mu.Unlock()
	if len(rows) == 0 && len(gone) == 0 {
		return nil
	}
	err := h.sql.write(ctx, rows, gone)
	h.mu.Lock()
	h.writing = nil
	if err == nil {
		h.mu.Unlock()
		h.m.written.Add(len(rows))
		return nil
	}
	h.m.writeErrors.Inc()
	for src, t := range gone {
		if _, later := h.gone[src]; !later { // removed again since: that one stands
			h.gone[src] = t
		}
	}
	h.pending = append(rows, h.pending...)
	if over := len(h.pending) - h.opts.MaxPending; over > 0 {
		h.pending = h.pending[over:]
		h.m.dropped.Add(over)
	}
	h.mu.Unlock()
	return err
}

// Prune deletes each tier's steps older than it keeps, and the removals
// older than the first tier keeps (no step before them is left to Fill).
func (h *DB) Prune(ctx context.Context) error {
	now := h.opts.Now()
	for k, t := range h.tiers {
		if err := h.sql.prune(ctx, k, now.Add(-t.Keep).UnixMilli()); err != nil {
			return err
		}
	}
	return h.sql.pruneGone(ctx, now.Add(-h.tiers[0].Keep).UnixMilli())
}

// reopen makes the levels being filled again after a restart: the first
// tier's from the row Close wrote of it; each other tier's from the
// finished rows of the tier before it after its own newest finished row,
// which are those it held. A level with none keeps its newest finished
// row, should its step open again (see level). After a crash, the first
// tier's step being filled is what is lost.
func (h *DB) reopen(ctx context.Context) error {
	names, err := h.sql.sources(ctx, 0)
	if err != nil {
		return err
	}
	for _, name := range names {
		src := h.source(name)
		rows, err := h.sql.rows(ctx, 0, name, math.MinInt64, math.MaxInt64, nil, openRows)
		if err != nil {
			return err
		}
		if len(rows) > 0 {
			h.reload(src, 0, rows[len(rows)-1]) // the newest: Close writes one, the next step replaces it
		}
	}
	for k := range h.tiers {
		newest, err := h.sql.newest(ctx, k)
		if err != nil {
			return err
		}
		for _, name := range names {
			src := h.source(name)
			t, ok := newest[name]
			if k > 0 {
				after := int64(math.MinInt64)
				if ok {
					after = t + h.steps[k]
				}
				rows, err := h.sql.rows(ctx, k-1, name, after, math.MaxInt64, nil, finishedRows)
				if err != nil {
					return err
				}
				for _, r := range rows {
					h.reload(src, k, r)
				}
			}
			if !ok {
				continue
			}
			lv := &src.levels[k]
			lv.closed = t + h.steps[k]
			if lv.open {
				continue
			}
			rows, err := h.sql.rows(ctx, k, name, t, t+1, nil, finishedRows)
			if err != nil {
				return err
			}
			for _, r := range rows {
				h.reload(src, k, r)
				lv.open = false
			}
		}
	}
	return nil
}

// reload merges a row into tier k's level, opened at the row's step.
func (h *DB) reload(src *source, k int, r row) {
	lv := &src.levels[k]
	lv.start, lv.open = r.start-r.start%h.steps[k], true
	for i, metric := range r.names {
		if _, ok := src.cols[metric]; !ok {
			src.column(metric)
		}
		lv.aggs[src.cols[metric]].merge(r.aggs[i])
	}
}

// Fill appends to the ring every source's first-tier steps since a time,
// their means as samples at each step's start: the ring's past after a
// restart. A source removed (Forget) gets only its steps after its
// removal. Call it before the ring records into the history.
func (h *DB) Fill(ctx context.Context, ring *collector.Store, since time.Time) error {
	gone, err := h.sql.gone(ctx)
	if err != nil {
		return err
	}
	return h.sql.each(ctx, 0, since.UnixMilli(), func(r row) {
		if t, ok := gone[r.source]; ok && r.start < t {
			return // from before its removal
		}
		values := make([]float64, len(r.names))
		for i := range r.names {
			values[i] = decimal.Significant(r.aggs[i].sum/float64(r.aggs[i].n), 6) // as the scheduler rounds
		}
		ring.AppendPast(collector.Sample{Source: r.source, Time: time.UnixMilli(r.start), Metrics: collector.MetricsIn(r.names, values)})
	})
}

// A Result is what Query gives: the step it used and each metric's steps.
type Result struct {
	Step   time.Duration
	Tier   int
	Series map[string][]Agg // by metric, oldest first
}

// MaxPoints bounds the steps a query gives a series, as Prometheus does.
const MaxPoints = 11_000

// Query returns a source's metrics from from to to, at the step asked (0:
// the finest that gives at most MaxPoints) or the nearest the tiers can
// give: from the finest tier that still holds from, in steps that are a
// whole number of its steps. Steps closed but not yet written, and the
// ones being filled, are in it.
func (h *DB) Query(ctx context.Context, src string, metricNames []string, from, to time.Time, step time.Duration) (Result, error) {
	if !to.After(from) {
		return Result{}, fmt.Errorf("from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	k := h.tierFor(from, to, step)
	tierStep := h.tiers[k].Step
	if step < tierStep {
		step = tierStep
	}
	step = (step + tierStep - 1) / tierStep * tierStep // a whole number of the tier's steps
	if n := int64(to.Sub(from) / step); n > MaxPoints {
		return Result{}, fmt.Errorf("%d points a series at step %s: at most %d; give a longer step", n, step, MaxPoints)
	}
	lo := from.UnixMilli()
	lo -= lo % step.Milliseconds()
	hi := to.UnixMilli()
	// What is not in the file is taken first: a row written meanwhile is
	// then in one or the other.
	extra := h.unwritten(k, src, lo, hi, metricNames)
	rows, err := h.sql.rows(ctx, k, src, lo, hi+1, metricNames, anyRow)
	if err != nil {
		return Result{}, err
	}
	if len(extra) > 0 {
		rows = append(extra, rows...) // the newer first: the stable sort keeps them first of a step
		slices.SortStableFunc(rows, func(a, b row) int { return cmp.Compare(a.start, b.start) })
		rows = slices.CompactFunc(rows, func(a, b row) bool { return a.start == b.start })
	}
	return Result{Step: step, Tier: k, Series: group(rows, metricNames, step.Milliseconds())}, nil
}

// tierFor picks the tier a query reads: the coarsest whose step is at
// most the one asked among those that hold from, or else the one that
// keeps the longest.
func (h *DB) tierFor(from, to time.Time, step time.Duration) int {
	now := h.opts.Now()
	if step <= 0 {
		step = to.Sub(from) / MaxPoints
	}
	pick := -1
	for k, t := range h.tiers {
		if now.Sub(from) > t.Keep+t.Step { // a step of slack: "7 days ago" asked a moment ago

			continue
		}
		if pick < 0 || t.Step <= step {
			pick = k
		}
	}
	if pick < 0 {
		return len(h.tiers) - 1
	}
	return pick
}

// unwritten is the source's rows of the tier not in the file yet, which
// win over a row of the same step there, the newest first: its level being
// filled (a step opened again holds what it was closed with), those
// waiting to be written, those being written.
func (h *DB) unwritten(k int, name string, lo, hi int64, want []string) []row {
	h.mu.Lock()
	defer h.mu.Unlock()
	var extra []row
	waiting := func(rows []row) {
		for i := len(rows) - 1; i >= 0; i-- { // the newest first, should a step have closed twice
			if r := rows[i]; r.tier == k && r.source == name && r.start >= lo && r.start <= hi {
				if r, err := r.decoded(); err == nil {
					extra = append(extra, align(r, want))
				}
			}
		}
	}
	if src := h.sources[name]; src != nil {
		for _, r := range h.filling(src, k) {
			if r.start >= lo && r.start <= hi {
				extra = append(extra, align(r, want))
			}
		}
	}
	waiting(h.pending)
	waiting(h.writing) // in the file, or about to be
	return extra
}

// filling is tier k's steps being filled as they stand: its level, and
// the levels of the finer tiers, which it takes in when they close — in
// its step, or in the next. A finer level's base is in tier k's already:
// in its level, open or kept since its close (see level).
func (h *DB) filling(src *source, k int) []row {
	var out []level
	top := &src.levels[k]
	for j := k; j >= 0; j-- {
		f := &src.levels[j]
		if !f.open {
			continue
		}
		start := f.start - f.start%h.steps[k]
		i := slices.IndexFunc(out, func(l level) bool { return l.start == start })
		if i < 0 {
			out = append(out, level{start: start, aggs: make([]agg, len(src.names)), open: true})
			i = len(out) - 1
			if j < k && !top.open && top.start == start && start < top.closed { // its step closed, to open again
				merge(out[i].aggs, top.aggs)
			}
		}
		merge(out[i].aggs, f.aggs)
		if j == k {
			merge(out[i].aggs, f.base)
		}
	}
	rows := make([]row, len(out))
	for i := range out {
		rows[i] = h.rowOf(src, k, &out[i])
	}
	return rows
}

// align gives a row the aggregates of the metrics wanted, in their order.
func align(r row, want []string) row {
	out := r
	out.names, out.aggs = want, make([]agg, len(want))
	for i, name := range want {
		out.aggs[i] = r.value(name)
	}
	return out
}

// group merges rows, aligned to names, into steps of step milliseconds,
// per metric.
func group(rows []row, names []string, step int64) map[string][]Agg {
	out := make(map[string][]Agg, len(names))
	for i, name := range names {
		aggs := make([]Agg, 0, len(rows))
		var cur agg
		curStart := int64(-1)
		flush := func() {
			if cur.n > 0 {
				aggs = append(aggs, Agg{T: time.UnixMilli(curStart), Min: cur.min, Max: cur.max, Sum: cur.sum, Count: int(cur.n)})
			}
			cur = agg{}
		}
		for _, r := range rows {
			a := r.aggs[i]
			if a.n == 0 {
				continue
			}
			if s := r.start - r.start%step; s != curStart {
				flush()
				curStart = s
			}
			cur.merge(a)
		}
		flush()
		out[name] = aggs
	}
	return out
}
