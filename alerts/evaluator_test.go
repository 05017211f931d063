package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestStateMachine(t *testing.T) {
	type obs struct {
		at   time.Duration
		v    float64
		ok   bool
		want string // transition announced, "" for none
		st   string // state after
	}
	clear80 := 80.0
	tests := []struct {
		name string
		rule Rule
		obs  []obs
	}{
		{"fires at once without for", Rule{Op: ">", Threshold: 90}, []obs{
			{0, 50, true, "", StateInactive},
			{1, 95, true, StateFiring, StateFiring},
			{2, 96, true, "", StateFiring},
			{3, 50, true, StateResolved, StateInactive},
		}},
		{"pending, then firing after for", Rule{Op: ">", Threshold: 90, For: 3 * time.Second}, []obs{
			{0, 95, true, StatePending, StatePending},
			{2, 95, true, "", StatePending},
			{3, 95, true, StateFiring, StateFiring},
		}},
		{"pending that clears never fires", Rule{Op: ">", Threshold: 90, For: 3 * time.Second}, []obs{
			{0, 95, true, StatePending, StatePending},
			{1, 85, true, StateInactive, StateInactive},
			{2, 95, true, StatePending, StatePending},
			{4, 95, true, "", StatePending}, // for counts again from 2
			{5, 95, true, StateFiring, StateFiring},
		}},
		{"hysteresis: resolves only below clear", Rule{Op: ">", Threshold: 90, Clear: &clear80}, []obs{
			{0, 95, true, StateFiring, StateFiring},
			{1, 85, true, "", StateFiring}, // below the threshold, above clear
			{2, 89, true, "", StateFiring},
			{3, 79, true, StateResolved, StateInactive},
		}},
		{"keep_firing_for holds a flapping alert", Rule{Op: ">", Threshold: 90, KeepFiringFor: 3 * time.Second}, []obs{
			{0, 95, true, StateFiring, StateFiring},
			{1, 50, true, "", StateFiring},
			{2, 95, true, "", StateFiring}, // breached again: the clear clock restarts
			{3, 50, true, "", StateFiring},
			{5, 50, true, "", StateFiring},
			{6, 50, true, StateResolved, StateInactive},
		}},
		{"less-than rules", Rule{Op: "<", Threshold: 10}, []obs{
			{0, 5, true, StateFiring, StateFiring},
			{1, 10, true, StateResolved, StateInactive},
		}},
		{"no data is a state of its own", Rule{Op: ">", Threshold: 90}, []obs{
			{0, 95, true, StateFiring, StateFiring},
			{1, 0, false, StateNoData, StateNoData},
			{2, 0, false, "", StateNoData},
			{3, 50, true, StateInactive, StateInactive},
			{4, 0, false, StateNoData, StateNoData},
			{5, 95, true, StateFiring, StateFiring},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Name, r.Metric = "R", "m"
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			a := &Alert{State: StateInactive}
			for i, o := range tt.obs {
				got := r.step(a, o.v, o.ok, t0.Add(o.at*time.Second))
				if got != o.want || a.State != o.st {
					t.Fatalf("step %d (v=%v ok=%v at %ds): announced %q, state %q; want %q, %q", i, o.v, o.ok, o.at, got, a.State, o.want, o.st)
				}
			}
		})
	}
}

// TestANewEpisodeStartsClean: an alert that fires again after it
// resolved is a new episode: its pending transition carries neither the
// last episode's start nor its end.
func TestANewEpisodeStartsClean(t *testing.T) {
	r := Rule{Name: "R", Metric: "m", Op: ">", Threshold: 90, For: 2 * time.Second}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	a := &Alert{State: StateInactive}
	for i, v := range []float64{95, 95, 95, 50} { // pending, -, firing, resolved
		r.step(a, v, true, t0.Add(time.Duration(i)*time.Second))
	}
	if a.StartedAt.IsZero() || a.EndedAt.IsZero() {
		t.Fatalf("the first episode: %+v", a)
	}
	if got := r.step(a, 95, true, t0.Add(10*time.Second)); got != StatePending {
		t.Fatalf("breached again: %q", got)
	}
	if !a.StartedAt.IsZero() || !a.EndedAt.IsZero() || !a.ActiveAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("the new episode's pending carries the last one's times: %+v", a)
	}
}

