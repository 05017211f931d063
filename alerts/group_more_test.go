package alerts

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"vigil/internal/vigiltest"
)

func rvOpen(t *testing.T, rcvs ...ConfiguredReceiver) *DB {
	t.Helper()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := (&Receivers{Outbox: db}).Configure(context.Background(), rcvs); err != nil {
		t.Fatal(err)
	}
	return db
}

func rvRoom(rcvs []Receiver, rooms []int) {
	for i := range rooms {
		rooms[i] = 2
	}
}

// rvRunner makes d (its DB, client and clock set here) claim what is due
// at a time and attempt it, as a pass of its Run does.
func rvRunner(t *testing.T, db *DB, d *Dispatcher) func(at time.Time) []claim {
	var clock time.Time
	d.DB, d.Client, d.Now = db, NewClient(loopback, 5*time.Second), func() time.Time { return clock }
	d.init()
	return func(at time.Time) []claim {
		clock = at
		cs, err := db.due(context.Background(), at, 10, rvRoom)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			d.attempt(context.Background(), c)
		}
		return cs
	}
}

func rvFiring(rule, host string, at time.Time) Transition {
	return Transition{Kind: StateFiring, Alert: Alert{Fingerprint: Fingerprint(rule, host, "cpu.percent"), Rule: rule, Source: host,
		Metric: "cpu.percent", State: StateFiring, Value: 97, Threshold: 90, Op: ">", Severity: "critical",
		StartedAt: at, UpdatedAt: at}}
}

// A repeat (an alert.firing delivery too) goes alone: it neither leads a
// group nor pulls in a firing still held for its group_wait (an outside
// review found it did).
func TestARepeatLeadsNoGroup(t *testing.T) {
	ctx := context.Background()
	db := rvOpen(t, ConfiguredReceiver{Name: "hook", URL: "https://x.example/h", Secret: NewSecret(),
		GroupWait: time.Minute, RepeatInterval: time.Minute})
	base := time.Now().Add(time.Second)
	a := rvFiring("Hot", "host/a", base)
	if err := db.SaveTransitions(ctx, []Transition{a}); err != nil {
		t.Fatal(err)
	}
	if cs, err := db.due(ctx, base, 10, rvRoom); err != nil || len(cs) != 0 {
		t.Fatalf("held: %v %v", cs, err)
	}
	cs, err := db.due(ctx, base.Add(61*time.Second), 10, rvRoom)
	if err != nil || len(cs) != 1 {
		t.Fatalf("A after group_wait: %v %v", cs, err)
	}
	db.record(ctx, cs[0].ID, Attempt{At: base.Add(61 * time.Second)}, DeliveryDelivered, time.Time{}, "", base.Add(61*time.Second))

	// B fires at +150s: held until +210s.
	now := base.Add(150 * time.Second)
	b := rvFiring("Hot", "host/b", now)
	if err := db.SaveTransitions(ctx, []Transition{b}); err != nil {
		t.Fatal(err)
	}
	if cs, _ := db.due(ctx, now, 10, rvRoom); len(cs) != 0 {
		t.Fatalf("B should be held: %d claims", len(cs))
	}
	// A's repeat is due (2 intervals since it fired).
	if err := db.Repeat(ctx, []Alert{a.Alert}, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	cs, err = db.due(ctx, now.Add(2*time.Second), 10, rvRoom)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if len(c.members) > 0 {
			t.Errorf("the repeat of A leads a group with %d member(s): B goes %v before its group_wait ends, and the repeat is not sent singly",
				len(c.members), 58*time.Second)
		}
	}
}

