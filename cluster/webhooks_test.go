package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// hookServer is a receiver that records what it gets, in order; answer
// says what to answer each webhook (nil: 200).
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(r received, n int) int // n: how many times this id came before
}

type received struct {
	ID, Type, Fingerprint, State string
	Challenge                    string
	Alerts                       int // a group's
}

func newHookServer(t *testing.T, answer func(r received, n int) int) *hookServer {
	h := &hookServer{answer: answer}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Type string `json:"type"`
			Data struct {
				Fingerprint string `json:"fingerprint"`
				State       string `json:"state"`
				Challenge   string `json:"challenge"`
			} `json:"data"`
			Alerts []json.RawMessage `json:"alerts"`
		}
		json.Unmarshal(body, &ev)
		rc := received{ID: r.Header.Get("webhook-id"), Type: ev.Type, Fingerprint: ev.Data.Fingerprint, State: ev.Data.State, Challenge: ev.Data.Challenge,
			Alerts: len(ev.Alerts)}
		h.mu.Lock()
		n := 0
		for _, g := range h.got {
			if g.ID == rc.ID {
				n++
			}
		}
		h.got = append(h.got, rc)
		h.mu.Unlock()
		code := http.StatusOK
		if h.answer != nil {
			code = h.answer(rc, n)
		}
		if rc.Challenge != "" && code == http.StatusOK {
			json.NewEncoder(w).Encode(map[string]string{"challenge": rc.Challenge})
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) received() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// runWebhooks runs a replica's shared outbox on a connection of its own;
// stop ends it as vigil's stop does.
func runWebhooks(t testing.TB, n *vigiltest.NATS, opts WebhookOptions) (w *Webhooks, stop func()) {
	t.Helper()
	return runWebhooksOn(t, n.Connect(), opts)
}

func runWebhooksOn(t testing.TB, nc *nats.Conn, opts WebhookOptions) (w *Webhooks, stop func()) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts.Sender = alerts.Sender{Client: alerts.NewClient(loopback, alerts.DefaultAttemptTimeout)}
	if opts.Backoff == nil {
		opts.Backoff = func(int, time.Duration) time.Duration { return 50 * time.Millisecond }
	}
	w = NewWebhooks(js, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return w, stop
}

func configured(url string) []alerts.ConfiguredReceiver {
	return []alerts.ConfiguredReceiver{{Name: "ops.team", URL: url, Secret: alerts.NewSecret()}}
}

// transition makes an alert's transition; an episode is its ActiveAt.
func transition(rule, kind string, episode time.Time) alerts.Transition {
	a := alerts.Alert{Fingerprint: alerts.Fingerprint(rule, "host/a", "cpu.percent"), Rule: rule, Source: "host/a",
		Metric: "cpu.percent", Op: ">", Threshold: 90, Value: 95, Severity: "warning",
		ActiveAt: episode, StartedAt: episode, UpdatedAt: time.Now()}
	a.State = alerts.StateFiring
	if kind == alerts.StateResolved {
		a.State, a.EndedAt = alerts.StateInactive, time.Now()
	}
	return alerts.Transition{Kind: kind, Alert: a}
}

func receiverReady(t *testing.T, ws ...*Webhooks) {
	t.Helper()
	for _, w := range ws {
		waitFor(t, func() bool {
			r, err := w.Receiver(context.Background(), "cfg-ops.team")
			return err == nil && r.Status == alerts.ReceiverActive
		}, "the configured receiver on every replica")
	}
}

// Two replicas send from one outbox: every webhook reaches the receiver
// once, even when both publish the same transitions (a save made again,
// or a takeover), and both answer the same about its deliveries.
func TestSharedWebhooksDeliveredOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a, b)
	ctx := context.Background()
	episode := time.Now()
	var ts []alerts.Transition
	for i := range 20 {
		ts = append(ts, transition(fmt.Sprint("Rule", i), alerts.StateFiring, episode))
	}
	if err := a.Publish(ctx, ts); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, ts); err != nil { // the same transitions, from the other replica
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "20 webhooks", func() bool { return len(h.received()) >= 20 })
	for _, w := range []*Webhooks{a, b} {
		eventually(t, 5*time.Second, "20 deliveries recorded on every replica", func() bool {
			ds, _ := w.Deliveries(ctx, "cfg-ops.team", 100)
			done := 0
			for _, d := range ds {
				if d.State == alerts.DeliveryDelivered && len(d.Attempts) == 1 {
					done++
				}
			}
			return done == 20
		})
	}
	time.Sleep(300 * time.Millisecond) // time for a duplicate to arrive, if one were sent
	got := h.received()
	ids := map[string]bool{}
	for _, r := range got {
		if ids[r.ID] {
			t.Errorf("webhook %s received twice", r.ID)
		}
		ids[r.ID] = true
		if r.Type != alerts.EventFiring {
			t.Errorf("got %q, want %s", r.Type, alerts.EventFiring)
		}
	}
	if len(got) != 20 {
		t.Errorf("received %d webhooks, want 20", len(got))
	}
	if n, err := a.Backlog(ctx, "cfg-ops.team"); err != nil || n != 0 {
		t.Errorf("backlog %d, %v; want 0", n, err)
	}
}

