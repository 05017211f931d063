package cluster

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// Two replicas that both hold the same firings — the old holder, cut off
// from the lease but alive, and the new one after Resume, which also got
// a new firing C — do not both send them: the one that lost the lease
// leaves its group (an outside review found A and B sent twice).
func TestAGroupIsLeftByWhoLostTheLease(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	opts := WebhookOptions{Configured: []alerts.ConfiguredReceiver{{Name: "ops", URL: h.URL, Secret: alerts.NewSecret(), GroupWait: time.Second}}}
	w1, _ := runWebhooks(t, n, opts)
	w2, _ := runWebhooks(t, n, opts)
	var w1Holds atomic.Bool
	w1Holds.Store(true)
	w1.Holding = w1Holds.Load
	ctx := context.Background()
	for _, w := range []*Webhooks{w1, w2} {
		eventually(t, 10*time.Second, "the receiver", func() bool { _, err := w.Receiver(ctx, "cfg-ops"); return err == nil })
	}
	start := time.Now().Add(time.Second)
	a, b, c := transition("A", alerts.StateFiring, start), transition("B", alerts.StateFiring, start), transition("C", alerts.StateFiring, start)
	if err := w1.Publish(ctx, []alerts.Transition{a, b}); err != nil { // old holder
		t.Fatal(err)
	}
	w1Holds.Store(false)                                                  // the lease moved
	if err := w2.Publish(ctx, []alerts.Transition{a, b, c}); err != nil { // new holder: Resume, and C
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the new holder's group", func() bool { return len(h.received()) >= 1 })
	time.Sleep(2 * time.Second) // past the old holder's group_wait
	if got := h.received(); len(got) != 1 || got[0].Alerts != 3 {
		t.Fatalf("received %+v; want one group of three", got)
	}
}

// The API's retry of one member's dead delivery sends that alert alone,
// not its group again (B's firing would follow its resolution), and the
// others stay dead.
func TestRetryingOneAlertOfADeadGroup(t *testing.T) {
	n := vigiltest.StartNATS(t)
	var ok atomic.Bool
	h := newHookServer(t, func(r received, _ int) int {
		if r.Alerts > 1 && !ok.Load() {
			return 400 // permanent: the group dies
		}
		return 200
	})
	w, _ := runWebhooks(t, n, WebhookOptions{Configured: []alerts.ConfiguredReceiver{{Name: "ops", URL: h.URL, Secret: alerts.NewSecret(), GroupWait: time.Second}}})
	ctx := context.Background()
	eventually(t, 10*time.Second, "the receiver", func() bool { _, err := w.Receiver(ctx, "cfg-ops"); return err == nil })
	start := time.Now().Add(time.Second)
	a, b, c := transition("A", alerts.StateFiring, start), transition("B", alerts.StateFiring, start), transition("C", alerts.StateFiring, start)
	if err := w.Publish(ctx, []alerts.Transition{a, b, c}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	eventually(t, 10*time.Second, "the group dead", func() bool {
		ds, _ := w.Deliveries(ctx, "cfg-ops", 10)
		ids = nil
		for _, d := range ds {
			if d.State == alerts.DeliveryDead {
				ids = append(ids, d.ID)
			}
		}
		return len(ids) == 3
	})
	br := transition("B", alerts.StateResolved, start)
	if err := w.Publish(ctx, []alerts.Transition{br}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "B's resolution", func() bool { return len(h.received()) == 2 })
	ok.Store(true)
	var retried string
	for _, id := range ids {
		if id == newDeliveryIDFor(a) {
			retried = id
		}
	}
	if err := w.RetryDelivery(ctx, retried, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the retry", func() bool { return len(h.received()) == 3 })
	time.Sleep(500 * time.Millisecond)
	if last := h.received()[2]; len(h.received()) != 3 || last.Alerts != 1 || last.Fingerprint != a.Alert.Fingerprint || last.ID != retried {
		t.Fatalf("received %+v; want A alone, under its own id", h.received())
	}
	eventually(t, 10*time.Second, "A delivered", func() bool { d, _ := w.Delivery(ctx, retried); return d.State == alerts.DeliveryDelivered })
	for _, tr := range []alerts.Transition{b, c} {
		if d, _ := w.Delivery(ctx, newDeliveryIDFor(tr)); d.State != alerts.DeliveryDead {
			t.Fatalf("%s's firing delivery: %s, want still dead", tr.Alert.Rule, d.State)
		}
	}
}

func newDeliveryIDFor(t alerts.Transition) string {
	return newDeliveryID(t.Alert.Fingerprint, alerts.StateFiring, strconv.FormatInt(t.Alert.StartedAt.UnixMicro(), 10), "cfg-ops")
}

// A resolution whose labels no longer match the receiver goes wherever its
// firing went — also where its firing is held, not recorded yet (an
// outside review found it dropped, and the alert firing at the receiver
// for ever).
func TestAHeldFiringsResolutionFollowsIt(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	w, _ := runWebhooks(t, n, WebhookOptions{Configured: []alerts.ConfiguredReceiver{{Name: "ops", URL: h.URL, Secret: alerts.NewSecret(),
		GroupWait: time.Second, Match: []string{`severity="warning"`}}}})
	ctx := context.Background()
	eventually(t, 10*time.Second, "the receiver", func() bool { _, err := w.Receiver(ctx, "cfg-ops"); return err == nil })
	start := time.Now().Add(time.Second)
	a := transition("A", alerts.StateFiring, start)
	if err := w.Publish(ctx, []alerts.Transition{a}); err != nil {
		t.Fatal(err)
	}
	ar := transition("A", alerts.StateResolved, start)
	ar.Alert.Severity = "critical" // the rule's severity changed meanwhile
	if err := w.Publish(ctx, []alerts.Transition{ar}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the firing and its resolution", func() bool { return len(h.received()) >= 2 })
	if got := h.received(); got[0].Type != alerts.EventFiring || got[1].Type != alerts.EventResolved {
		t.Fatalf("received %+v; want the firing, then its resolution", got)
	}
}