func TestAggregate(t *testing.T) {
	pts := []collector.Point{{T: t0, V: 10}, {T: t0.Add(time.Second), V: 30}, {T: t0.Add(2 * time.Second), V: 20}}
	for how, want := range map[string]float64{"last": 20, "avg": 20, "min": 10, "max": 30, "rate": 5} {
		if got, ok := aggregate(how, pts); !ok || got != want {
			t.Errorf("%s = %v, %v; want %v", how, got, ok, want)
		}
	}
	if _, ok := aggregate("rate", pts[:1]); ok {
		t.Error("rate of one point")
	}
	if _, ok := aggregate("avg", nil); ok {
		t.Error("avg of nothing")
	}
}

func TestRuleValidate(t *testing.T) {
	c := func(v float64) *float64 { return &v }
	for _, tt := range []struct {
		rule Rule
		want string
	}{
		{Rule{Name: "", Metric: "m", Op: ">"}, "name:"},
		{Rule{Name: "A", Op: ">"}, "metric: required"},
		{Rule{Name: "A", Metric: "m", Op: "=>"}, "op:"},
		{Rule{Name: "A", Metric: "m", Op: ">", Threshold: 90, Clear: c(95)}, "clear: 95 is on the firing side"},
		{Rule{Name: "A", Metric: "m", Op: "<", Threshold: 10, Clear: c(5)}, "clear: 5 is on the firing side"},
		{Rule{Name: "A", Metric: "m", Op: ">", Aggregate: "median"}, "aggregate:"},
		{Rule{Name: "A", Metric: "m", Op: ">", Aggregate: "avg"}, "window: avg needs a window"},
		{Rule{Name: "A", Metric: "m", Op: ">", For: -time.Second}, "must not be negative"},
		{Rule{Name: "A", Metric: "m", Op: ">", Annotations: map[string]string{"summary": "{{.Value"}}, "annotations.summary:"},
	} {
		err := tt.rule.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.rule, err, tt.want)
		}
	}
	for _, r := range DefaultRules() {
		if err := r.Validate(); err != nil {
			t.Errorf("default rule %s: %v", r.Name, err)
		}
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestEvaluatorPublishesPersistsAndSurvivesRestart drives the evaluator
// over a real ring buffer, hub and SQLite store: transitions become alert
// events and rows, and a new evaluator on the same database carries on
// without firing again.
func TestEvaluatorPublishesPersistsAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ck := &clock{t: t0}
	store := collector.NewStore(10*time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	defer hub.Close()
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	rules := []Rule{{Name: "DiskFull", Source: "host/*", Metric: "fs.used_percent{*}", Op: ">", Threshold: 90, For: 2 * time.Second,
		Severity: "critical", Annotations: map[string]string{"summary": `{{.Metric}} on {{.Source}} at {{printf "%.0f" .Value}}%`}}}
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	newEval := func() *Evaluator {
		e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Now: ck.now}
		if err := e.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	sample := func(root, home float64) {
		store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{
			"fs.used_percent{mount=/}": root, "fs.used_percent{mount=/home}": home, "cpu.percent": 99})})
	}
	var raw []string
	events := func() []map[string]any {
		var out []map[string]any
		for len(sub.C()) > 0 {
			var m map[string]any
			b := (<-sub.C()).JSON()
			raw = append(raw, string(b))
			json.Unmarshal(b, &m)
			out = append(out, m)
		}
		return out
	}

	e := newEval()
	for i := range 4 {
		sample(95, 50)
		e.Evaluate(context.Background())
		ck.t = ck.t.Add(time.Second)
		_ = i
	}
	evs := events()
	if len(evs) != 2 || evs[0]["transition"] != StatePending || evs[1]["transition"] != StateFiring {
		t.Fatalf("events %v", evs)
	}
	ev := evs[1]
	if ev["source"] != "host/a" || strings.Count(raw[1], `"source"`) != 1 || !strings.Contains(raw[1], `"op":">"`) || ev["op"] != ">" || ev["metric"] != "fs.used_percent{mount=/}" || ev["value"] != 95.0 || ev["threshold"] != 90.0 ||
		ev["severity"] != "critical" || ev["fingerprint"] != Fingerprint("DiskFull", "host/a", "fs.used_percent{mount=/}") {
		t.Errorf("firing event %v", ev)
	}
	if ann, _ := ev["annotations"].(map[string]any); ann["summary"] != "fs.used_percent{mount=/} on host/a at 95%" {
		t.Errorf("summary %v", ev["annotations"])
	}
	if act := e.Active(); len(act) != 1 || act[0].State != StateFiring {
		t.Fatalf("active %v", act)
	}

	// A restart: the new evaluator knows the alert is firing and says
	// nothing new while it stays so.
	e2 := newEval()
	sample(96, 50)
	e2.Evaluate(context.Background())
	if evs := events(); len(evs) != 0 {
		t.Fatalf("restart announced %v", evs)
	}
	if act := e2.Active(); len(act) != 1 || act[0].State != StateFiring || !act[0].StartedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after restart: %+v", act)
	}
	ck.t = ck.t.Add(time.Second)
	sample(50, 50)
	e2.Evaluate(context.Background())
	if evs := events(); len(evs) != 1 || evs[0]["transition"] != StateResolved || evs[0]["ended_at"] == nil {
		t.Fatalf("resolve: %v", evs)
	}

	// The source stops reporting: no data.
	ck.t = ck.t.Add(2 * DefaultNoData)
	e2.Evaluate(context.Background())
	evs = events()
	if len(evs) != 2 || evs[0]["state"] != StateNoData {
		t.Fatalf("no data: %v", evs)
	}
}