// A receiver that fails gets an alert's webhooks in order: the resolved
// one waits while the firing one is retried, with backoff, through NATS.
func TestSharedWebhooksRetryInOrder(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, func(r received, n int) int {
		if r.Type == alerts.EventFiring && n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var mu sync.Mutex
	var waits []int
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL), Backoff: func(n int, _ time.Duration) time.Duration {
		mu.Lock()
		waits = append(waits, n)
		mu.Unlock()
		return 200 * time.Millisecond
	}})
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a, b)
	ctx := context.Background()
	episode := time.Now()
	if err := a.Publish(ctx, []alerts.Transition{transition("Hot", alerts.StateFiring, episode)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, []alerts.Transition{transition("Hot", alerts.StateResolved, episode)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the resolved webhook", func() bool {
		got := h.received()
		return len(got) > 0 && got[len(got)-1].Type == alerts.EventResolved
	})
	var types []string
	for _, r := range h.received() {
		types = append(types, r.Type)
	}
	want := []string{alerts.EventFiring, alerts.EventFiring, alerts.EventFiring, alerts.EventResolved}
	if !slices.Equal(types, want) {
		t.Errorf("received %v, want %v", types, want)
	}
	ds, err := b.Deliveries(ctx, "cfg-ops.team", 10)
	eventually(t, 5*time.Second, "the firing delivery's three attempts", func() bool {
		ds, err = b.Deliveries(ctx, "cfg-ops.team", 10)
		return err == nil && len(ds) == 2 && ds[1].State == alerts.DeliveryDelivered && len(ds[1].Attempts) == 3
	})
	if a := ds[1].Attempts; a[0].Status != http.StatusServiceUnavailable || a[2].Status != http.StatusOK {
		t.Errorf("attempts %+v", a)
	}
}

