package history

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/internal/vigiltest"
)

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

// clock is a test's time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var testTiers = []Tier{{10 * time.Second, time.Hour}, {time.Minute, 2 * time.Hour}, {10 * time.Minute, 24 * time.Hour}}

func open(t *testing.T, path string, ck *clock) (*DB, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	h, err := Open(context.Background(), Options{Path: path, Tiers: testTiers, Now: ck.now, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	return h, set
}

// input is what a test recorded: each metric's values at their times.
type input map[string]map[time.Time]float64

// record records a sample a second from start for n seconds: "a" an
// integer that moves, "b" a constant, "c" only every seventh second.
func record(h *DB, in input, start time.Time, n int) {
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second)
		m := map[string]float64{"a": float64((i*7919)%101 - 50), "b": 3}
		if i%7 == 0 {
			m["c"] = float64(i)
		}
		var names []string
		var values []float64
		for k, v := range m {
			if in[k] == nil {
				in[k] = map[time.Time]float64{}
			}
			in[k][at] = v
			names, values = append(names, k), append(values, v)
		}
		// In one order for a few samples, then another, as an agent
		// whose names change sends them.
		if (i/5)%3 != 0 {
			slices.Sort(names)
			for j, k := range names {
				values[j] = m[k]
			}
		}
		h.Record(collector.Sample{Source: "host/a", Time: at, Metrics: collector.MetricsIn(names, values)})
	}
}

// want is each step's min, mean and max of the values recorded, at a
// step of step.
func (in input) want(metric string, step time.Duration, from, to time.Time) []Agg {
	byStep := map[time.Time]*Agg{}
	var order []time.Time
	for at, v := range in[metric] {
		if at.Before(from.Truncate(step)) || at.After(to) {
			continue
		}
		s := at.Truncate(step)
		a := byStep[s]
		if a == nil {
			a = &Agg{T: s, Min: v, Max: v}
			byStep[s] = a
			order = append(order, s)
		}
		a.Min, a.Max, a.Sum, a.Count = min(a.Min, v), max(a.Max, v), a.Sum+v, a.Count+1
	}
	out := make([]Agg, 0, len(order))
	for s := from.Truncate(step); !s.After(to); s = s.Add(step) {
		if a := byStep[s]; a != nil {
			out = append(out, *a)
		}
	}
	return out
}

func sameAggs(t *testing.T, what string, got, want []Agg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d steps, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.T.Equal(w.T) || g.Min != w.Min || g.Max != w.Max || g.Sum != w.Sum || g.Count != w.Count || g.Mean() != w.Mean() {
			t.Fatalf("%s: step %d = %+v, want %+v", what, i, g, w)
		}
	}
}

// TestRollupsAreExact: every tier's steps are the min, mean and max of
// the values recorded in them, whether written, waiting or being filled,
// and a coarser step asked of a tier merges its steps exactly.
func TestRollupsAreExact(t *testing.T) {
	ck := &clock{t: t0}
	h, _ := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	in := input{}
	record(h, in, t0, 45*60+17) // 45 minutes and a bit: every tier has closed steps and one being filled
	end := t0.Add(45*time.Minute + 16*time.Second)
	ck.set(end)
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		step     time.Duration
		wantTier int
	}{{10 * time.Second, 0}, {30 * time.Second, 0}, {time.Minute, 1}, {5 * time.Minute, 1}, {10 * time.Minute, 2}, {time.Hour, 2}} {
		res, err := h.Query(context.Background(), "host/a", []string{"a", "b", "c", "nope"}, t0, end, tc.step)
		if err != nil {
			t.Fatal(err)
		}
		if res.Tier != tc.wantTier || res.Step != tc.step {
			t.Fatalf("step %s: tier %d at %s, want tier %d", tc.step, res.Tier, res.Step, tc.wantTier)
		}
		for _, m := range []string{"a", "b", "c"} {
			sameAggs(t, fmt.Sprintf("%s at %s", m, tc.step), res.Series[m], in.want(m, tc.step, t0, end))
		}
		if len(res.Series["nope"]) != 0 {
			t.Fatalf("a metric never recorded has %v", res.Series["nope"])
		}
	}
}