// TestRestartBeforeFirstSample: after a restart the ring buffer is empty
// until the sources report; a firing alert must not go to nodata (and fire
// again) in that moment.
func TestRestartBeforeFirstSample(t *testing.T) {
	rules := []Rule{{Name: "Up", Source: "host/*", Metric: "up", Op: ">", Threshold: 0}}
	db, ck, hub := savedRig(t, rules)
	store := collector.NewStore(time.Minute, time.Second)
	store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"up": 1})})
	e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Now: ck.now}
	e.Load(context.Background())
	e.Evaluate(context.Background())

	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{})
	empty := collector.NewStore(time.Minute, time.Second) // the new run's ring
	e2 := &Evaluator{Rules: rules, Ring: empty, Hub: hub, States: db, Now: ck.now}
	e2.Load(context.Background())
	ck.t = ck.t.Add(time.Second)
	e2.Evaluate(context.Background()) // before the first sample
	ck.t = ck.t.Add(time.Second)
	empty.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"up": 1})})
	e2.Evaluate(context.Background())
	if n := len(sub.C()); n != 0 {
		t.Fatalf("%d alert events after a restart, want none", n)
	}
	if act := e2.Active(); len(act) != 1 || act[0].State != StateFiring {
		t.Fatalf("active %+v", act)
	}
}

