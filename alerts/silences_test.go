package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"vigil/stream"
)

func TestSilenceMatching(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	web := map[string]string{"alertname": "HighCPU", "severity": "critical", "source": "host/web-1", "metric": "cpu.percent", "role": "web"}
	db := map[string]string{"alertname": "HighCPU", "severity": "warning", "source": "host/db-1", "metric": "cpu.percent", "role": "db"}
	s := func(id string, from, to time.Duration, m ...string) Silence {
		return Silence{ID: id, Matchers: m, StartsAt: now.Add(from), EndsAt: now.Add(to)}
	}
	for _, tc := range []struct {
		name   string
		list   []Silence
		labels map[string]string
		want   []string
	}{
		{"none", nil, web, nil},
		{"by rule", []Silence{s("a", -time.Hour, time.Hour, `alertname="HighCPU"`)}, web, []string{"a"}},
		{"all matchers must pass", []Silence{s("a", -time.Hour, time.Hour, `alertname="HighCPU"`, `role="db"`)}, web, nil},
		{"regex on a label", []Silence{s("a", -time.Hour, time.Hour, `source=~"host/web-.*"`)}, web, []string{"a"}},
		{"regex matches the whole value", []Silence{s("a", -time.Hour, time.Hour, `source=~"web"`)}, web, nil},
		{"negative", []Silence{s("a", -time.Hour, time.Hour, `alertname="HighCPU"`, `severity!="critical"`)}, db, []string{"a"}},
		{"negative regex", []Silence{s("a", -time.Hour, time.Hour, `alertname="HighCPU"`, `role!~"web|db"`)}, db, nil},
		{"not started", []Silence{s("a", time.Minute, time.Hour, `alertname="HighCPU"`)}, web, nil},
		{"starts now", []Silence{s("a", 0, time.Hour, `alertname="HighCPU"`)}, web, []string{"a"}},
		{"ended", []Silence{s("a", -time.Hour, -time.Second, `alertname="HighCPU"`)}, web, nil},
		{"ends now", []Silence{s("a", -time.Hour, 0, `alertname="HighCPU"`)}, web, nil},
		{"several, sorted", []Silence{s("b", -time.Hour, time.Hour, `role="web"`), s("a", -time.Hour, time.Hour, `alertname="HighCPU"`),
			s("c", -time.Hour, time.Hour, `role="db"`)}, web, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Muting(tc.list, tc.labels, now); !slices.Equal(got, tc.want) {
				t.Fatalf("Muting = %v, want %v", got, tc.want)
			}
		})
	}
	states := map[string]string{}
	for _, sl := range []Silence{s("p", time.Minute, time.Hour), s("a", -time.Minute, time.Hour), s("e", -time.Hour, 0)} {
		states[sl.ID] = sl.State(now)
	}
	if states["p"] != SilencePending || states["a"] != SilenceActive || states["e"] != SilenceExpired {
		t.Fatalf("states %v", states)
	}
}

func TestSilenceInput(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ok := SilenceInput{Matchers: []string{`alertname="HighCPU"`}, Duration: Duration(time.Hour), CreatedBy: "ana", Comment: "maintenance"}
	s, err := ok.Silence(now)
	if err != nil || !s.StartsAt.Equal(now) || !s.EndsAt.Equal(now.Add(time.Hour)) || !strings.HasPrefix(s.ID, "sil_") {
		t.Fatalf("%+v %v", s, err)
	}
	later := ok
	later.StartsAt, later.Duration, later.EndsAt = now.Add(time.Hour), 0, now.Add(3*time.Hour)
	if s, err := later.Silence(now); err != nil || s.State(now) != SilencePending {
		t.Fatalf("%+v %v", s, err)
	}
	for _, tc := range []struct {
		edit func(*SilenceInput)
		want string
	}{
		{func(in *SilenceInput) { in.Matchers = nil }, "matchers: at least one"},
		{func(in *SilenceInput) { in.Matchers = []string{"HighCPU"} }, `"HighCPU": want label="value"`},
		{func(in *SilenceInput) { in.Matchers = []string{`alertname=~".*"`} }, "silence every alert"},
		{func(in *SilenceInput) { in.Matchers = []string{`role!="db"`} }, "silence every alert"},
		{func(in *SilenceInput) { in.CreatedBy = " " }, "created_by: say who"},
		{func(in *SilenceInput) { in.Comment = "" }, "comment: say why"},
		{func(in *SilenceInput) { in.Comment = strings.Repeat("x", 1001) }, "comment: at most 1000"},
		{func(in *SilenceInput) { in.Duration = 0 }, "ends_at or duration"},
		{func(in *SilenceInput) { in.EndsAt = now.Add(time.Hour) }, "not both"},
		{func(in *SilenceInput) { in.Duration = Duration(-time.Hour) }, "must be positive"},
		{func(in *SilenceInput) { in.Duration, in.EndsAt = 0, now.Add(-time.Minute) }, "is not after the start"},
	} {
		in := ok
		tc.edit(&in)
		_, err := in.Silence(now)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", in, err, tc.want)
		}
	}
}