// TestQueryPicksTheTierThatHoldsFrom: a range older than a tier keeps is
// read from the next; more points than MaxPoints is an error that says
// what to do.
func TestQueryPicksTheTierThatHoldsFrom(t *testing.T) {
	ck := &clock{t: t0}
	h, _ := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	record(h, input{}, t0, 60)
	ck.set(t0.Add(90 * time.Minute)) // the first tier keeps an hour
	res, err := h.Query(context.Background(), "host/a", []string{"a"}, t0, ck.now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tier != 1 || res.Step != time.Minute || len(res.Series["a"]) != 1 || res.Series["a"][0].Count != 60 {
		t.Fatalf("tier %d step %s: %+v", res.Tier, res.Step, res.Series["a"])
	}
	if _, err := h.Query(context.Background(), "host/a", []string{"a"}, t0.Add(-100*24*time.Hour), ck.now(), 10*time.Minute); err == nil || !strings.Contains(err.Error(), "longer step") {
		t.Fatalf("too many points: %v", err)
	}
	if _, err := h.Query(context.Background(), "host/a", []string{"a"}, ck.now(), t0, 0); err == nil {
		t.Fatal("from after to: no error")
	}
}

// TestPruneKeepsWhatEachTierKeeps: a tier's steps older than it keeps go;
// the others stay, and the coarser tiers keep theirs.
func TestPruneKeepsWhatEachTierKeeps(t *testing.T) {
	ck := &clock{t: t0}
	h, _ := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	record(h, input{}, t0, 30*60)
	ck.set(t0.Add(30 * time.Minute))
	h.mu.Lock()
	h.closeStale(t0.Add(time.Hour)) // every step written
	h.mu.Unlock()
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ck.set(t0.Add(70 * time.Minute)) // the first tier keeps the last hour: from 0:10 on
	if err := h.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := func(tier int) (n int, oldest time.Time) {
		rows, err := h.sql.rows(context.Background(), tier, "host/a", 0, math.MaxInt64, nil, anyRow)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 {
			oldest = time.UnixMilli(rows[0].start).UTC()
		}
		return len(rows), oldest
	}
	if n, oldest := count(0); n != 120 || !oldest.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("first tier: %d steps from %s, want 120 from 03:10", n, oldest)
	}
	if n, _ := count(1); n != 30 {
		t.Fatalf("second tier: %d steps, want all 30", n)
	}
	if n, _ := count(2); n != 3 {
		t.Fatalf("third tier: %d steps, want all 3", n)
	}
}

// TestRestartFillsTheRingAndLosesNothing: after a Close and an Open the
// ring gets its past back from the first tier, and the steps being
// filled when it stopped carry on: each tier's step across the restart
// has every value of before and after.
func TestRestartFillsTheRingAndLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	ck := &clock{t: t0}
	h, _ := open(t, path, ck)
	in := input{}
	record(h, in, t0, 3*60+4) // stops 4 s into a first-tier step
	ck.set(t0.Add(3*time.Minute + 5*time.Second))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h, _ = open(t, path, ck)
	defer h.Close()
	ring := collector.NewStore(10*time.Minute, time.Second)
	if err := h.Fill(context.Background(), ring, t0); err != nil {
		t.Fatal(err)
	}
	pts, ok := ring.Range("host/a", "a", time.Time{})
	if !ok || len(pts) != 19 { // 18 steps of 10 s and the one it stopped in
		t.Fatalf("ring after a restart: %d points", len(pts))
	}
	want := in.want("a", 10*time.Second, t0, t0.Add(3*time.Minute+4*time.Second))
	for i, p := range pts {
		if !p.T.Equal(want[i].T) || p.V != want[i].Mean() {
			t.Fatalf("ring point %d = %v, want the mean %v at %s", i, p, want[i].Mean(), want[i].T)
		}
	}

	// The rest of the step it stopped in, and more.
	more := input{}
	record(h, more, t0.Add(3*time.Minute+4*time.Second), 10*60)
	for m, vs := range more {
		for at, v := range vs {
			in[m][at] = v
		}
	}
	end := t0.Add(13*time.Minute + 3*time.Second)
	ck.set(end)
	for _, step := range []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute} {
		res, err := h.Query(context.Background(), "host/a", []string{"a", "c"}, t0, end, step)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "c"} {
			sameAggs(t, fmt.Sprintf("%s at %s across a restart", m, step), res.Series[m], in.want(m, step, t0, end))
		}
	}
}

