package cluster

import (
	"context"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// A grouping receiver gets the firings queued within its group_wait
// through the shared outbox as one message, whose attempts each alert's
// delivery records; a resolution that comes while its firing is held
// goes after it, not before.
func TestSharedGroupWait(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, func(r received, n int) int {
		if r.Alerts > 1 && n == 0 {
			return 503 // the group's first attempt fails: it is retried whole
		}
		return 200
	})
	w, _ := runWebhooks(t, n, WebhookOptions{Configured: []alerts.ConfiguredReceiver{
		{Name: "ops", URL: h.URL, Secret: alerts.NewSecret(), GroupWait: time.Second}}})
	ctx := context.Background()
	eventually(t, 10*time.Second, "the receiver", func() bool { _, err := w.Receiver(ctx, "cfg-ops"); return err == nil })
	start := time.Now().Add(time.Second) // after the receiver was made
	a, b, c := transition("A", alerts.StateFiring, start), transition("B", alerts.StateFiring, start), transition("C", alerts.StateFiring, start)
	for _, tr := range []alerts.Transition{a, b, c} {
		if err := w.Publish(ctx, []alerts.Transition{tr}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the group, twice", func() bool { return len(h.received()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	got := h.received()
	if len(got) != 2 || got[0].Alerts != 3 || got[1].ID != got[0].ID || got[0].Fingerprint != a.Alert.Fingerprint {
		t.Fatalf("received %+v; want one group of three, sent twice", got)
	}
	ds, err := w.Deliveries(ctx, "cfg-ops", 10)
	if err != nil || len(ds) != 3 {
		t.Fatalf("deliveries %+v %v; want one an alert", ds, err)
	}
	for _, d := range ds {
		if d.State != alerts.DeliveryDelivered || len(d.Attempts) != 2 {
			t.Fatalf("a grouped alert's delivery: %+v", d)
		}
	}

	// A fires and resolves within the wait: its firing goes first.
	d := transition("D", alerts.StateFiring, start.Add(time.Minute))
	if err := w.Publish(ctx, []alerts.Transition{d}); err != nil {
		t.Fatal(err)
	}
	dr := transition("D", alerts.StateResolved, start.Add(time.Minute))
	if err := w.Publish(ctx, []alerts.Transition{dr}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "D's firing and resolution", func() bool { return len(h.received()) >= 4 })
	got = h.received()
	if got[2].Type != alerts.EventFiring || got[2].Fingerprint != d.Alert.Fingerprint || got[3].Type != alerts.EventResolved {
		t.Fatalf("received %+v; want D's firing, then its resolution", got[2:])
	}
}
