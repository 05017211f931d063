package alerts

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
	"vigil/internal/vigiltest"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// newReceiver starts a webhook receiver answering with the statuses
// given, one per request (the last repeats); a 302 points elsewhere.
func newReceiver(t *testing.T, statuses ...int) *vigiltest.Receiver {
	return vigiltest.NewReceiver(t, func(w http.ResponseWriter, _ vigiltest.Request, n int) {
		code := statuses[min(n, len(statuses))-1]
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	})
}

type fixture struct {
	db  *DB
	d   *Dispatcher
	now time.Time
}

// runOnce starts every due delivery it may and waits for their attempts.
func (d *Dispatcher) runOnce(ctx context.Context) {
	d.init()
	var wg sync.WaitGroup
	d.start(ctx, ctx, &wg)
	wg.Wait()
}

func newFixture(t *testing.T, timeout time.Duration) *fixture {
	db := openDB(t)
	f := &fixture{db: db, now: t0}
	f.d = &Dispatcher{DB: db, Client: NewClient(loopback, timeout), Now: func() time.Time { return f.now }, Jitter: func() float64 { return 0 }}
	db.DashboardURL = "http://vigil.example"
	return f
}

func (f *fixture) subscribe(t *testing.T, url string, format string) Receiver {
	s := Receiver{ID: newID("rcv_"), URL: url, Events: []string{"alert.*"}, Format: format, Status: ReceiverActive,
		Secret: NewSecret(), Origin: "config", CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.db.PutReceiver(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func firing(rule string) Transition {
	return Transition{Kind: StateFiring, Alert: Alert{Fingerprint: Fingerprint(rule, "host/a", "cpu.percent"), Rule: rule, Source: "host/a",
		Metric: "cpu.percent", State: StateFiring, Value: 97, Threshold: 90, Op: ">", Severity: "critical",
		StartedAt: t0, UpdatedAt: t0, Annotations: map[string]string{"summary": "CPU hot"}}}
}

func (f *fixture) fire(t *testing.T, ts ...Transition) {
	if err := f.db.SaveTransitions(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) delivery(t *testing.T, sub string) Delivery {
	ds, err := f.db.Deliveries(context.Background(), sub, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries of %s: %v %v", sub, ds, err)
	}
	return ds[0]
}

func TestDeliveryRetriesUntilDelivered(t *testing.T) {
	f := newFixture(t, time.Second)
	rc := newReceiver(t, 500, 503, 200)
	sub := f.subscribe(t, rc.URL, FormatStandard)
	f.fire(t, firing("HighCPU"))

	for i := range 3 {
		f.d.runOnce(context.Background())
		d := f.delivery(t, sub.ID)
		if i < 2 && (d.State != DeliveryQueued || !d.NextAttemptAt.After(f.now)) {
			t.Fatalf("after attempt %d: %+v", i+1, d)
		}
		f.d.runOnce(context.Background()) // not due yet: nothing is sent
		if n := len(rc.Requests()); n != i+1 {
			t.Fatalf("%d requests after attempt %d", n, i+1)
		}
		f.now = f.now.Add(BackoffMax)
	}
	d := f.delivery(t, sub.ID)
	if d.State != DeliveryDelivered || len(d.Attempts) != 3 || d.Attempts[0].Status != 500 || d.Attempts[2].Status != 200 {
		t.Fatalf("delivery %+v", d)
	}
	reqs := rc.Requests()
	for _, r := range reqs {
		id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		if id != d.ID {
			t.Errorf("webhook-id %q, want %q on every attempt", id, d.ID)
		}
		if err := verify(sub.Secret, id, ts, sig, r.Body, time.Unix(mustAtoi(t, ts), 0), 5*time.Minute); err != nil {
			t.Errorf("signature does not verify: %v", err)
		}
		if verify(NewSecret(), id, ts, sig, r.Body, time.Unix(mustAtoi(t, ts), 0), 5*time.Minute) == nil {
			t.Error("another secret verifies")
		}
	}
	var p struct {
		Type string
		Data map[string]any
	}
	json.Unmarshal(reqs[0].Body, &p)
	if p.Type != EventFiring || p.Data["rule"] != "HighCPU" || p.Data["state"] != "firing" || p.Data["value"] != 97.0 ||
		p.Data["dashboard_url"] != "http://vigil.example/source/host/a" || p.Data["seq"] == nil || p.Data["fingerprint"] == "" {
		t.Errorf("payload %s", reqs[0].Body)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("bad timestamp %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestDeliveryPermanentFailures(t *testing.T) {
	for _, tc := range []struct {
		status    int
		wantState string
		disabled  bool
	}{
		{410, DeliveryDead, true},
		{400, DeliveryDead, false},
		{302, DeliveryDead, false}, // redirects are failures and not followed
	} {
		f := newFixture(t, time.Second)
		rc := newReceiver(t, tc.status)
		sub := f.subscribe(t, rc.URL, FormatStandard)
		f.fire(t, firing("R"))
		f.d.runOnce(context.Background())
		f.now = f.now.Add(BackoffMax)
		f.d.runOnce(context.Background())
		d := f.delivery(t, sub.ID)
		if d.State != tc.wantState || len(d.Attempts) != 1 || len(rc.Requests()) != 1 {
			t.Errorf("%d: state %s after %d attempts, %d requests", tc.status, d.State, len(d.Attempts), len(rc.Requests()))
		}
		got, _ := f.db.Receiver(context.Background(), sub.ID)
		if (got.Status == ReceiverDisabled) != tc.disabled {
			t.Errorf("%d: receiver %s", tc.status, got.Status)
		}
	}
}

func TestDeliveryHonoursRetryAfter(t *testing.T) {
	f := newFixture(t, time.Second)
	rc := vigiltest.NewReceiver(t, func(w http.ResponseWriter, _ vigiltest.Request, _ int) {
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	sub := f.subscribe(t, rc.URL, FormatStandard)
	f.fire(t, firing("R"))
	f.d.runOnce(context.Background())
	d := f.delivery(t, sub.ID)
	if d.State != DeliveryQueued || d.NextAttemptAt.Before(f.now.Add(600*time.Second)) {
		t.Fatalf("429: %+v", d)
	}
}

func TestDeliveryTimeoutIsRetried(t *testing.T) {
	f := newFixture(t, 200*time.Millisecond)
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	sub := f.subscribe(t, srv.URL, FormatStandard)
	f.fire(t, firing("R"))
	f.d.runOnce(context.Background())
	d := f.delivery(t, sub.ID)
	if d.State != DeliveryQueued || len(d.Attempts) != 1 || d.Attempts[0].Status != 0 || !strings.Contains(d.Attempts[0].Error, "Timeout") {
		t.Fatalf("timeout: %+v", d)
	}
	if strings.Contains(d.Attempts[0].Error, srv.URL) {
		t.Errorf("target URL in the error: %s", d.Attempts[0].Error)
	}
}

func TestBlockedAddressesAreRefused(t *testing.T) {
	f := newFixture(t, time.Second)
	f.d.Client = NewClient(nil, time.Second) // no networks allowed
	rc := newReceiver(t, 200)
	sub := f.subscribe(t, rc.URL, FormatStandard)
	f.fire(t, firing("R"))
	f.d.runOnce(context.Background())
	d := f.delivery(t, sub.ID)
	if d.State != DeliveryDead || len(rc.Requests()) != 0 || !strings.Contains(d.LastError, "not allowed") {
		t.Fatalf("loopback target reached: %+v", d)
	}
}

// TestDeadReceiversDoNotDelayOthers: five receivers that never answer and
// one that does; the healthy one is served at once.
func TestDeadReceiversDoNotDelayOthers(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	f.d.Now = time.Now
	hang := make(chan struct{})
	var hung atomic.Int32
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer dead.Close()
	for range 5 {
		f.subscribe(t, dead.URL, FormatStandard)
	}
	healthy := newReceiver(t, 200)
	hs := f.subscribe(t, healthy.URL, FormatStandard)
	for i := range 6 { // several deliveries each, more than the per-receiver limit
		f.fire(t, firing("R"+string(rune('a'+i))))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.d.Run(ctx); close(done) }()
	vigiltest.Eventually(t, 10*time.Second, "the healthy receiver's 6 deliveries while the dead ones hang", func() bool {
		return len(healthy.Requests()) >= 6
	})
	if n := hung.Load(); n > int32(5*DefaultPerReceiver) {
		t.Errorf("%d attempts hang on dead receivers, more than %d per receiver", n, DefaultPerReceiver)
	}
	// The last answer may still be being recorded: wait for the outbox.
	vigiltest.Eventually(t, 10*time.Second, "the healthy deliveries recorded as delivered", func() bool {
		ds, _ := f.db.Deliveries(context.Background(), hs.ID, 10)
		done := len(ds) == 6
		for _, d := range ds {
			done = done && d.State == DeliveryDelivered
		}
		return done
	})
	if n := len(healthy.Requests()); n != 6 {
		t.Fatalf("healthy receiver got %d deliveries, want 6", n)
	}
	cancel()
	close(hang) // let the dead receivers' attempts end
	<-done
}

func TestAlertmanagerFormat(t *testing.T) {
	f := newFixture(t, time.Second)
	rc := newReceiver(t, 200)
	f.subscribe(t, rc.URL, FormatAlertmanager)
	tr := firing("HighCPU")
	tr.Alert.Labels = map[string]string{"team": "ops"}
	f.fire(t, tr)
	f.d.runOnce(context.Background())
	var am struct {
		Version, Status, Receiver, GroupKey string
		Alerts                              []struct {
			Status      string
			Labels      map[string]string
			Annotations map[string]string
			StartsAt    time.Time
			EndsAt      time.Time
		}
	}
	if err := json.Unmarshal(rc.Requests()[0].Body, &am); err != nil {
		t.Fatal(err)
	}
	if am.Version != "4" || am.Status != "firing" || len(am.Alerts) != 1 || am.Alerts[0].Labels["alertname"] != "HighCPU" ||
		am.Alerts[0].Labels["team"] != "ops" || am.Alerts[0].Annotations["summary"] != "CPU hot" || !am.Alerts[0].StartsAt.Equal(t0) {
		t.Fatalf("alertmanager payload %+v", am)
	}
}

func TestRotatedSecretSignsWithBoth(t *testing.T) {
	old, cur := NewSecret(), NewSecret()
	s := Receiver{Secret: cur, OldSecret: old, OldSecretUntil: t0.Add(24 * time.Hour)}
	sig, err := Sign(s.secrets(t0), "msg_1", t0, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(t0.Unix(), 10)
	for _, sec := range []string{old, cur} {
		if err := verify(sec, "msg_1", ts, sig, []byte("{}"), t0, time.Minute); err != nil {
			t.Errorf("a receiver holding one of the two secrets cannot verify: %v", err)
		}
	}
	if verify(cur, "msg_1", ts, sig, []byte("{}"), t0.Add(10*time.Minute), 5*time.Minute) == nil {
		t.Error("an old timestamp verifies: replays would be accepted")
	}
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("%d signatures during the rotation, want 2", n)
	}
	if n := len(s.secrets(t0.Add(25 * time.Hour))); n != 1 {
		t.Fatalf("old secret still used after a day")
	}
}

// FuzzReceiverInput feeds arbitrary JSON to the receiver
// validation: it never panics, and whatever it accepts is usable.
func FuzzReceiverInput(f *testing.F) {
	f.Add(`{"url":"https://hooks.example.com/x","events":["alert.*"],"format":"alertmanager"}`)
	f.Add(`{"url":"http://a","events":["*"],"status":"disabled","description":"x"}`)
	f.Add(`{"url":"javascript:alert(1)"}`)
	f.Add(`{"events":["[a-"]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var in ReceiverInput
		if json.Unmarshal([]byte(body), &in) != nil {
			return
		}
		s := Receiver{Status: ReceiverPending}
		if err := in.apply(&s, true); err != nil {
			return
		}
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			t.Fatalf("accepted url %q", s.URL)
		}
		if s.Format != FormatStandard && s.Format != FormatAlertmanager {
			t.Fatalf("accepted format %q", s.Format)
		}
		for _, e := range s.Events {
			if checkEventPattern(e) != nil {
				t.Fatalf("accepted event %q", e)
			}
		}
		if s.Status == ReceiverActive {
			t.Fatal("a new receiver activated without verification")
		}
	})
}

// TestEventsWaitForAReceiverAndSurviveReopen: events a receiver has not
// been sent yet (it had no room: its breaker was open) are kept in the
// outbox across a restart and then delivered, each once, in order. A
// receiver subscribed or re-enabled later gets only what came after.
func TestEventsWaitForAReceiverAndSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, 200)
	sub := Receiver{ID: "sub_a", URL: rc.URL, Events: []string{"alert.firing"}, Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()}
	if err := db.PutReceiver(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	resolved := firing("R0")
	resolved.Kind = StateResolved // not a type this receiver takes
	ts := []Transition{firing("R1"), resolved, firing("R2"), firing("R3")}
	if err := db.SaveTransitions(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	// Its breaker is open: nothing is started, nothing is lost.
	d := &Dispatcher{DB: db, Client: NewClient(loopback, time.Second)}
	d.init()
	d.breakers[sub.ID] = &breaker{openUntil: time.Now().Add(time.Hour)}
	d.runOnce(context.Background())
	if n := len(rc.Requests()); n != 0 {
		t.Fatalf("%d requests to a receiver whose breaker is open", n)
	}
	db.Close()

	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	late := newReceiver(t, 200) // subscribes now: none of the above is for it
	if err := db.PutReceiver(context.Background(), Receiver{ID: "sub_late", URL: late.URL, Events: []string{"*"},
		Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()}); err != nil {
		t.Fatal(err)
	}
	d = &Dispatcher{DB: db, Client: NewClient(loopback, time.Second), PerReceiver: 1}
	for range 5 {
		d.runOnce(context.Background())
	}
	var rules []string
	ids := map[string]bool{}
	for _, r := range rc.Requests() {
		var p struct{ Data struct{ Rule string } }
		json.Unmarshal(r.Body, &p)
		rules = append(rules, p.Data.Rule)
		ids[r.Header.Get("webhook-id")] = true
	}
	if strings.Join(rules, ",") != "R1,R2,R3" || len(ids) != 3 {
		t.Fatalf("delivered %v (%d ids), want R1,R2,R3 once each, in order", rules, len(ids))
	}
	if n := len(late.Requests()); n != 0 {
		t.Fatalf("a receiver subscribed later got %d old events", n)
	}
	db.SaveTransitions(context.Background(), []Transition{firing("R4")})
	d.runOnce(context.Background())
	if n := len(late.Requests()); n != 1 {
		t.Fatalf("the later receiver got %d of the new event", n)
	}

	// Disabled, it takes nothing; enabled again, it starts from then.
	sub.Status = ReceiverDisabled
	db.PutReceiver(context.Background(), sub)
	db.SaveTransitions(context.Background(), []Transition{firing("R5")})
	sub.Status = ReceiverActive
	db.PutReceiver(context.Background(), sub)
	db.SaveTransitions(context.Background(), []Transition{firing("R6")})
	d.runOnce(context.Background())
	d.runOnce(context.Background())
	rules = rules[:0]
	for _, r := range rc.Requests() {
		var p struct{ Data struct{ Rule string } }
		json.Unmarshal(r.Body, &p)
		rules = append(rules, p.Data.Rule)
	}
	if strings.Join(rules, ",") != "R1,R2,R3,R4,R6" {
		t.Fatalf("after a disable and enable: %v", rules)
	}
}

// TestPrune: old delivered and dead deliveries go, with their attempts and
// bodies; queued ones stay whatever their age; events go once every
// receiver has taken them and they are old enough.
func TestPrune(t *testing.T) {
	f := newFixture(t, time.Second)
	ok := newReceiver(t, 200)
	down := newReceiver(t, 503)
	f.subscribe(t, ok.URL, FormatStandard)
	slow := f.subscribe(t, down.URL, FormatStandard)
	f.fire(t, firing("R1"))
	f.d.runOnce(context.Background()) // delivered to one, queued for a retry at the other
	count := func(table string) int {
		var n int
		if err := f.db.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if d, e, err := f.db.prune(context.Background(), f.now.Add(DeliveryRetention+time.Hour)); err != nil || d != 1 || e != 1 {
		t.Fatalf("pruned %d deliveries, %d events (%v); want the delivered one and the taken event", d, e, err)
	}
	if n := count("deliveries"); n != 1 {
		t.Fatalf("%d deliveries left, want the queued one", n)
	}
	if n := count("attempts"); n != 1 {
		t.Fatalf("%d attempts left, want the queued delivery's", n)
	}
	if got := f.delivery(t, slow.ID); got.State != DeliveryQueued || len(got.Payload) == 0 {
		t.Fatalf("the queued delivery lost its body: %+v", got)
	}

	// An event a receiver has not taken yet stays.
	f.d.init()
	f.d.breakers[slow.ID] = &breaker{openUntil: f.now.Add(time.Hour)}
	f.fire(t, firing("R2"))
	f.d.runOnce(context.Background())
	if _, e, _ := f.db.prune(context.Background(), f.now.Add(2*EventRetention)); e != 0 {
		t.Fatalf("pruned an event a receiver has not taken")
	}
	if n := count("events"); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func resolvedT(rule string) Transition {
	t := firing(rule)
	t.Kind, t.Alert.State, t.Alert.EndedAt = StateResolved, StateInactive, t0.Add(time.Minute)
	return t
}

// orderedReceiver records the order webhooks arrive in and answers by
// rule: the statuses given for a rule, one per request (the last repeats),
// 200 for the others. A pass
// (runOnce) starts every delivery that may go and waits for them all, so
// two webhooks of one alert in the same pass were in flight at once.
type orderedReceiver struct {
	*vigiltest.Receiver
}

func newOrderedReceiver(t *testing.T, statuses map[string][]int) *orderedReceiver {
	o := &orderedReceiver{}
	o.Receiver = vigiltest.NewReceiver(t, func(w http.ResponseWriter, req vigiltest.Request, _ int) {
		rule := o.event(req).Data.Rule
		n := 0
		for _, r := range o.Requests() {
			if o.event(r).Data.Rule == rule {
				n++
			}
		}
		code := 200
		if st := statuses[rule]; len(st) > 0 {
			code = st[min(n, len(st))-1]
		}
		w.WriteHeader(code)
	})
	return o
}

type orderedEvent struct {
	Type string
	Data struct{ Rule string }
}

func (o *orderedReceiver) event(req vigiltest.Request) orderedEvent {
	var ev orderedEvent
	json.Unmarshal(req.Body, &ev)
	return ev
}

// run makes passes of the dispatcher, each numbered, and returns the
// webhooks that arrived in them, "rule type" in order, and those of one
// rule that came in the same pass.
func (o *orderedReceiver) run(d *Dispatcher, passes int) (got, together []string) {
	seen := map[string]int{} // rule → the last pass it came in
	for p := 1; p <= passes; p++ {
		before := len(o.Requests())
		d.runOnce(context.Background())
		for _, req := range o.Requests()[before:] {
			ev := o.event(req)
			if seen[ev.Data.Rule] == p {
				together = append(together, ev.Data.Rule+" "+ev.Type)
			}
			seen[ev.Data.Rule] = p
		}
	}
	for _, req := range o.Requests() {
		ev := o.event(req)
		got = append(got, ev.Data.Rule+" "+ev.Type)
	}
	return got, together
}

// TestOneAlertsWebhooksInOrder: two transitions of one alert waiting
// together (after an outage of the store or of the receiver) are sent one
// after the other, in order, never at once; a retry of the first holds
// the second back. Another alert's webhooks do not wait for it.
func TestOneAlertsWebhooksInOrder(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	rc := newOrderedReceiver(t, map[string][]int{"Flaky": {500, 200}})
	sub := f.subscribe(t, rc.URL, FormatStandard)
	f.fire(t, firing("Hot"), resolvedT("Hot"))
	f.fire(t, firing("Flaky"), resolvedT("Flaky"), firing("Other"))

	got, together := rc.run(f.d, 3)
	if want := []string{"Hot alert.firing", "Hot alert.resolved"}; !slices.Equal(filterPrefix(got, "Hot "), want) {
		t.Fatalf("one alert's webhooks arrived as %v, want %v", filterPrefix(got, "Hot "), want)
	}
	if fl := filterPrefix(got, "Flaky "); !slices.Equal(fl, []string{"Flaky alert.firing"}) {
		t.Fatalf("the resolution went out while the firing waits for its retry: %v", fl)
	}
	if o := filterPrefix(got, "Other "); len(o) != 1 {
		t.Fatalf("another alert waited behind a failing one: %v", got)
	}
	f.now = f.now.Add(time.Hour) // the retry is due
	got, more := rc.run(f.d, 3)
	if fl := filterPrefix(got, "Flaky "); !slices.Equal(fl, []string{"Flaky alert.firing", "Flaky alert.firing", "Flaky alert.resolved"}) {
		t.Fatalf("after the retry: %v", fl)
	}
	if together = append(together, more...); len(together) > 0 {
		t.Fatalf("two webhooks of one alert were in flight at once: %v", together)
	}
	ds, _ := f.db.Deliveries(context.Background(), sub.ID, 20)
	for _, d := range ds {
		if d.State != DeliveryDelivered {
			t.Fatalf("undelivered: %+v", d)
		}
	}
}

func filterPrefix(list []string, prefix string) []string {
	var out []string
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// TestHostileReceiverAnswerBounded: a receiver's 900 KiB status text is
// not stored, logged or shown: the attempt's error is a few hundred bytes
// of valid UTF-8 at most.
func TestHostileReceiverAnswerBounded(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	var logs vigiltest.Buffer
	f.d.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	huge := strings.Repeat("é", 450<<10) // 900 KiB
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				fmt.Fprintf(c, "HTTP/1.1 503 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", huge)
			}()
		}
	}()
	sub := f.subscribe(t, "http://"+ln.Addr().String()+"/hook", FormatStandard)
	f.fire(t, firing("R"))
	f.d.runOnce(context.Background())
	d := f.delivery(t, sub.ID)
	if len(d.Attempts) != 1 || d.Attempts[0].Status != 503 {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	for what, s := range map[string]string{"attempt error": d.Attempts[0].Error, "last error": d.LastError, "log": logs.String()} {
		if len(s) > 1024 || !utf8.ValidString(s) {
			t.Errorf("%s: %d bytes (valid UTF-8: %v)", what, len(s), utf8.ValidString(s))
		}
	}
	if !strings.HasPrefix(d.Attempts[0].Error, "503") {
		t.Errorf("the error should still say what happened: %.80q", d.Attempts[0].Error)
	}
}

// verify checks a webhook-signature header as a receiver would, including
// that the timestamp is within tolerance of now (replay protection).
func verify(secret, id, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("bad webhook-timestamp")
	}
	ts := time.Unix(sec, 0)
	if now.Sub(ts) > tolerance || ts.Sub(now) > tolerance {
		return errors.New("webhook-timestamp outside the tolerance")
	}
	want, err := Sign([]string{secret}, id, ts, body)
	if err != nil {
		return err
	}
	for _, s := range strings.Fields(signature) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// TestDispatcherStoppedAtOnce: a Dispatcher stopped before it began (vigil
// stopped right after its start) ends without an error, as a stop is no
// failure.
func TestDispatcherStoppedAtOnce(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := &Dispatcher{DB: db, Client: NewClient(loopback, time.Second)}
	if err := d.Run(ctx); err != nil {
		t.Fatalf("Run after its context was done: %v, want nil", err)
	}
}