// TestWritesThatFailAreWrittenLater: while the file refuses writes (a
// full disk), closed steps wait and are counted; once it takes them they
// are all written.
func TestWritesThatFailAreWrittenLater(t *testing.T) {
	ck := &clock{t: t0}
	h, set := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	in := input{}
	record(h, in, t0, 30)
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The file may not grow: SQLite's own "database or disk is full".
	var pages int
	if err := h.sql.db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sql.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	record(h, in, t0.Add(30*time.Second), 20*60)
	h.Forget("host/old") // a removal waits with the rows
	err := h.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("a write to a full file: %v", err)
	}
	if got := vigiltest.Counter(set, `vigil_store_errors_total{op="save_tiers"}`); got != 1 {
		t.Fatalf("write errors counted: %v", got)
	}
	if _, err := h.sql.db.Exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if gone, err := h.sql.gone(context.Background()); err != nil || gone["host/old"] == 0 {
		t.Fatalf("the removal after the disk had room again: %v %v", gone, err)
	}
	end := t0.Add(20*time.Minute + 29*time.Second)
	h.mu.Lock()
	h.pending = nil // only what is on disk now
	for _, src := range h.sources {
		for k := range src.levels {
			src.levels[k] = level{aggs: make([]agg, len(src.names))}
		}
	}
	h.mu.Unlock()
	res, err := h.Query(context.Background(), "host/a", []string{"a"}, t0, end, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := in.want("a", 10*time.Second, t0, end)
	sameAggs(t, "after the disk had room again", res.Series["a"], want[:len(want)-1]) // the last step is being filled
}

func TestCheckTiers(t *testing.T) {
	for _, tc := range []struct {
		tiers []Tier
		want  string
	}{
		{nil, "no tiers"},
		{[]Tier{{500 * time.Millisecond, time.Hour}}, "whole seconds"},
		{[]Tier{{time.Minute, time.Second}}, "shorter than its step"},
		{[]Tier{{time.Minute, time.Hour}, {time.Minute, 2 * time.Hour}}, "not longer than the step before"},
		{[]Tier{{time.Minute, time.Hour}, {90 * time.Second, 2 * time.Hour}}, "not a multiple"},
		{[]Tier{{time.Minute, time.Hour}, {time.Hour, time.Hour}}, "not longer than the tier before"},
	} {
		errs := CheckTiers(tc.tiers)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.tiers, errs, tc.want)
		}
	}
	if errs := CheckTiers(DefaultTiers); len(errs) > 0 {
		t.Errorf("the default tiers: %v", errs)
	}
}

func TestLateSamplesAreCounted(t *testing.T) {
	ck := &clock{t: t0}
	h, set := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	record(h, input{}, t0, 25)
	h.Record(collector.Sample{Source: "host/a", Time: t0, Metrics: collector.MetricsOf(map[string]float64{"a": 1e6})})
	if got := vigiltest.Counter(set, "vigil_history_late_samples_total"); got != 1 {
		t.Fatalf("late samples: %v", got)
	}
	// A source that went quiet: its steps are closed and written; a
	// sample of one before the newest that comes after is late too.
	ck.set(t0.Add(time.Hour))
	h.mu.Lock()
	h.closeStale(ck.now())
	h.mu.Unlock()
	h.Record(collector.Sample{Source: "host/a", Time: t0.Add(11 * time.Second), Metrics: collector.MetricsOf(map[string]float64{"a": 1e6})})
	if got := vigiltest.Counter(set, "vigil_history_late_samples_total"); got != 2 {
		t.Fatalf("late samples after the source went quiet: %v", got)
	}
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, _ := h.Query(context.Background(), "host/a", []string{"a"}, t0, t0.Add(time.Minute), 10*time.Second)
	if len(res.Series["a"]) != 3 || res.Series["a"][1].Count != 10 || res.Series["a"][2].Count != 5 {
		t.Fatalf("steps after late samples: %+v", res.Series["a"])
	}
	for _, a := range res.Series["a"] {
		if a.Max == 1e6 {
			t.Fatal("a late sample was kept")
		}
	}
}