// A firing that was attempted (a 429 with Retry-After: 60) is not pulled
// into a later group before its time, and no delivery gets more attempts
// than MaxAttempts (an outside review found both).
func TestAGroupKeepsItsMembersAttempts(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	db := rvOpen(t, ConfiguredReceiver{Name: "hook", URL: srv.URL, Secret: NewSecret(), GroupWait: 10 * time.Second})
	d := &Dispatcher{MaxAttempts: 2, Jitter: func() float64 { return 0 }}
	run := rvRunner(t, db, d)
	base := time.Now().Add(time.Second)
	a := rvFiring("Hot", "host/a", base)
	db.SaveTransitions(ctx, []Transition{a})
	run(base)
	if cs := run(base.Add(10 * time.Second)); len(cs) != 1 { // A alone, 429 Retry-After 60 → next at +70s
		t.Fatalf("A: %d", len(cs))
	}
	b := rvFiring("Hot", "host/b", base.Add(11*time.Second))
	db.SaveTransitions(ctx, []Transition{b})
	run(base.Add(11 * time.Second))
	cs := run(base.Add(21 * time.Second)) // B's group_wait is over; A is not due until +70s
	if len(cs) != 1 || len(cs[0].members) != 0 {
		t.Fatalf("at +21s: %d claims, want B alone (A waits for its Retry-After)", len(cs))
	}
	run(base.Add(200 * time.Second))
	ds, _ := db.Deliveries(ctx, "cfg-hook", 10)
	for _, dl := range ds {
		if len(dl.Attempts) > d.MaxAttempts {
			t.Errorf("%d attempts with MaxAttempts %d", len(dl.Attempts), d.MaxAttempts)
		}
	}
}

// Every alert message of a grouping receiver in Alertmanager's format has
// its group's groupKey and groupLabels: a group of two, and the
// resolution of one of its alerts sent alone, so a consumer that keys
// incidents by groupKey resolves them.
func TestAlertmanagerGroupKeyOfEveryMessage(t *testing.T) {
	r := Receiver{ID: "r", Format: FormatAlertmanager, GroupWait: Interval(time.Second), GroupBy: []string{"source"}}
	now := time.Now()
	a := rvFiring("Hot", "host/a", now)
	a2 := rvFiring("Disk", "host/a", now)
	ba, _ := alertmanagerPayload(EventFiring, a.Alert, "http://v")
	ba2, _ := alertmanagerPayload(EventFiring, a2.Alert, "http://v")
	g, err := GroupPayload(r, [][]byte{ba, ba2})
	if err != nil {
		t.Fatal(err)
	}
	res := a.Alert
	res.EndedAt = now.Add(time.Minute)
	br1, _ := alertmanagerPayload(EventResolved, res, "http://v")
	br, err := GroupPayload(r, [][]byte{br1}) // as the dispatcher sends it
	if err != nil {
		t.Fatal(err)
	}
	key := func(b []byte) string {
		var x amBody
		json.Unmarshal(b, &x)
		return x.GroupKey + " groupLabels=" + func() string { j, _ := json.Marshal(x.GroupLabels); return string(j) }()
	}
	if key(g) != key(br) || key(g) != `{}:{source="host/a"} groupLabels={"source":"host/a"}` {
		t.Fatalf("the group's %s, its resolution's %s", key(g), key(br))
	}
}

// Discord refuses an embed over 6,000 characters in all and a field name
// over 256 (a 400: the delivery would die): a group of long alerts stays
// within both.
func TestDiscordGroupWithinLimits(t *testing.T) {
	r := Receiver{ID: "r", Type: TypeDiscord, GroupWait: Interval(time.Second)}
	var bodies [][]byte
	for i := range 12 {
		tr := rvFiring(strings.Repeat("R", 200), "host/"+strings.Repeat("h", 80)+string(rune('a'+i)), time.Now())
		tr.Alert.Annotations = map[string]string{"summary": strings.Repeat("s", 900)}
		b, _ := payload(FormatStandard, tr, "http://v", 1, time.Now())
		bodies = append(bodies, b)
	}
	g, err := GroupPayload(r, bodies)
	if err != nil {
		t.Fatal(err)
	}
	var n notice
	json.Unmarshal(g, &n)
	body := discordBody(n).(map[string]any)
	embed := body["embeds"].([]any)[0].(map[string]any)
	total := utf8.RuneCountInString(embed["title"].(string))
	longest := 0
	for _, f := range embed["fields"].([]any) {
		f := f.(map[string]any)
		total += utf8.RuneCountInString(f["name"].(string)) + utf8.RuneCountInString(f["value"].(string))
		longest = max(longest, utf8.RuneCountInString(f["name"].(string)))
	}
	if total > 6000 || longest > 256 {
		t.Fatalf("embed characters %d (Discord's limit 6000), longest field name %d (limit 256)", total, longest)
	}
}

