package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/internal/vigiltest"
)

// Silences are kept in the alert states' bucket: one made or expired
// through any replica mutes or frees the alerts on the one that
// evaluates, and the shared outbox sends what a silence held back once it
// ends (the firing, late) and nothing of an episode it covered whole.
func TestSharedSilences(t *testing.T) {
	n := vigiltest.StartNATS(t)
	h := newHookServer(t, nil)
	w, _ := runWebhooks(t, n, WebhookOptions{Configured: configured(h.URL)})
	receiverReady(t, w)
	ctx := context.Background()
	holder := runStates(t, n, w)  // the replica that evaluates
	other := runStates(t, n, nil) // one whose API takes the silences
	ring := collector.NewStore(time.Minute, time.Second)
	rule := alerts.Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &alerts.Evaluator{Rules: []alerts.Rule{rule}, Ring: ring, Hub: &recorder{}, States: holder, Silences: holder}
	if err := e.Load(ctx); err != nil {
		t.Fatal(err)
	}
	step := func(cpu float64) {
		t.Helper()
		ring.Append(collector.Sample{Source: "host/a", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": cpu})})
		if err := e.Evaluate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	silence := func() alerts.Silence {
		t.Helper()
		s, err := alerts.CreateSilence(ctx, other, alerts.SilenceInput{Matchers: []string{`alertname="Hot"`}, Duration: alerts.Duration(time.Hour),
			CreatedBy: "ana", Comment: "maintenance"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the silence on the holder", func() bool {
			list, _ := holder.Silences(ctx)
			return slices.ContainsFunc(list, func(x alerts.Silence) bool { return x.ID == s.ID })
		})
		return s
	}
	expire := func(s alerts.Silence) {
		t.Helper()
		if _, err := alerts.ExpireSilence(ctx, other, s.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the silence expired on the holder", func() bool {
			list, _ := holder.Silences(ctx)
			return slices.ContainsFunc(list, func(x alerts.Silence) bool { return x.ID == s.ID && x.State(time.Now()) == alerts.SilenceExpired })
		})
	}

	s1 := silence()
	step(99) // fires, muted
	eventually(t, 10*time.Second, "the silenced alert's state on the other replica", func() bool {
		saved, _ := other.LoadAlerts(ctx)
		return len(saved) == 1 && slices.Equal(saved[0].SilencedBy, []string{s1.ID}) && saved[0].Muted
	})
	expire(s1)
	step(99) // unsilenced: its firing is sent now
	eventually(t, 10*time.Second, "the late firing", func() bool { return len(h.received()) == 1 })
	s2 := silence()
	step(99)
	step(10) // resolves under s2: its firing was sent, so its resolution is
	eventually(t, 10*time.Second, "the resolution", func() bool { return len(h.received()) == 2 })
	step(99) // an episode under s2, whole
	step(10)
	expire(s2)
	step(10)
	step(99) // not silenced
	eventually(t, 10*time.Second, "the next firing", func() bool { return len(h.received()) >= 3 })
	time.Sleep(300 * time.Millisecond) // for one too many to arrive, if it would
	var kinds []string
	for _, r := range h.received() {
		kinds = append(kinds, r.Type)
	}
	if want := []string{alerts.EventFiring, alerts.EventResolved, alerts.EventFiring}; !slices.Equal(kinds, want) {
		t.Fatalf("received %v, want %v", kinds, want)
	}
}