// TestAStepOpenedAgainIsWhole: the newest step of a source that went
// quiet opens again for the samples that come late into it (what an
// agent sent while cut off), with what it held; a query sees it whole
// while it fills, while it waits to be written and once written.
func TestAStepOpenedAgainIsWhole(t *testing.T) {
	// Quiet for 45 s, the minute is still being filled; for 75 s, it is
	// closed too, and opens again under the step that does.
	for _, quiet := range []time.Duration{45 * time.Second, 75 * time.Second} {
		t.Run(quiet.String(), func(t *testing.T) { stepOpenedAgain(t, quiet) })
	}
}

func stepOpenedAgain(t *testing.T, quiet time.Duration) {
	ck := &clock{t: t0}
	h, set := open(t, filepath.Join(t.TempDir(), "history.db"), ck)
	defer h.Close()
	rec := func(from, to int) {
		for i := from; i < to; i++ {
			h.Record(collector.Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"a": float64(i)})})
		}
	}
	want := func(when string, counts ...int) {
		t.Helper()
		res, err := h.Query(context.Background(), "host/a", []string{"a"}, t0, t0.Add(time.Minute), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, a := range res.Series["a"] {
			got = append(got, a.Count)
		}
		if !slices.Equal(got, counts) {
			t.Errorf("%s: steps count %v, want %v", when, got, counts)
		}
		if a := res.Series["a"]; len(a) > 2 && (a[2].Min != 20 || a[2].Max != float64(20+counts[2]-1)) {
			t.Errorf("%s: the step opened again: %+v", when, a[2])
		}
		sum := 0
		for _, c := range counts {
			sum += c
		}
		res, err = h.Query(context.Background(), "host/a", []string{"a"}, t0, t0.Add(time.Minute), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if a := res.Series["a"]; len(a) != 1 || a[0].Count != sum {
			t.Errorf("%s: the minute: %+v, want %d samples", when, a, sum)
		}
	}
	rec(0, 25)
	ck.set(t0.Add(quiet))
	h.mu.Lock()
	h.closeStale(ck.now()) // quiet since 24 s: [20 s, 30 s) closed with 5
	h.mu.Unlock()
	rec(25, 28)
	want("opened again", 10, 10, 8)
	rec(28, 35)
	want("closed again", 10, 10, 10, 5)
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("written", 10, 10, 10, 5)
	if late := vigiltest.Counter(set, "vigil_history_late_samples_total"); late != 0 {
		t.Errorf("%v samples taken for late", late)
	}
}

func TestValueEncodingRoundTrips(t *testing.T) {
	for _, v := range []float64{0, 1, -1, 45.123, 0.1, 1e-9, 123456789012345, 1 << 60, math.Pi, math.Inf(1), math.Copysign(0, -1), 0.1 + 0.2, -2.5e-7} {
		b := appendValue(nil, v)
		got, rest, ok := readValue(b)
		if !ok || len(rest) != 0 || math.Float64bits(got) != math.Float64bits(v) {
			t.Errorf("%v: read back %v (%v, %d left)", v, got, ok, len(rest))
		}
	}
	if n := len(appendValue(nil, 45.123)); n > 4 {
		t.Errorf("45.123 takes %d bytes", n)
	}
}

func FuzzDecodeRow(f *testing.F) {
	f.Add(encodeRow(nil, []int64{1, 2}, []agg{{min: 1, max: 2, sum: 3, n: 2}, {min: 5, max: 5, sum: 5, n: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ids []int64
		var aggs []agg
		if decodeRow(b, nil, func(id int64, _ int, a agg) { ids, aggs = append(ids, id), append(aggs, a) }) != nil {
			return
		}
		again := encodeRow(nil, ids, aggs)
		var ids2 []int64
		var aggs2 []agg
		if err := decodeRow(again, nil, func(id int64, _ int, a agg) { ids2, aggs2 = append(ids2, id), append(aggs2, a) }); err != nil {
			t.Fatalf("a row written does not read: %v", err)
		}
		if fmt.Sprint(ids, aggs) != fmt.Sprint(ids2, aggs2) {
			t.Fatalf("read %v %v, again %v %v", ids, aggs, ids2, aggs2)
		}
	})
}

// TestRemovedSourcesStayRemoved: a source the ring removed (a hub's agent
// taken out of its upstreams) is not given back to the ring by the next
// run's Fill, while its past stays in the history; one that came back
// after its removal is, from its return.
func TestRemovedSourcesStayRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	ck := &clock{t: t0}
	h, _ := open(t, path, ck)
	ring := collector.NewStore(10*time.Minute, time.Second)
	ring.RecordInto(h)
	for i := range 60 {
		ck.set(t0.Add(time.Duration(i) * time.Second))
		for _, src := range []string{"host/a", "host/b", "host/c"} {
			ring.Append(collector.Sample{Source: src, Time: ck.now(), Metrics: collector.MetricsOf(map[string]float64{"v": float64(i)})})
		}
	}
	ck.set(t0.Add(65 * time.Second))
	ring.Remove("host/b")
	ring.Remove("host/c")
	for i := 70; i < 100; i++ { // host/c is back
		ck.set(t0.Add(time.Duration(i) * time.Second))
		ring.Append(collector.Sample{Source: "host/c", Time: ck.now(), Metrics: collector.MetricsOf(map[string]float64{"v": float64(i)})})
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h, _ = open(t, path, ck)
	defer h.Close()
	ring = collector.NewStore(10*time.Minute, time.Second)
	if err := h.Fill(context.Background(), ring, t0); err != nil {
		t.Fatal(err)
	}
	if got := ring.Sources(); strings.Join(got, " ") != "host/a host/c" {
		t.Fatalf("sources after a restart: %q, want host/a and host/c (host/b was removed)", got)
	}
	if pts, _ := ring.Range("host/c", "v", time.Time{}); len(pts) == 0 || pts[0].T.Before(t0.Add(65*time.Second)) {
		t.Fatalf("host/c after a restart: %v, want its steps from its return only", pts)
	}
	res, err := h.Query(context.Background(), "host/b", []string{"v"}, t0, t0.Add(time.Minute), 0)
	if err != nil || len(res.Series["v"]) != 6 {
		t.Fatalf("host/b's past: %v %v, want its 6 steps kept", res.Series["v"], err)
	}

	// A removal is kept as long as the first tier holds steps before it.
	for _, c := range []struct {
		at   time.Time
		kept int
	}{{t0.Add(time.Hour), 2}, {t0.Add(time.Hour + 2*time.Minute), 0}} {
		ck.set(c.at)
		if err := h.Prune(context.Background()); err != nil {
			t.Fatal(err)
		}
		if gone, err := h.sql.gone(context.Background()); err != nil || len(gone) != c.kept {
			t.Fatalf("removals kept at %s: %v %v, want %d", c.at.Sub(t0), gone, err, c.kept)
		}
	}
}

// TestPendingRowsRenumber: a step waiting to be written is held encoded
// with its metrics numbered by place, and written with their numbers in
// the file: the same blob as encoded from its aggregates, which it gives
// back whole.
func TestPendingRowsRenumber(t *testing.T) {
	aggs := []agg{
		{min: 1, max: 2, sum: 3, n: 2},
		{min: math.Pi, max: math.Pi, sum: math.Pi, n: 1},
		{min: -2.5e-7, max: math.Inf(1), sum: math.Inf(1), n: 300},
		{min: 45.123, max: 1 << 60, sum: 0.1 + 0.2, n: 7},
	}
	ids := []int64{9, 1, 300, 70000}
	names := []string{"a", "b", "c", "d"}
	held := encodeRow(nil, nil, aggs)
	written := func(r row) ([]byte, error) { // as sqlStore.write encodes it
		a, err := r.aggregates(nil)
		return encodeRow(nil, ids[:len(r.names)], a), err
	}
	got, err := written(row{names: names, data: held})
	if err != nil {
		t.Fatal(err)
	}
	if want := encodeRow(nil, ids, aggs); string(got) != string(want) {
		t.Fatalf("renumbered % x\nwant        % x", got, want)
	}
	r, err := row{names: names, data: held}.decoded()
	if err != nil || r.data != nil || fmt.Sprint(r.aggs) != fmt.Sprint(aggs) {
		t.Fatalf("decoded %v (%v), want %v", r.aggs, err, aggs)
	}
	if _, err := written(row{names: names[:2], data: held}); err == nil {
		t.Error("a metric beyond the numbers given was renumbered")
	}
	if _, err := written(row{names: names, data: held[:len(held)-1]}); err == nil {
		t.Error("a blob cut short was renumbered")
	}
}

// runDB opens a DB in a synctest bubble and runs it; it stops and closes
// when the test ends, on a failure too, so that the bubble's goroutines end.
func runDB(t *testing.T, opts Options) *DB {
	t.Helper()
	opts.Path, opts.Tiers = filepath.Join(t.TempDir(), "h.db"), testTiers
	h, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// TestStepsAreWrittenAMinuteAtATime: Run writes the steps that closed
// once every WriteEvery, not as each closes — a source's steps share a
// page of the file — and a query sees them all the while. A clock read a
// little late once (a busy process) does not put the next write off.
func TestStepsAreWrittenAMinuteAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		late := func() time.Time { // 3 ms late for the first minute and a half, then on time
			now := time.Now()
			if now.Sub(begin) < 90*time.Second {
				return now.Add(3 * time.Millisecond)
			}
			return now
		}
		h := runDB(t, Options{Now: late})
		start := time.Now()
		onDisk := func() int {
			rows, err := h.sql.rows(context.Background(), 0, "host/a", 0, math.MaxInt64, []string{"v"}, anyRow)
			if err != nil {
				t.Fatal(err)
			}
			return len(rows)
		}
		queried := func() int {
			res, err := h.Query(context.Background(), "host/a", []string{"v"}, start, time.Now(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return len(res.Series["v"])
		}
		for i := range 185 {
			h.Record(collector.Sample{Source: "host/a", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"v": float64(i)})})
			time.Sleep(time.Second)
			synctest.Wait()
			switch elapsed := time.Since(start); {
			case elapsed < DefaultWriteEvery:
				if n := onDisk(); n != 0 {
					t.Fatalf("after %s, %d steps written; want none before %s", elapsed, n, DefaultWriteEvery)
				}
			case elapsed < 2*DefaultWriteEvery:
				if n := onDisk(); n < 5 || n > 6 {
					t.Fatalf("after %s, %d steps written; want the minute's 5 or 6 closed", elapsed, n)
				}
			case elapsed < 3*DefaultWriteEvery:
				if n := onDisk(); n < 11 || n > 12 {
					t.Fatalf("after %s, %d steps written; want two minutes' 11 or 12 closed", elapsed, n)
				}
			}
			if n, want := queried(), int(time.Since(start)/(10*time.Second))+1; n != want && n != want-1 {
				t.Fatalf("after %s a query gives %d steps, want %d", time.Since(start), n, want)
			}
		}
	})
}

// TestSourcesWithClocksBehind: an agent whose clock is behind the hub's
// (30 s here) has its steps closed by its own time, not the hub's: none
// of its samples is taken for late, and every step of every tier holds
// all of them — the hub closing its steps early had dropped the rest of
// each 10-second step and written a minute's step twice, the second time
// with its last part alone.
func TestSourcesWithClocksBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		h := runDB(t, Options{Metrics: set})
		time.Sleep(30 * time.Second)
		start := time.Now().Add(-30 * time.Second) // the agent's clock, on a minute
		for i := range 300 {
			h.Record(collector.Sample{Source: "host/behind", Time: start.Add(time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"v": 1})})
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if late := vigiltest.Counter(set, "vigil_history_late_samples_total"); late != 0 {
			t.Errorf("%v samples taken for late", late)
		}
		res, err := h.Query(context.Background(), "host/behind", []string{"v"}, start, start.Add(239*time.Second), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		steps := res.Series["v"]
		if len(steps) != 4 {
			t.Fatalf("%d minutes, want 4: %+v", len(steps), steps)
		}
		for _, a := range steps {
			if a.Count != 60 {
				t.Errorf("the minute at %s counts %d samples, want 60", a.T.Sub(start), a.Count)
			}
		}
	})
}

