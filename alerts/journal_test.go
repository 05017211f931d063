package alerts

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestJournalKeepsEveryTransition: each saved transition is in the journal
// with its time, rule and kind, for its source only, oldest first; a read
// takes a time range; pruning drops what is older than the retention.
func TestJournalKeepsEveryTransition(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	at := func(kind string, rule, source string, d time.Duration) Transition {
		tr := firing(rule)
		tr.Kind, tr.Alert.Source, tr.Alert.UpdatedAt = kind, source, t0.Add(d)
		return tr
	}
	for _, ts := range [][]Transition{
		{at(StatePending, "Hot", "host/a", 0), at(StatePending, "Hot", "host/b", 0)},
		{at(StateFiring, "Hot", "host/a", time.Minute)},
		{at(KindAcknowledged, "Hot", "host/a", 2*time.Minute)},
		{at(StateResolved, "Hot", "host/a", time.Hour)},
	} {
		if err := db.SaveTransitions(ctx, ts); err != nil {
			t.Fatal(err)
		}
	}
	marks, err := db.Marks(ctx, "host/a", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, m := range marks {
		if m.Source != "host/a" || m.Rule != "Hot" || m.Metric != "cpu.percent" || m.Severity != "critical" || m.Value != 97 {
			t.Errorf("mark %+v", m)
		}
		kinds = append(kinds, m.Kind+"@"+m.At.Sub(t0).String())
	}
	if got, want := kinds, []string{"pending@0s", "firing@1m0s", "acknowledged@2m0s", "resolved@1h0m0s"}; !slices.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
	if marks, _ := db.Marks(ctx, "host/a", t0.Add(30*time.Second), t0.Add(59*time.Minute)); len(marks) != 2 {
		t.Fatalf("a range took %d marks, want 2: %+v", len(marks), marks)
	}
	if marks, _ := db.Marks(ctx, "host/c", t0, t0.Add(time.Hour)); marks == nil || len(marks) != 0 {
		t.Fatalf("another source: %+v", marks)
	}

	db.JournalRetention = 24 * time.Hour
	if _, _, err := db.prune(ctx, t0.Add(24*time.Hour+90*time.Second)); err != nil {
		t.Fatal(err)
	}
	marks, _ = db.Marks(ctx, "host/a", t0, t0.Add(time.Hour))
	if len(marks) != 2 || marks[0].Kind != KindAcknowledged {
		t.Fatalf("after pruning a day and 90 s: %+v", marks)
	}
}