// After its last attempt a delivery is dead, in the dead-letter stream;
// a retry through the API sends it again from there, on another replica.
func TestSharedWebhooksDeadLetterRetried(t *testing.T) {
	n := vigiltest.StartNATS(t)
	var mu sync.Mutex
	down := true
	h := newHookServer(t, func(received, int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL), MaxAttempts: 3})
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL), MaxAttempts: 3})
	receiverReady(t, a, b)
	ctx := context.Background()
	if err := a.Publish(ctx, []alerts.Transition{transition("Hot", alerts.StateFiring, time.Now())}); err != nil {
		t.Fatal(err)
	}
	var d alerts.Delivery
	eventually(t, 10*time.Second, "a dead delivery", func() bool {
		ds, _ := b.Deliveries(ctx, "cfg-ops.team", 10)
		if len(ds) == 1 {
			d = ds[0]
		}
		return d.State == alerts.DeliveryDead
	})
	if len(d.Attempts) != 3 || d.LastError == "" {
		t.Errorf("dead after %d attempts (%q), want 3", len(d.Attempts), d.LastError)
	}
	dead, err := jetStream(t, n).Stream(ctx, DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(ctx, deadSubject("cfg-ops.team"))
	if err != nil || m.Header.Get(hdrDelivery) != d.ID {
		t.Fatalf("dead letter: %v, %v", m, err)
	}
	if err := a.RetryDelivery(ctx, "msg_nope", time.Now()); !isNotFound(err) {
		t.Errorf("retry of an unknown delivery: %v", err)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if err := b.RetryDelivery(ctx, d.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.RetryDelivery(ctx, d.ID, time.Now()); err != alerts.ErrNotDead {
		t.Errorf("retry of a queued delivery: %v, want ErrNotDead", err)
	}
	eventually(t, 10*time.Second, "the retried delivery delivered", func() bool {
		got, err := a.Delivery(ctx, d.ID)
		return err == nil && got.State == alerts.DeliveryDelivered && len(got.Attempts) == 4
	})
	got := h.received()
	if len(got) != 4 || got[3].ID != d.ID {
		t.Errorf("received %+v, want 4 attempts of %s", got, d.ID)
	}
}

func isNotFound(err error) bool {
	_, ok := err.(*alerts.NotFoundError)
	return ok
}

// The receivers API answers the same on every replica: a receiver made
// on one is verified by whichever replica sends its challenge, and seen,
// rotated and deleted from the other. A 410 disables it everywhere.
func TestSharedReceiversOnEveryReplica(t *testing.T) {
	n := vigiltest.StartNATS(t)
	var mu sync.Mutex
	gone := false
	h := newHookServer(t, func(r received, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if gone && r.Type == alerts.EventTest {
			return http.StatusGone
		}
		return http.StatusOK
	})
	a, _ := runWebhooks(t, n, WebhookOptions{})
	b, _ := runWebhooks(t, n, WebhookOptions{})
	ra, rb := &alerts.Receivers{Outbox: a}, &alerts.Receivers{Outbox: b}
	ctx := context.Background()
	url := h.URL + "/hook"
	r, err := ra.Create(ctx, alerts.ReceiverInput{URL: &url})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the receiver verified, seen from the other replica", func() bool {
		got, err := rb.Get(ctx, r.ID)
		return err == nil && got.Status == alerts.ReceiverActive
	})
	rot, err := rb.Rotate(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the new secret on the first replica", func() bool {
		got, _ := ra.Get(ctx, r.ID)
		return got.Secret == rot.Secret && got.OldSecret == r.Secret
	})
	list, err := rb.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Errorf("list on the other replica: %v, %v", list, err)
	}
	mu.Lock()
	gone = true
	mu.Unlock()
	did, err := rb.Test(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "410 disables the receiver on every replica", func() bool {
		x, errA := ra.Get(ctx, r.ID)
		y, errB := rb.Get(ctx, r.ID)
		d, errD := ra.Delivery(ctx, did)
		return errA == nil && errB == nil && errD == nil && x.Status == alerts.ReceiverDisabled &&
			y.Status == alerts.ReceiverDisabled && d.State == alerts.DeliveryDead
	})
	if err := rb.Delete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the receiver gone from the first replica", func() bool {
		_, err := ra.Get(ctx, r.ID)
		return isNotFound(err)
	})
}

// A replica that stops in the middle of an attempt hands the delivery
// back to NATS, and another replica sends it: a webhook is delivered
// whichever replica is up.
func TestSharedWebhookSentByTheReplicaThatIsUp(t *testing.T) {
	n := vigiltest.StartNATS(t)
	first := make(chan struct{})
	var once sync.Once
	h := newHookServer(t, func(r received, k int) int {
		if k == 0 { // the first attempt hangs until its replica stops
			once.Do(func() { close(first) })
			time.Sleep(2 * time.Second)
		}
		return http.StatusOK
	})
	a, stopA := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	ctx := context.Background()
	if err := a.Publish(ctx, []alerts.Transition{transition("Hot", alerts.StateFiring, time.Now())}); err != nil {
		t.Fatal(err)
	}
	<-first
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	stopA()
	eventually(t, 10*time.Second, "the webhook delivered by the other replica", func() bool {
		ds, _ := b.Deliveries(ctx, "cfg-ops.team", 10)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryDelivered
	})
	got := h.received()
	if len(got) != 2 || got[0].ID != got[1].ID {
		t.Errorf("received %+v: want the cut-short attempt and the one that delivered, with one id", got)
	}
}

// eventually polls cond until it holds, or fails after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runStates runs a replica's alert states with its shared outbox (nil:
// one that dies after it saves and before it queues a webhook).
func runStates(t *testing.T, n *vigiltest.NATS, w *Webhooks) *AlertStates {
	t.Helper()
	s := NewAlertStates(jetStream(t, n), "", 1, nil, nil)
	s.Webhooks = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 10*time.Second, "the states read", func() bool {
		_, err := s.LoadAlerts(ctx)
		return err == nil
	})
	return s
}