// TestAnOutageReplayedLosesNothing: an agent cut off from the hub for
// longer than a step of every tier has its steps closed as a quiet
// source's; when it is back, the hub reads what it missed (its events
// after the last it had) and those samples come late, into steps already
// closed and written. Each such step is written whole, not replaced by
// its late part — with the hub restarted during the outage too.
func TestAnOutageReplayedLosesNothing(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				set := metrics.NewSet()
				path := filepath.Join(t.TempDir(), "h.db")
				run := func() (*DB, func()) {
					h, err := Open(t.Context(), Options{Path: path, Tiers: testTiers, Metrics: set})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithCancel(t.Context())
					done := make(chan struct{})
					go func() { h.Run(ctx); close(done) }()
					return h, func() {
						cancel()
						<-done
						if err := h.Close(); err != nil {
							t.Error(err)
						}
					}
				}
				h, stop := run()
				start := time.Now() // on ten minutes
				at := func(i int) collector.Sample {
					return collector.Sample{Source: "host/a", Time: start.Add(time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"v": 1})}
				}
				for i := range 25 {
					h.Record(at(i))
					time.Sleep(time.Second)
				}
				time.Sleep(12 * time.Minute) // cut off: every tier's step is closed and written
				synctest.Wait()
				if restart {
					stop()
					h, stop = run()
				}
				now := int(time.Since(start) / time.Second)
				for i := 25; i < now; i++ { // what it missed, at once
					h.Record(at(i))
				}
				for i := now; i < now+11*60; i++ {
					h.Record(at(i))
					time.Sleep(time.Second)
				}
				synctest.Wait()
				if late := vigiltest.Counter(set, "vigil_history_late_samples_total"); late != 0 {
					t.Errorf("%v samples taken for late", late)
				}
				check := func(when string) {
					for _, c := range []struct {
						step time.Duration
						want int
					}{{10 * time.Second, 10}, {time.Minute, 60}, {10 * time.Minute, 600}} {
						res, err := h.Query(context.Background(), "host/a", []string{"v"}, start, start.Add(20*time.Minute-time.Millisecond), c.step)
						if err != nil {
							t.Fatal(err)
						}
						steps := res.Series["v"]
						if len(steps) != int(20*time.Minute/c.step) {
							t.Errorf("%s, step %s: %d steps, want %d", when, c.step, len(steps), 20*time.Minute/c.step)
						}
						for _, a := range steps {
							if a.Count != c.want {
								t.Errorf("%s: the %s step at %s counts %d samples, want %d", when, c.step, a.T.Sub(start), a.Count, c.want)
								break
							}
						}
					}
				}
				check("waiting")
				if err := h.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				check("written")
				stop()
			})
		})
	}
}

