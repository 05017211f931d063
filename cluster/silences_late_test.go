package cluster

import (
	"context"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// A holder saves an alert's late firing (its silence ended more than an
// hour after it fired) and dies before it queues the webhook: the next
// holder queues it, dated by when it was sent, not when it fired.
func TestNextHolderQueuesALateFiring(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	a, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, a)
	ctx := context.Background()
	dying := runStates(t, n, nil)
	late := transition("Late", alerts.KindUnsilenced, time.Now().Add(-3*time.Hour))
	late.Late, late.Alert.NotifiedAt = true, time.Now()
	if _, ok := late.Webhook(); !ok {
		t.Fatal("setup: a late firing sends a webhook")
	}
	if err := dying.SaveTransitions(ctx, []alerts.Transition{late}); err != nil {
		t.Fatal(err)
	}
	next := runStates(t, n, a)
	eventually(t, 10*time.Second, "the next holder to read the alert", func() bool {
		as, _ := next.LoadAlerts(ctx)
		return len(as) == 1
	})
	next.Resume(ctx)
	eventually(t, 10*time.Second, "the late firing", func() bool { return len(h.received()) == 1 })
}
