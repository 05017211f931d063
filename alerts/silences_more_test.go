package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil/collector"
	"vigil/stream"
)

// harness is an evaluator over a ring, a hub and vigil.db, with a
// dispatcher sending to one receiver that keeps the types it gets; its
// clock starts two days ago, so what it queues is due at once by the
// dispatcher's.
type harness struct {
	t     *testing.T
	db    *DB
	d     *Dispatcher
	e     *Evaluator
	ck    *clock
	store *collector.Store
	hub   *stream.Hub
	mu    sync.Mutex
	got   []string
}

func newHarness(t *testing.T, sil SilenceStore, rcv ConfiguredReceiver, rules ...Rule) *harness {
	h := &harness{t: t}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notice
		json.NewDecoder(r.Body).Decode(&n)
		h.mu.Lock()
		h.got = append(h.got, n.Type)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	rcv.URL, rcv.Secret = srv.URL, NewSecret()
	h.db, h.d = runOutbox(t, nil, rcv)
	h.ck = &clock{t: time.Now().Add(-48 * time.Hour)}
	r, _ := h.db.Receiver(context.Background(), "cfg-"+rcv.Name)
	r.CreatedAt = h.ck.t.Add(-time.Hour)
	if err := h.db.PutReceiver(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	h.store = collector.NewStore(time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Now: h.ck.now})
	t.Cleanup(hub.Close)
	h.hub = hub
	for i := range rules {
		rules[i].Validate()
	}
	if sil == nil {
		sil = h.db
	}
	h.e = &Evaluator{Rules: rules, Ring: h.store, Hub: hub, States: h.db, Silences: sil, Now: h.ck.now, Saved: h.d.Wake}
	return h
}

func (h *harness) step(after time.Duration, cpu float64) {
	h.t.Helper()
	h.ck.t = h.ck.t.Add(after)
	h.store.Append(collector.Sample{Source: "host/a", Time: h.ck.t, Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": cpu})})
	if err := h.e.Evaluate(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.d.Wake()
}

// received is what the receiver got once the dispatcher has had time to
// send what was due.
func (h *harness) received() []string { return h.receivedAtLeast(0) }

// receivedAtLeast waits for n requests, then for one too many to arrive,
// if it would (past the dispatcher's 250 ms pass).
func (h *harness) receivedAtLeast(n int) []string {
	within(5*time.Second, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.got) >= n })
	time.Sleep(700 * time.Millisecond)
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

var hot = Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}

// A receiver that takes only firings gets one page when a silence ends,
// the late firing, not a repeat beside it: repeats count from when the
// firing was sent (an outside review found the repeat check, run in the
// same evaluation, taking the previous episode's firing for this one's).
func TestLateFiringIsNotRepeatedAtOnce(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager", Events: []string{"alert.firing"}, RepeatInterval: time.Hour}, hot)
	ctx := context.Background()
	h.step(0, 99)           // episode 1 fires, sent
	h.step(time.Minute, 10) // resolves (this receiver does not take resolutions)
	if g := h.received(); !slices.Equal(g, []string{EventFiring}) {
		t.Fatalf("setup: %v", g)
	}
	s, err := CreateSilence(ctx, h.db, SilenceInput{Matchers: []string{`alertname="Hot"`}, Duration: Duration(24 * time.Hour), CreatedBy: "ana", Comment: "m"}, h.ck.t)
	if err != nil {
		t.Fatal(err)
	}
	h.step(2*time.Hour, 99) // episode 2 fires under the silence: muted
	h.step(3*time.Hour, 99)
	if _, err := ExpireSilence(ctx, h.db, s.ID, h.ck.t); err != nil {
		t.Fatal(err)
	}
	h.step(time.Minute, 99) // unsilenced: the late firing; and the repeat check runs in the same Evaluate
	if g := h.received(); len(g) != 2 {
		t.Fatalf("the end of the silence paged %d times (%v), want once", len(g)-1, g[1:])
	}
	h.step(61*time.Minute, 99) // an interval after the late firing: its first repeat
	if g := h.received(); len(g) != 3 {
		t.Fatalf("an interval after the late firing: %v, want a repeat", g)
	}
}

// An alert whose firing was muted keeps Muted while inactive; its next
// episode, evaluated while the silences cannot be read (a replica that
// just took the lease), sends its firing and its resolution.
type flakySilences struct {
	SilenceStore
	fail bool
}

func (f *flakySilences) Silences(ctx context.Context) ([]Silence, error) {
	if f.fail {
		return nil, errors.New("the alert states in NATS are not read yet")
	}
	return f.SilenceStore.Silences(ctx)
}

func TestMutedDoesNotOutliveItsEpisode(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager"}, hot)
	ctx := context.Background()
	s, _ := CreateSilence(ctx, h.db, SilenceInput{Matchers: []string{`alertname="Hot"`}, Duration: Duration(time.Hour), CreatedBy: "ana", Comment: "m"}, h.ck.t)
	h.step(0, 99)           // muted episode
	h.step(time.Minute, 10) // resolves under the silence: nothing sent
	ExpireSilence(ctx, h.db, s.ID, h.ck.t)
	h.step(time.Minute, 10)
	// A new evaluator takes over (restart / lease takeover) and its first read of the silences fails.
	flaky := &flakySilences{SilenceStore: h.db, fail: true}
	h.e = &Evaluator{Rules: h.e.Rules, Ring: h.store, Hub: h.e.Hub, States: h.db, Silences: flaky, Now: h.ck.now, Saved: h.d.Wake}
	if err := h.e.Load(ctx); err != nil {
		t.Fatal(err)
	}
	h.step(time.Minute, 99) // fires, no silence at all
	flaky.fail = false
	h.step(time.Minute, 99)
	h.step(time.Minute, 10) // resolves
	if g := h.received(); !slices.Equal(g, []string{EventFiring, EventResolved}) {
		t.Errorf("an unsilenced episode sent %v, want its firing and its resolution", g)
	}
}

// memSilences keeps silences in memory, forgetting none.
type memSilences struct {
	mu   sync.Mutex
	list []Silence
}

func (m *memSilences) Silences(context.Context) ([]Silence, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.list), nil
}
func (m *memSilences) PutSilence(_ context.Context, s Silence) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.list {
		if m.list[i].ID == s.ID {
			m.list[i] = s
			return nil
		}
	}
	m.list = append(m.list, s)
	return nil
}