// TestARestartWhileStepsAreOpenAgain: a stop while a source's late
// samples have opened its closed steps again — the first tier's, or the
// minute's below it — neither loses what came late nor counts what the
// step was closed with twice.
func TestARestartWhileStepsAreOpenAgain(t *testing.T) {
	for _, late := range []int{27, 55} { // the 10-second step open again; the minute open again
		t.Run(fmt.Sprint(late), func(t *testing.T) {
			ck := &clock{t: t0}
			path := filepath.Join(t.TempDir(), "history.db")
			h, _ := open(t, path, ck)
			rec := func(from, to int) {
				for i := from; i < to; i++ {
					h.Record(collector.Sample{Source: "host/a", Time: t0.Add(time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"a": 1})})
				}
			}
			rec(0, 25)
			ck.set(t0.Add(80 * time.Second))
			h.mu.Lock()
			h.closeStale(ck.now()) // [20 s, 30 s) and the minute closed
			h.mu.Unlock()
			rec(25, late)
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			h, _ = open(t, path, ck)
			defer h.Close()
			rec(late, 70)
			counts := func(step time.Duration) []int {
				res, err := h.Query(context.Background(), "host/a", []string{"a"}, t0, t0.Add(70*time.Second-time.Millisecond), step)
				if err != nil {
					t.Fatal(err)
				}
				var out []int
				for _, a := range res.Series["a"] {
					out = append(out, a.Count)
				}
				return out
			}
			for _, when := range []string{"waiting", "written"} {
				if when == "written" {
					if err := h.Flush(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				if got, want := counts(time.Minute), []int{60, 10}; !slices.Equal(got, want) {
					t.Errorf("%s: minutes count %v, want %v", when, got, want)
				}
				if got, want := counts(10*time.Second), []int{10, 10, 10, 10, 10, 10, 10}; !slices.Equal(got, want) {
					t.Errorf("%s: 10-second steps count %v, want %v", when, got, want)
				}
			}
		})
	}
}