// A push is one 4,096-byte record once encrypted: a long summary is
// clipped to fit, not a delivery that dies.
func TestALongPushIsClipped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer srv.Close()
	b := vigiltest.NewPushBrowser(t)
	rcv, err := pushInput(b, srv.URL+"/push/abc").Receiver(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVAPID()
	var keys PushKeys
	keys.Set(v)
	tr := rvFiring("Hot", "host/a", time.Now())
	tr.Alert.Annotations = map[string]string{"summary": strings.Repeat("x", 4000)}
	body, _ := payload(FormatStandard, tr, "http://v", 1, time.Now())
	code, o := Sender{Client: NewClient(loopback, 5*time.Second), VAPID: &keys}.Send(context.Background(), rcv, Delivery{ID: "msg_1", EventType: EventFiring, Payload: body})
	if code != 201 || o.Err != "" {
		t.Fatalf("status %d outcome %+v", code, o)
	}
}

// A push endpoint is a push service's https URL: not plain http (but on
// loopback), not an address, without credentials, and not endless.
func TestPushEndpointChecks(t *testing.T) {
	b := vigiltest.NewPushBrowser(t)
	for _, ep := range []string{"http://10.0.0.5:8080/admin/reset", "http://user:pw@169.254.169.254/latest", "https://user@fcm.googleapis.com/x",
		"https://10.0.0.5/x", "https://[fd00::1]/x", "https://x.example/" + strings.Repeat("a", 100000)} {
		if _, err := pushInput(b, ep).Receiver(time.Now()); err == nil || !strings.Contains(err.Error(), "endpoint:") {
			t.Errorf("%.60q: %v, want refused", ep, err)
		}
	}
	if _, err := pushInput(b, "https://fcm.googleapis.com/fcm/send/x").Receiver(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A group's retry carries the same alerts under the same webhook-id: a
// firing that came meanwhile goes in a group of its own, not into the
// retry (a receiver that de-duplicates on webhook-id, as Standard
// Webhooks asks, would drop it with the retry).
func TestAGroupsRetryIsTheSameGroup(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder(t, 1)
	db := rvOpen(t, ConfiguredReceiver{Name: "hook", URL: rec.URL, Secret: NewSecret(), GroupWait: 10 * time.Second})
	run := rvRunner(t, db, &Dispatcher{Jitter: func() float64 { return 0.99 }})
	base := time.Now().Add(time.Second)
	db.SaveTransitions(ctx, []Transition{rvFiring("Hot", "host/a", base), rvFiring("Hot", "host/b", base)})
	run(base)
	run(base.Add(10 * time.Second)) // {A,B}: 503, retried ~5s later
	db.SaveTransitions(ctx, []Transition{rvFiring("Hot", "host/c", base.Add(11*time.Second))})
	run(base.Add(11 * time.Second))
	run(base.Add(16 * time.Second)) // the retry
	run(base.Add(22 * time.Second)) // C's group
	got := rec.got()
	count := func(b string) int {
		var g struct{ Alerts []json.RawMessage }
		json.Unmarshal([]byte(b), &g)
		return len(g.Alerts)
	}
	if len(got) != 3 || rec.ids[0] != rec.ids[1] || got[0] != got[1] || count(got[0]) != 2 || rec.ids[2] == rec.ids[0] || count(got[2]) != 1 {
		t.Fatalf("requests %v, want {A,B} twice with one id, then {C}", rec.ids)
	}
}