// TestAck: an acknowledgement is announced, saved (a restart keeps it),
// sends no webhook, and ends when the alert resolves; only active alerts
// can be acknowledged.
func TestAck(t *testing.T) {
	db := openDB(t)
	if err := db.PutReceiver(context.Background(), Receiver{ID: "sub_1", URL: "http://192.0.2.1/", Events: []string{"*"},
		Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()}); err != nil {
		t.Fatal(err)
	}
	ck := &clock{t: t0}
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	defer hub.Close()
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "temp", Op: ">", Threshold: 90}}
	rules[0].Validate()
	store := collector.NewStore(time.Minute, time.Second)
	sample := func(v float64) {
		store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"temp": v})})
	}
	newEval := func() *Evaluator {
		e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Now: ck.now}
		if err := e.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	last := func() map[string]any {
		var m map[string]any
		for len(sub.C()) > 0 {
			json.Unmarshal((<-sub.C()).JSON(), &m)
		}
		return m
	}
	fp := Fingerprint("Hot", "host/a", "temp")
	e := newEval()
	if _, err := e.Ack(context.Background(), fp, "alice"); !errors.Is(err, ErrNotActive) {
		t.Fatalf("ack of an unknown alert: %v", err)
	}
	sample(95)
	e.Evaluate(context.Background())
	last()
	deliveries := func() int { // webhook events in the outbox
		var n int
		if err := db.db.QueryRow(`SELECT COUNT(*) FROM events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := deliveries()
	if before != 1 {
		t.Fatalf("%d webhook events for a firing alert, want 1", before)
	}
	ck.t = ck.t.Add(time.Second)
	a, err := e.Ack(context.Background(), fp, "  alice ")
	if err != nil || a.AckedBy != "alice" || !a.AckedAt.Equal(ck.t) || a.State != StateFiring {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if ev := last(); ev["transition"] != KindAcknowledged || ev["acked_by"] != "alice" || ev["state"] != StateFiring {
		t.Fatalf("ack event %v", ev)
	}
	if n := deliveries(); n != before {
		t.Fatalf("an acknowledgement queued %d webhooks", n-before)
	}
	e2 := newEval() // a restart keeps it
	if act := e2.Active(); len(act) != 1 || act[0].AckedBy != "alice" {
		t.Fatalf("after restart %+v", act)
	}
	ck.t = ck.t.Add(time.Second)
	sample(50)
	e2.Evaluate(context.Background())
	if ev := last(); ev["transition"] != StateResolved || ev["acked_by"] != nil {
		t.Fatalf("resolve event %v", ev)
	}
	ck.t = ck.t.Add(time.Second)
	sample(95)
	e2.Evaluate(context.Background())
	if act := e2.Active(); len(act) != 1 || act[0].AckedBy != "" {
		t.Fatalf("a new episode kept the old acknowledgement: %+v", act)
	}
}

// TestAlertsCarrySourceLabels: an alert on a source that came from an
// upstream carries the upstream's labels (role, dc), so receivers can
// route by them; the rule's own labels win over them.
func TestAlertsCarrySourceLabels(t *testing.T) {
	ck := &clock{t: t0}
	store := collector.NewStore(10*time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	defer hub.Close()
	r := Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90, Labels: map[string]string{"team": "ops", "dc": "rule"}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &Evaluator{Rules: []Rule{r}, Ring: store, Hub: hub, Now: ck.now}
	store.Append(collector.Sample{Source: "host/web-1", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 99}),
		Labels: map[string]string{"role": "web", "dc": "fra"}})
	if err := e.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
	active := e.Active()
	if len(active) != 1 {
		t.Fatalf("alerts %+v", active)
	}
	if want := map[string]string{"role": "web", "dc": "rule", "team": "ops"}; !maps.Equal(active[0].Labels, want) {
		t.Fatalf("labels %v, want %v", active[0].Labels, want)
	}
}

// TestEvaluatorFollowsChangingMetrics: a metric that joins a source's
// samples later, or takes the place of another, is evaluated from its
// first sample; one that leaves has no data.
func TestEvaluatorFollowsChangingMetrics(t *testing.T) {
	e, store, ck, _ := memoryEvaluator(t, Rule{Name: "DiskFull", Source: "host/*", Metric: "fs.used_percent{*}", Op: ">", Threshold: 90, NoData: 2 * time.Second})
	states := func() map[string]string {
		out := map[string]string{}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, a := range e.alerts {
			out[a.Metric] = a.State
		}
		return out
	}
	steps := []struct {
		metrics map[string]float64
		want    map[string]string
	}{
		{map[string]float64{"fs.used_percent{mount=/}": 50}, map[string]string{"fs.used_percent{mount=/}": StateInactive}},
		{map[string]float64{"fs.used_percent{mount=/}": 50, "fs.used_percent{mount=/data}": 95},
			map[string]string{"fs.used_percent{mount=/}": StateInactive, "fs.used_percent{mount=/data}": StateFiring}},
		// As many metrics as before, one of them new.
		{map[string]float64{"fs.used_percent{mount=/}": 50, "fs.used_percent{mount=/var}": 97},
			map[string]string{"fs.used_percent{mount=/}": StateInactive, "fs.used_percent{mount=/data}": StateFiring, "fs.used_percent{mount=/var}": StateFiring}},
	}
	for i, st := range steps {
		ck.t = ck.t.Add(time.Second)
		store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(st.metrics)})
		e.Evaluate(context.Background())
		if got := states(); !maps.Equal(got, st.want) {
			t.Fatalf("step %d: %v, want %v", i, got, st.want)
		}
	}
	for range 3 { // /data left the samples
		ck.t = ck.t.Add(time.Second)
		store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(steps[2].metrics)})
		e.Evaluate(context.Background())
	}
	if got := states()["fs.used_percent{mount=/data}"]; got != StateNoData {
		t.Fatalf("a metric gone from the samples: %s, want %s", got, StateNoData)
	}
}

// TestAlertsOfARemovedSource: a source the store forgets (an agent taken
// out of the hub's upstreams) does not leave its alerts firing: they
// resolve, since what they were about is gone, not silent.
func TestAlertsOfARemovedSource(t *testing.T) {
	e, store, ck, hub := memoryEvaluator(t, AgentDownRule(2*time.Second))
	state := func() string {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, a := range e.alerts {
			return a.State
		}
		return ""
	}
	for range 4 {
		ck.t = ck.t.Add(time.Second)
		store.Append(collector.Sample{Source: "upstream/web-1", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"upstream.up": 0}), Labels: map[string]string{"role": "web"}})
		e.Evaluate(context.Background())
	}
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	if got := state(); got != StateFiring {
		t.Fatalf("an agent down for 4s: %s, want firing", got)
	}
	store.Remove("upstream/web-1")
	ck.t = ck.t.Add(time.Second)
	e.Evaluate(context.Background())
	if got := state(); got != StateInactive {
		t.Fatalf("its source removed: %s, want inactive (resolved)", got)
	}
	if active := e.Active(); len(active) != 0 {
		t.Fatalf("active alerts of a removed source: %+v", active)
	}
	var ev map[string]any
	json.Unmarshal((<-sub.C()).JSON(), &ev)
	if ev["transition"] != StateResolved || ev["labels"].(map[string]any)["role"] != "web" {
		t.Fatalf("the alert event: %v, want resolved with the source's labels", ev)
	}
	// A source that was never there is not removed: its alerts wait for
	// data (a hub restarted before its agents came back).
	if store.Removed("upstream/web-2") {
		t.Fatal("a source never seen is removed")
	}
}

// memoryEvaluator is an evaluator of the rules over a store of its own,
// publishing on a hub of its own, its states in memory, on a test clock.
func memoryEvaluator(t *testing.T, rules ...Rule) (*Evaluator, *collector.Store, *clock, *stream.Hub) {
	t.Helper()
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	ck := &clock{t: t0}
	store := collector.NewStore(10*time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	t.Cleanup(hub.Close)
	return &Evaluator{Rules: rules, Ring: store, Hub: hub, Now: ck.now}, store, ck, hub
}

// TestSlideMatchesAWholeRead: a rule's window kept step by step (slide,
// reading only what is new) holds what reading the whole window from the
// ring does, in time order, through gaps longer than the window, samples
// without the metric, and a clock set back by seconds or minutes (whose
// points from before that are after the newest sample are not in it).
func TestSlideMatchesAWholeRead(t *testing.T) {
	ring := collector.NewStore(10*time.Minute, time.Second)
	rng := rand.New(rand.NewPCG(7, 9))
	t0 := time.Unix(1_800_000_000, 0)
	var window []collector.Point
	at := t0
	for step := range 3000 {
		switch r := rng.IntN(100); {
		case r < 2:
			at = at.Add(time.Duration(30+rng.IntN(120)) * time.Second) // silent, sometimes past the window
		case r < 3:
			at = at.Add(-time.Duration(2+rng.IntN(150)) * time.Second) // the source's clock set back
		case r < 10:
			ring.Append(collector.Sample{Source: "host/a", Time: at, Metrics: collector.MetricsOf(map[string]float64{"other": 1})})
		default:
			ring.Append(collector.Sample{Source: "host/a", Time: at, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": float64(rng.IntN(1000)) / 10})})
		}
		to := at
		at = at.Add(time.Second)
		from := to.Add(-time.Minute)
		whole, _ := ring.AppendRange(nil, "host/a", "cpu.percent", from)
		whole = slices.DeleteFunc(whole, func(p collector.Point) bool { return p.T.After(to) })
		slices.SortStableFunc(whole, func(a, b collector.Point) int { return a.T.Compare(b.T) })
		window = slide(window, from, to, func(dst []collector.Point, since time.Time) []collector.Point {
			dst, _ = ring.AppendRange(dst, "host/a", "cpu.percent", since)
			return dst
		})
		if !slices.EqualFunc(window, whole, func(a, b collector.Point) bool { return a.T.Equal(b.T) && a.V == b.V }) {
			t.Fatalf("step %d: the window kept holds %d points, a whole read %d", step, len(window), len(whole))
		}
	}
}

// ackQueue is an AckQueue in memory; done counts the requests removed.
type ackQueue struct {
	pending []AckRequest
	done    int
}

func (q *ackQueue) RequestAck(_ context.Context, r AckRequest) error {
	q.pending = append(q.pending, r)
	return nil
}
func (q *ackQueue) PendingAcks() []AckRequest { return q.pending }
func (q *ackQueue) DoneAck(context.Context, AckRequest) error {
	q.done++
	return nil
}

// The lease holder applies an acknowledgement passed on once, even when
// the request is read again (its removal not seen yet), and not at all
// once the lease is gone: the request stays for the next holder.
func TestPassedOnAckAppliedOnce(t *testing.T) {
	ck := &clock{t: t0}
	store := collector.NewStore(10*time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	defer hub.Close()
	r := Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	held := true
	q := &ackQueue{}
	set := metrics.NewSet()
	e := &Evaluator{Rules: []Rule{r}, Ring: store, Hub: hub, Now: ck.now, Metrics: set, Acks: q,
		Lead: func() (bool, uint64, time.Time) { return held, 1, ck.t.Add(time.Hour) }}
	store.Append(collector.Sample{Source: "host/web-1", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 99})})
	ctx := context.Background()
	e.init() // as Run does
	if !e.lead(ctx) {
		t.Fatal("not leading with the lease held")
	}
	if err := e.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	fp := e.Active()[0].Fingerprint
	ck.t = ck.t.Add(time.Second)
	q.pending = []AckRequest{{Fingerprint: fp, By: "ops", At: ck.t.Add(-500 * time.Millisecond)}}
	acked := func() float64 {
		return vigiltest.Counter(set, `vigil_alert_transitions_total{transition="acknowledged"}`)
	}
	e.applyAcks(ctx)
	ck.t = ck.t.Add(time.Second)
	e.applyAcks(ctx) // the same request, read again
	if got := acked(); got != 1 || q.done != 2 {
		t.Fatalf("acknowledged %v times, requests removed %d; want once, both removed", got, q.done)
	}
	held = false
	q.pending, q.done = []AckRequest{{Fingerprint: fp, By: "later", At: ck.t}}, 0
	e.applyAcks(ctx)
	if acked() != 1 || q.done != 0 {
		t.Fatalf("without the lease: acknowledged %v times, %d requests removed; want none, the request kept", acked(), q.done)
	}
}

// countingStore is a Versioned StateStore in memory that counts reads.
type countingStore struct {
	alerts  []Alert
	version uint64
	loads   int
}

func (c *countingStore) LoadAlerts(context.Context) ([]Alert, error) {
	c.loads++
	return slices.Clone(c.alerts), nil
}
func (c *countingStore) SaveTransitions(context.Context, []Transition) error { return nil }
func (c *countingStore) Version() uint64                                     { return c.version }

// A replica that does not hold the lease reads the states again only when
// they changed, not every interval; one that takes the lease reads them
// whatever the version.
func TestFollowerReadsChangedStatesOnly(t *testing.T) {
	ck := &clock{t: t0}
	r := Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	store := &countingStore{alerts: []Alert{{Fingerprint: Fingerprint("Hot", "host/a", "cpu.percent"), Rule: "Hot", Source: "host/a", Metric: "cpu.percent", State: StateFiring}}}
	held := false
	e := &Evaluator{Rules: []Rule{r}, Ring: collector.NewStore(time.Minute, time.Second), Hub: stream.NewHub(stream.HubOptions{FirstID: 1}),
		States: store, Now: ck.now, Lead: func() (bool, uint64, time.Time) { return held, 1, ck.t.Add(time.Hour) }}
	e.init()
	ctx := context.Background()
	for range 5 {
		e.lead(ctx)
	}
	if store.loads != 1 || len(e.Active()) != 1 {
		t.Fatalf("5 intervals following, the states unchanged: %d reads, %d alerts; want 1 read", store.loads, len(e.Active()))
	}
	store.version++
	store.alerts[0].State = StateResolved
	e.lead(ctx)
	if store.loads != 2 || len(e.Active()) != 0 {
		t.Fatalf("after a change: %d reads, %d active; want the change read", store.loads, len(e.Active()))
	}
	held = true
	if !e.lead(ctx) || store.loads != 3 {
		t.Fatalf("taking the lease: %d reads, want the states read again", store.loads)
	}
}

// TestSourcesWithClocksOff: an agent whose clock is behind or ahead of
// the hub's has its alerts judged as one whose clock is right: its
// samples keep coming, so it is not silent, and a rule's window is the
// window before its newest sample, not before the hub's now.
func TestSourcesWithClocksOff(t *testing.T) {
	rule := Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90,
		Aggregate: "avg", Window: time.Minute, For: 20 * time.Second}
	run := func(skew time.Duration) []stepChange {
		return hotSteps(t, rule, 400, 120, 240, func(int) time.Duration { return skew })
	}
	want := run(0)
	if len(want) != 3 || want[0].kind != StatePending || want[1].kind != StateFiring || want[2].kind != StateResolved {
		t.Fatalf("a source whose clock is right: %v, want pending, firing, resolved", want)
	}
	for _, skew := range []time.Duration{-2 * time.Minute, -30 * time.Second, 30 * time.Second, 2 * time.Minute} {
		if got := run(skew); !slices.Equal(got, want) {
			t.Errorf("a source whose clock is %v off: %v, want %v as with a clock that is right", skew, got, want)
		}
	}
}

// TestASourceWhoseClockStepsBack: a source whose clock is set back five
// minutes (a host's clock corrected, or wrong until it rebooted) has its
// samples from then on in its rules' windows at once: its alert fires
// and resolves as its samples say, not five minutes late.
func TestASourceWhoseClockStepsBack(t *testing.T) {
	rule := Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90,
		Aggregate: "max", Window: time.Minute, For: 10 * time.Second}
	got := hotSteps(t, rule, 300, 110, 170, func(step int) time.Duration {
		if step >= 100 {
			return -5 * time.Minute
		}
		return 0
	})
	// 99 from step 110: pending at once, firing 10 s on; the last 99 at
	// step 169 leaves the one-minute window at step 230.
	want := []stepChange{{110, StatePending}, {120, StateFiring}, {230, StateResolved}}
	if !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
}

// A stepChange is an alert's transition at a step of hotSteps.
type stepChange struct {
	step int
	kind string
}

// hotSteps evaluates a rule over host/a sampled once a step (a second)
// for n steps, its cpu.percent 99 from step hot to before step cool and
// 50 otherwise, each sample's time the clock's plus skew(step), and
// returns the alert's transitions.
func hotSteps(t *testing.T, rule Rule, n, hot, cool int, skew func(step int) time.Duration) []stepChange {
	t.Helper()
	e, store, ck, hub := memoryEvaluator(t, rule)
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	defer sub.Close()
	var out []stepChange
	for step := range n {
		ck.t = ck.t.Add(time.Second)
		v := 50.0
		if step >= hot && step < cool {
			v = 99
		}
		store.Append(collector.Sample{Source: "host/a", Time: ck.t.Add(skew(step)), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": v})})
		if err := e.Evaluate(context.Background()); err != nil {
			t.Fatal(err)
		}
		for len(sub.C()) > 0 {
			var ev map[string]any
			json.Unmarshal((<-sub.C()).JSON(), &ev)
			out = append(out, stepChange{step, ev["transition"].(string)})
		}
	}
	return out
}

// TestRestartWithTheHistorysPast: after a restart the ring holds the
// history's last minutes of every source, a dead agent's too. Those
// samples are not the source reporting: an alert with no data stays so,
// and a firing one waits for its source as after any restart, until the
// source reports again or its no-data time has passed.
func TestRestartWithTheHistorysPast(t *testing.T) {
	rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "cpu", Op: ">", Threshold: 90}}
	db, ck, hub := savedRig(t, rules)
	store := collector.NewStore(10*time.Minute, time.Second)
	e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Now: ck.now}
	e.Load(context.Background())
	store.Append(collector.Sample{Source: "host/dead", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": 95})})
	store.Append(collector.Sample{Source: "host/live", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": 95})})
	e.Evaluate(context.Background())
	for range 90 { // host/dead stops; its alert goes nodata
		ck.t = ck.t.Add(time.Second)
		store.Append(collector.Sample{Source: "host/live", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": 95})})
		e.Evaluate(context.Background())
	}
	states := func(e *Evaluator) map[string]string {
		out := map[string]string{}
		for _, a := range e.Active() {
			out[a.Source] = a.State
		}
		return out
	}
	if got := states(e); got["host/dead"] != StateNoData || got["host/live"] != StateFiring {
		t.Fatalf("before the restart: %v", got)
	}

	// The restart: the ring starts with the history's past.
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	ring := collector.NewStore(10*time.Minute, time.Second)
	ring.AppendPast(collector.Sample{Source: "host/dead", Time: t0, Metrics: collector.MetricsOf(map[string]float64{"cpu": 50})})
	ring.AppendPast(collector.Sample{Source: "host/live", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": 95})})
	e2 := &Evaluator{Rules: rules, Ring: ring, Hub: hub, States: db, Now: ck.now}
	e2.Load(context.Background())
	for range 20 {
		ck.t = ck.t.Add(time.Second)
		e2.Evaluate(context.Background())
	}
	if n := len(sub.C()); n != 0 {
		t.Fatalf("%d alert events before any source reported again, want none", n)
	}
	ring.Append(collector.Sample{Source: "host/live", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": 50})})
	e2.Evaluate(context.Background())
	var ev map[string]any
	json.Unmarshal((<-sub.C()).JSON(), &ev)
	if ev["transition"] != StateResolved || len(sub.C()) != 0 {
		t.Fatalf("host/live reported: %v, want it resolved and nothing else", ev)
	}
	if got := states(e2); got["host/dead"] != StateNoData {
		t.Fatalf("after the restart: %v", got)
	}
}

// TestATakeoverKnowsASilentSource: a replica that takes the alert lease
// (or takes it again, in a new term) reads the states and sees every
// source of its ring anew: one silent for a minute and a half is known
// to be silent by when its newest sample came, and its nodata alert
// stays so, whatever that sample's value — not brought back to life on
// it for another no-data time.
func TestATakeoverKnowsASilentSource(t *testing.T) {
	for _, v := range []float64{95, 10} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "cpu", Op: ">", Threshold: 90}}
			db, ck, hub := savedRig(t, rules)
			ring := collector.NewStore(10*time.Minute, time.Second).WithClock(ck.now)
			term := uint64(1)
			e := &Evaluator{Rules: rules, Ring: ring, Hub: hub, States: db, Now: ck.now,
				Lead: func() (bool, uint64, time.Time) { return true, term, time.Now().Add(time.Hour) }} // a save's deadline, by the real clock
			e.init()
			ring.Append(collector.Sample{Source: "host/dead", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu": v})})
			step := func() {
				ck.t = ck.t.Add(time.Second)
				if e.lead(t.Context()) {
					if err := e.Evaluate(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
			}
			for range 90 {
				step()
			}
			if a := e.Active(); len(a) != 1 || a[0].State != StateNoData {
				t.Fatalf("silent for 90 s: %+v, want nodata", a)
			}
			sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
			defer sub.Close()
			term = 2
			for range 120 {
				step()
			}
			if n := len(sub.C()); n != 0 {
				t.Fatalf("%d alert events after the takeover, want none", n)
			}
		})
	}
}

// savedRig is what an evaluator whose states are saved needs besides its
// ring: a store of its own, a test clock and a hub on it; the rules are
// validated.
func savedRig(t *testing.T, rules []Rule) (*DB, *clock, *stream.Hub) {
	t.Helper()
	for i := range rules {
		if err := rules[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	ck := &clock{t: t0}
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	t.Cleanup(hub.Close)
	return openDB(t), ck, hub
}