// Silences are kept in vigil.db: a restart finds them, an expired one is
// listed as such until its retention has passed, and then forgotten.
func TestSilencesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	in := SilenceInput{Matchers: []string{`source="host/a"`}, Duration: Duration(2 * time.Hour), CreatedBy: "ana", Comment: "disk swap"}
	kept, err := CreateSilence(ctx, db, in, now)
	if err != nil {
		t.Fatal(err)
	}
	old, err := CreateSilence(ctx, db, in, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ExpireSilence(ctx, db, old.ID, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list, err := ListSilences(ctx, db, now.Add(2*time.Minute))
	if err != nil || len(list) != 2 || list[0].ID != kept.ID || list[0].State(now) != SilenceActive ||
		list[1].ID != old.ID || list[1].State(now.Add(2*time.Minute)) != SilenceExpired {
		t.Fatalf("after a restart: %+v %v", list, err)
	}
	if _, err := ExpireSilence(ctx, db, "sil_nope", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expiring a silence that is not there: %v", err)
	}
	// Six days on, a new silence forgets the expired one, in the file too.
	if _, err := CreateSilence(ctx, db, in, now.Add(6*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	all, _ := db.Silences(ctx)
	for _, s := range all {
		if s.ID == old.ID || s.ID == kept.ID {
			t.Fatalf("a silence past its retention is still kept: %+v", s)
		}
	}
	if len(all) != 1 {
		t.Fatalf("%d silences, want the newest", len(all))
	}
}

// The evaluator marks the alerts silences mute, and the outbox sends
// what a person on call expects:
//   - an alert that fires while silenced sends nothing, and repeats
//     nothing, however long it fires;
//   - when its silence ends while it still fires, its firing is sent then,
//     once, and its repeats count from there;
//   - its resolution follows its firing, silenced or not;
//   - an episode that fires and resolves under a silence sends nothing.
func TestSilencedAlertsSendNothing(t *testing.T) {
	h := newHarness(t, nil, ConfiguredReceiver{Name: "pager", RepeatInterval: time.Hour}, hot)
	db, e, ck, step, received := h.db, h.e, h.ck, h.step, h.receivedAtLeast
	sub, err := h.hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	silence := func() Silence {
		t.Helper()
		s, err := CreateSilence(ctx, db, SilenceInput{Matchers: []string{`alertname="Hot"`, `source="host/a"`},
			Duration: Duration(24 * time.Hour), CreatedBy: "ana", Comment: "maintenance"}, ck.t)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expire := func(s Silence) {
		t.Helper()
		if _, err := ExpireSilence(ctx, db, s.ID, ck.t); err != nil {
			t.Fatal(err)
		}
	}
	transitions := func() []string {
		var out []string
		for {
			select {
			case ev := <-sub.C():
				var b struct{ Transition string }
				json.Unmarshal(ev.JSON(), &b)
				out = append(out, b.Transition)
			default:
				return out
			}
		}
	}

	s1 := silence()
	step(0, 99) // fires, muted
	if a := e.Active(); len(a) != 1 || !slices.Equal(a[0].SilencedBy, []string{s1.ID}) || !a[0].Muted {
		t.Fatalf("a silenced alert: %+v", a)
	}
	step(2*time.Hour, 99) // two intervals of firing: no repeats while silenced
	step(time.Minute, 99)
	if g := transitions(); !slices.Equal(g, []string{StateFiring}) {
		t.Fatalf("announced %v, want the firing alone", g)
	}
	expire(s1)
	step(time.Second, 99) // unsilenced: the firing is sent now
	if g := received(1); !slices.Equal(g, []string{EventFiring}) {
		t.Fatalf("got %v, want the firing, late", g)
	}
	if a := e.Active(); len(a) != 1 || a[0].SilencedBy != nil || a[0].Muted {
		t.Fatalf("an unsilenced alert: %+v", a)
	}
	step(30*time.Minute, 99) // half an interval after the late firing: no repeat, though the episode is hours old
	if g := received(1); len(g) != 1 {
		t.Fatalf("got %v: a repeat within an interval of the late firing", g)
	}
	s2 := silence()
	step(time.Second, 99)
	step(2*time.Hour, 99) // silenced after its firing was sent: no repeats either
	step(time.Minute, 99)
	step(time.Minute, 10) // resolves under the silence: its firing was sent, so its resolution is
	if g := received(2); !slices.Equal(g, []string{EventFiring, EventResolved}) {
		t.Fatalf("got %v, want the firing and its resolution", g)
	}
	step(time.Minute, 99) // a new episode under s2: muted
	step(time.Minute, 10) // resolves: nothing to send
	expire(s2)
	step(time.Minute, 10)
	step(time.Minute, 99) // a third episode, not silenced
	if g := received(3); !slices.Equal(g, []string{EventFiring, EventResolved, EventFiring}) {
		t.Fatalf("got %v, want nothing of the episode that fired and resolved under a silence", g)
	}
	want := []string{KindUnsilenced, KindSilenced, StateResolved, StateFiring, StateResolved, StateFiring}
	if g := transitions(); !slices.Equal(g, want) {
		t.Fatalf("announced %v, want %v", g, want)
	}
}