// Expired silences do not count toward MaxSilences (only active and
// pending ones do, as in Alertmanager): a job that silences each deploy
// does not lock everyone out of silencing for the retention.
func TestExpiredSilencesDoNotFillTheCap(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st := &memSilences{}
	for i := range MaxSilences { // a deploy's silence each, all expired
		st.list = append(st.list, Silence{ID: fmt.Sprint("sil_", i), Matchers: []string{`alertname="Deploy"`},
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(-time.Duration(i+1) * time.Second)})
	}
	in := SilenceInput{Matchers: []string{`alertname="Deploy"`}, Duration: Duration(10 * time.Minute), CreatedBy: "ci", Comment: "deploy"}
	if _, err := CreateSilence(ctx, st, in, now); err != nil {
		t.Fatalf("refused while none is active or pending: %v", err)
	}
	if gone := Forget(st.list, now); len(gone) != 0 {
		t.Fatalf("forgets %d silences within their retention and the bound", len(gone))
	}
	// One more expired than the bound: the oldest is forgotten.
	st.list = append(st.list, Silence{ID: "sil_newest", StartsAt: now.Add(-time.Hour), EndsAt: now.Add(-time.Millisecond)})
	if gone := Forget(st.list, now); len(gone) != 1 || !gone[fmt.Sprint("sil_", MaxSilences-1)] {
		t.Fatalf("forgets %v, want the oldest expired", gone)
	}
	// Live ones are bounded.
	for i := range MaxSilences - 1 {
		st.list = append(st.list, Silence{ID: fmt.Sprint("live_", i), StartsAt: now, EndsAt: now.Add(time.Hour)})
	}
	if _, err := CreateSilence(ctx, st, in, now); err == nil || !strings.Contains(err.Error(), "active or pending already") {
		t.Fatalf("the %d-and-first live silence: %v", MaxSilences, err)
	}
}

// A restart after a silence ended while its alert fired sends the
// firing, late, then its resolution.
func TestRestartAfterASilenceEnded(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager"}, hot)
	ctx := context.Background()
	CreateSilence(ctx, h.db, SilenceInput{Matchers: []string{`alertname="Hot"`}, Duration: Duration(time.Hour), CreatedBy: "ana", Comment: "m"}, h.ck.t)
	h.step(0, 99)
	h.e = &Evaluator{Rules: h.e.Rules, Ring: h.store, Hub: h.e.Hub, States: h.db, Silences: h.db, Now: h.ck.now, Saved: h.d.Wake}
	if err := h.e.Load(ctx); err != nil {
		t.Fatal(err)
	}
	h.step(2*time.Hour, 99)
	h.step(time.Minute, 10)
	if g := h.received(); !slices.Equal(g, []string{EventFiring, EventResolved}) {
		t.Fatalf("received %v, want the late firing and the resolution", g)
	}
}

// Repeats keep their schedule, an interval apart from the firing, and do
// not drift by the check's delay.
func TestRepeatsDoNotDrift(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager", RepeatInterval: time.Minute}, hot)
	h.step(0, 99)
	for i := 0; i < 6*30; i++ { // 30 minutes, a step every 10 s
		h.step(10*time.Second, 99)
		time.Sleep(40 * time.Millisecond) // let the dispatcher deliver
	}
	if g := h.received(); len(g) < 30 {
		t.Fatalf("30 min firing with repeat_interval 1m: %d pages (1 firing + %d repeats), want 1 + 30", len(g), len(g)-1)
	}
}

// An alert saved as silenced by a silence the store does not have (a
// replica's vigil.db, whose silences were in NATS, run alone) is freed,
// and its next episode is sent.
func TestAGoneSilenceMutesNothing(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager"}, hot)
	ctx := context.Background()
	fp := Fingerprint("Hot", "host/a", "cpu.percent")
	ghost := Alert{Fingerprint: fp, Rule: "Hot", Source: "host/a", Metric: "cpu.percent", State: StateFiring, StartedAt: h.ck.t.Add(-time.Hour),
		ActiveAt: h.ck.t.Add(-time.Hour), SilencedBy: []string{"sil_in_nats"}, Muted: true, UpdatedAt: h.ck.t}
	if err := h.db.SaveTransitions(ctx, []Transition{{Kind: KindSilenced, Alert: ghost}}); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Load(ctx); err != nil {
		t.Fatal(err)
	}
	h.step(time.Minute, 99)
	h.step(time.Minute, 10) // resolves
	h.step(time.Minute, 99) // a new episode, no silence exists
	a := h.e.Active()
	// Freed, it sends its firing (late), then its resolution, then the new
	// episode's firing.
	if g := h.received(); len(a) != 1 || a[0].SilencedBy != nil || a[0].Muted || !slices.Equal(g, []string{EventFiring, EventResolved, EventFiring}) {
		t.Fatalf("a new episode: %+v; received %v", a, g)
	}
}