// A holder that saved a transition and died before it queued its webhook
// leaves it to the next holder, which queues the latest webhook of every
// alert when it takes the lease: those queued before are kept once, the
// one missing is sent.
func TestNextHolderQueuesWhatTheLastDidNot(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	ctx := context.Background()
	first := runStates(t, n, a)
	sent := transition("Sent", alerts.StateFiring, time.Now())
	if err := first.SaveTransitions(ctx, []alerts.Transition{sent}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first webhook", func() bool { return len(h.received()) == 1 })
	dying := runStates(t, n, nil) // saves, and dies before it queues
	lost := transition("Lost", alerts.StateFiring, time.Now())
	if err := dying.SaveTransitions(ctx, []alerts.Transition{lost}); err != nil {
		t.Fatal(err)
	}

	next := runStates(t, n, a)
	eventually(t, 10*time.Second, "the next holder to read both alerts", func() bool {
		as, _ := next.LoadAlerts(ctx)
		return len(as) == 2
	})
	next.Resume(ctx)
	next.Resume(ctx) // a third holder does the same
	eventually(t, 10*time.Second, "the missing webhook", func() bool { return len(h.received()) >= 2 })
	time.Sleep(300 * time.Millisecond) // time for a duplicate to arrive, if one were sent
	got := h.received()
	if len(got) != 2 || got[0].Fingerprint != sent.Alert.Fingerprint || got[1].Fingerprint != lost.Alert.Fingerprint {
		t.Fatalf("received %+v; want Sent's webhook once, then Lost's", got)
	}
}

// Webhooks NATS does not take when the states are saved (the work queue
// deleted) wait, and are queued once it can take them again.
func TestUnsentWebhooksQueuedAgain(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	states := runStates(t, n, a)
	ctx := context.Background()
	if err := states.SaveTransitions(ctx, []alerts.Transition{transition("One", alerts.StateFiring, time.Now())}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first webhook", func() bool { return len(h.received()) == 1 })
	if err := jetStream(t, n).DeleteStream(ctx, WebhooksStream); err != nil {
		t.Fatal(err)
	}
	if err := states.SaveTransitions(ctx, []alerts.Transition{transition("Two", alerts.StateFiring, time.Now())}); err != nil {
		t.Fatalf("a save whose webhook is not queued yet: %v; the state is saved", err)
	}
	eventually(t, 15*time.Second, "the webhook queued again", func() bool { return len(h.received()) == 2 })
}

// Two episodes of an alert resolve within the duplicate window (a source
// removed, back, removed again): each resolution is its own webhook.
func TestEachEpisodeResolvesOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	ctx := context.Background()
	for _, episode := range []time.Time{time.Now(), time.Now().Add(time.Second)} {
		r := transition("Gone", alerts.StateResolved, episode)
		r.Alert.ActiveAt = time.Time{} // as a source removed leaves it
		if err := a.Publish(ctx, []alerts.Transition{r}); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(ctx, []alerts.Transition{r}); err != nil { // and again: kept once
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "two resolutions", func() bool { return len(h.received()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	if got := h.received(); len(got) != 2 || got[0].ID == got[1].ID {
		t.Fatalf("received %+v; want two resolutions with two ids", got)
	}
}

// The receivers API answers 503 (alerts.ErrStore) within a couple of
// seconds while the receivers cannot be read, rather than hanging.
func TestReceiversNotReadAnswerStoreError(t *testing.T) {
	n := vigiltest.StartNATS(t)
	w := NewWebhooks(jetStream(t, n), WebhookOptions{}) // not run: never read
	start := time.Now()
	_, err := w.ListReceivers(context.Background())
	if !errors.Is(err, alerts.ErrStore) || time.Since(start) > 5*time.Second {
		t.Fatalf("after %s: %v, want ErrStore", time.Since(start), err)
	}
	if _, err := w.Deliveries(context.Background(), "cfg-x", 10); !errors.Is(err, alerts.ErrStore) {
		t.Fatalf("deliveries: %v, want ErrStore", err)
	}
}

// A replica cut off from NATS in the middle of a slow attempt finishes
// it before NATS gives the delivery to another replica: the receiver
// never has two attempts of one webhook at once, and the second, from
// the replica that is up, comes after the first answered (the one way a
// webhook is sent twice: the first replica could not say it was done).
func TestCutOffReplicaEndsItsAttemptBeforeAnotherStarts(t *testing.T) {
	n := vigiltest.StartNATS(t)
	type span struct{ start, end time.Time }
	var mu sync.Mutex
	var spans []span
	started := make(chan struct{}, 4)
	h := newHookServer(t, func(received, int) int {
		s := span{start: time.Now()}
		started <- struct{}{}
		time.Sleep(alerts.DefaultAttemptTimeout - 2*time.Second) // slow, within the attempt timeout
		s.end = time.Now()
		mu.Lock()
		spans = append(spans, s)
		mu.Unlock()
		return http.StatusOK
	})
	proxy := vigiltest.NewCutProxy(t, strings.TrimPrefix(n.URL, "nats://"))
	nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a, _ := runWebhooksOn(t, nc, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	ctx := context.Background()
	if err := a.Publish(ctx, []alerts.Transition{transition("Slow", alerts.StateFiring, time.Now())}); err != nil {
		t.Fatal(err)
	}
	<-started
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	proxy.Cut()
	eventually(t, 2*webhookAckWait+alerts.DefaultAttemptTimeout, "the webhook delivered by the replica that is up", func() bool {
		ds, _ := b.Deliveries(ctx, "cfg-ops.team", 10)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryDelivered
	})
	mu.Lock()
	defer mu.Unlock()
	if len(spans) != 2 {
		t.Fatalf("%d attempts, want 2", len(spans))
	}
	if spans[1].start.Before(spans[0].end) {
		t.Fatalf("the second attempt began %s before the first answered", spans[0].end.Sub(spans[1].start))
	}
}

// A receiver with matchers gets only the alerts it matches through the
// shared outbox too.
func TestSharedReceiversMatchAlerts(t *testing.T) {
	n := vigiltest.StartNATS(t)
	pager, all := newHookServer(t, nil), newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: []alerts.ConfiguredReceiver{
		{Name: "pager", URL: pager.URL, Secret: alerts.NewSecret(), Match: []string{`severity="critical"`}},
		{Name: "all", URL: all.URL, Secret: alerts.NewSecret()},
	}})
	eventually(t, 10*time.Second, "both receivers", func() bool {
		rs, _ := a.ListReceivers(context.Background())
		return len(rs) == 2
	})
	crit, warn := transition("Crit", alerts.StateFiring, time.Now()), transition("Warn", alerts.StateFiring, time.Now())
	crit.Alert.Severity = "critical"
	if err := a.Publish(context.Background(), []alerts.Transition{crit, warn}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "both alerts to the receiver of all", func() bool { return len(all.received()) == 2 })
	time.Sleep(300 * time.Millisecond)
	if got := pager.received(); len(got) != 1 || got[0].Fingerprint != crit.Alert.Fingerprint {
		t.Fatalf("the pager got %+v; want the critical alert only", got)
	}
	// Its resolution follows it to the pager, though the rule's severity
	// is not critical any more.
	cool := transition("Crit", alerts.StateResolved, crit.Alert.StartedAt)
	cool.Alert.Severity = "warning"
	if err := a.Publish(context.Background(), []alerts.Transition{cool}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the resolution to the pager", func() bool { return len(pager.received()) == 2 })
}

// A receiver with repeat_interval gets a firing alert again each
// interval through the shared outbox, once however many replicas (lease
// holders one after another) find the repeat due.
func TestSharedRepeatsOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	rcv := []alerts.ConfiguredReceiver{{Name: "pager", URL: h.URL, Secret: alerts.NewSecret(), RepeatInterval: time.Hour}}
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: rcv})
	b, _ := runWebhooks(t, n, WebhookOptions{Configured: rcv})
	ctx := context.Background()
	for _, w := range []*Webhooks{a, b} {
		eventually(t, 10*time.Second, "the receiver", func() bool { _, err := w.Receiver(ctx, "cfg-pager"); return err == nil })
	}
	hot := transition("Hot", alerts.StateFiring, time.Now().Add(time.Second))
	if err := a.Publish(ctx, []alerts.Transition{hot}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the firing delivered", func() bool {
		ds, _ := a.Deliveries(ctx, "cfg-pager", 10)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryDelivered
	})
	later := hot.Alert.StartedAt.Add(61 * time.Minute)
	resolved := func(alerts.Alert) bool { return false } // the bucket says it resolved meanwhile
	if err := a.Repeat(ctx, []alerts.Alert{hot.Alert}, later, resolved); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.dels.value(alerts.RepeatID(hot.Alert, "cfg-pager", time.Hour, 1)); ok {
		t.Fatal("a repeat queued for an alert its saved state says resolved")
	}
	firing := func(alerts.Alert) bool { return true }
	if err := a.Repeat(ctx, []alerts.Alert{hot.Alert}, later, firing); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the repeat on b", func() bool {
		_, ok := b.dels.value(alerts.RepeatID(hot.Alert, "cfg-pager", time.Hour, 1))
		return ok
	})
	if err := b.Repeat(ctx, []alerts.Alert{hot.Alert}, later.Add(time.Minute), firing); err != nil { // the next holder
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the repeat", func() bool { return len(h.received()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	if got := h.received(); len(got) != 2 || got[0].ID == got[1].ID || got[1].Type != alerts.EventFiring {
		t.Fatalf("received %+v; want the firing and one repeat", got)
	}
}
