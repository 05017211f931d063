package alerts

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"vigil/collector"
	"vigil/stream"
)

// A receiver with repeat_interval gets a firing alert's webhook again
// once each interval while it fires, each repeat with an id of its own
// and queued once, and none after the alert resolved. The evaluator
// hands the firing alerts over as it evaluates.
func TestRepeatInterval(t *testing.T) {
	var mu sync.Mutex
	var got []string // type and webhook-id
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notice
		json.NewDecoder(r.Body).Decode(&n)
		mu.Lock()
		got = append(got, n.Type+" "+r.Header.Get("webhook-id"))
		mu.Unlock()
	}))
	defer srv.Close()
	received := func(n int) []string {
		within(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n })
		time.Sleep(500 * time.Millisecond) // for one too many to arrive, if it would (past the dispatcher's 250 ms pass)
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "pager", URL: srv.URL, Secret: NewSecret(), RepeatInterval: time.Hour})
	// The evaluator's clock starts three hours ago, so what it queues is
	// due at once by the dispatcher's; the receiver was made before.
	ck := &clock{t: time.Now().Add(-3 * time.Hour)}
	rcv, _ := db.Receiver(context.Background(), "cfg-pager")
	rcv.CreatedAt = ck.t.Add(-time.Hour)
	if err := db.PutReceiver(context.Background(), rcv); err != nil {
		t.Fatal(err)
	}
	store := collector.NewStore(time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: ck.now})
	defer hub.Close()
	rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}}
	rules[0].Validate()
	e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Now: ck.now, Saved: d.Wake}
	ctx := context.Background()
	step := func(after time.Duration, cpu float64) {
		ck.t = ck.t.Add(after)
		store.Append(collector.Sample{Source: "host/a", Time: ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": cpu})})
		if err := e.Evaluate(ctx); err != nil {
			t.Fatal(err)
		}
		d.Wake()
	}
	step(0, 99) // fires
	if g := received(1); len(g) != 1 {
		t.Fatalf("got %v, want the firing", g)
	}
	step(30*time.Minute, 99) // not yet
	step(31*time.Minute, 99) // an hour: the first repeat
	step(10*time.Minute, 99) // the same hour: no second one
	g := received(2)
	if len(g) != 2 || g[0][:len(EventFiring)] != EventFiring || g[1][:len(EventFiring)] != EventFiring || g[0] == g[1] {
		t.Fatalf("got %v, want the firing and one repeat with its own id", g)
	}
	firing := e.Active()
	step(time.Minute, 10) // resolves
	step(time.Hour, 10)   // no repeat of a resolved alert
	// Nor from a stale view of it: the saved state says it resolved.
	if err := db.Repeat(ctx, firing, ck.t); err != nil || len(firing) != 1 {
		t.Fatal(err, firing)
	}
	d.Wake()
	g = received(3)
	if len(g) != 3 || g[2][:len(EventResolved)] != EventResolved {
		t.Fatalf("got %v, want the firing, one repeat, then the resolution", g)
	}
}

// A receiver that has not got the firing yet (it is down: the firing is
// queued for a retry) gets no repeat: the firing goes first, and the
// pages do not pile up an interval each.
func TestNoRepeatBeforeTheFiring(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "pager", URL: down.URL, Secret: NewSecret(), RepeatInterval: time.Hour})
	ctx := context.Background()
	start := time.Now().Add(time.Second)
	hot := firing("Hot")
	hot.Alert.StartedAt, hot.Alert.ActiveAt, hot.Alert.UpdatedAt = start, start, start
	if err := db.SaveTransitions(ctx, []Transition{hot}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	if !within(5*time.Second, func() bool {
		ds, _ := db.Deliveries(ctx, "cfg-pager", 10)
		return len(ds) == 1 && len(ds[0].Attempts) == 1
	}) {
		t.Fatal("the firing was not tried")
	}
	for _, later := range []time.Duration{61 * time.Minute, 121 * time.Minute, 181 * time.Minute} {
		if err := db.Repeat(ctx, []Alert{hot.Alert}, start.Add(later)); err != nil {
			t.Fatal(err)
		}
	}
	if ds, _ := db.Deliveries(ctx, "cfg-pager", 10); len(ds) != 1 {
		t.Fatalf("%d deliveries, want the firing alone", len(ds))
	}
}
