package alerts

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostFiring is a firing of rule on a host with a role label.
func hostFiring(rule, host, role string) Transition {
	now := time.Now()
	return Transition{Kind: StateFiring, Alert: Alert{Fingerprint: Fingerprint(rule, host, "cpu.percent"), Rule: rule, Source: host,
		Metric: "cpu.percent", State: StateFiring, Value: 97, Threshold: 90, Op: ">", Severity: "critical",
		Labels: map[string]string{"role": role}, StartedAt: now, UpdatedAt: now}}
}

// recorder is a receiver that keeps each request's body and id, and
// fails the first fail of them with a 503.
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	ids    []string
	fail   int
}

func newRecorder(t *testing.T, fail int) *recorder {
	r := &recorder{fail: fail}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := req.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		r.mu.Lock()
		r.bodies, r.ids = append(r.bodies, b.String()), append(r.ids, req.Header.Get("webhook-id"))
		n := len(r.bodies)
		r.mu.Unlock()
		if n <= r.fail {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bodies)
}

// A receiver with group_wait holds each firing that long and sends those
// that fired together as one message — each group_by group as its own —
// while resolutions go one by one, and each alert keeps a delivery of its
// own, recorded with the group's attempts.
func TestGroupWait(t *testing.T) {
	hook, chat, am := newRecorder(t, 1), newRecorder(t, 0), newRecorder(t, 0)
	db, d := runOutbox(t, nil,
		ConfiguredReceiver{Name: "hook", URL: hook.URL, Secret: NewSecret(), GroupWait: time.Second},
		ConfiguredReceiver{Name: "chat", Type: TypeSlack, URL: chat.URL, GroupWait: time.Second, GroupBy: []string{"role"}},
		ConfiguredReceiver{Name: "am", URL: am.URL, Secret: NewSecret(), Format: FormatAlertmanager, GroupWait: time.Second})
	ctx := context.Background()
	save := func(ts ...Transition) {
		t.Helper()
		if err := db.SaveTransitions(ctx, ts); err != nil {
			t.Fatal(err)
		}
		d.Wake()
	}
	a, b, c := hostFiring("Hot", "host/a", "web"), hostFiring("Hot", "host/b", "web"), hostFiring("DiskFull", "host/c", "db")
	save(a)
	save(b)
	save(c)
	if !within(10*time.Second, func() bool { return len(hook.got()) >= 2 && len(chat.got()) >= 2 && len(am.got()) >= 1 }) {
		t.Fatalf("hook %d, chat %d, am %d requests", len(hook.got()), len(chat.got()), len(am.got()))
	}
	time.Sleep(300 * time.Millisecond) // for one too many, if it came

	// The webhook: one request with the three (failed once, then again as
	// one group with the same webhook-id), data the first as without
	// grouping.
	hooks := hook.got()
	if len(hooks) != 2 || hook.ids[0] != hook.ids[1] {
		t.Fatalf("the webhook got %d requests (ids %v), want one group sent twice", len(hooks), hook.ids)
	}
	var g struct {
		Type     string
		GroupKey string `json:"group_key"`
		Data     struct{ Source string }
		Alerts   []struct{ Source, Rule string }
	}
	json.Unmarshal([]byte(hooks[1]), &g)
	if g.Type != EventFiring || g.Data.Source != "host/a" || len(g.Alerts) != 3 || g.Alerts[2].Rule != "DiskFull" || g.GroupKey != "{}" {
		t.Fatalf("the group: %s", hooks[1])
	}
	ds, _ := db.Deliveries(ctx, "cfg-hook", 10)
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want one an alert", len(ds))
	}
	for _, dl := range ds {
		if dl.State != DeliveryDelivered || len(dl.Attempts) != 2 {
			t.Fatalf("a grouped alert's delivery: %+v", dl)
		}
	}

	// Slack, by role: the two web hosts in one message, the db host in
	// another.
	var titles []string
	for _, body := range chat.got() {
		var m struct{ Text string }
		json.Unmarshal([]byte(body), &m)
		titles = append(titles, m.Text)
	}
	slices.Sort(titles)
	if want := []string{"[FIRING:2] Hot on host/a, host/b", "[FIRING] DiskFull on host/c"}; !slices.Equal(titles, want) {
		t.Fatalf("Slack got %q, want %q", titles, want)
	}

	// Alertmanager's format: its alerts, and the labels they share.
	var amg amBody
	json.Unmarshal([]byte(am.got()[0]), &amg)
	if len(amg.Alerts) != 3 || amg.CommonLabels["severity"] != "critical" || amg.CommonLabels["role"] != "" || amg.CommonLabels["alertname"] != "" {
		t.Fatalf("Alertmanager's group: %s", am.got()[0])
	}

	// A resolution goes on its own, at once.
	res := a
	res.Kind, res.Alert.State, res.Alert.EndedAt = StateResolved, StateInactive, time.Now()
	save(res)
	if !within(5*time.Second, func() bool { return len(chat.got()) == 3 }) {
		t.Fatal("no resolution")
	}
	var m struct{ Text string }
	json.Unmarshal([]byte(chat.got()[2]), &m)
	if m.Text != "[RESOLVED] Hot on host/a" {
		t.Fatalf("the resolution: %q", m.Text)
	}
}

func TestGroupConfig(t *testing.T) {
	for _, tc := range []struct {
		c    ConfiguredReceiver
		want string
	}{
		{ConfiguredReceiver{Name: "a", URL: "https://x.example/h", Secret: NewSecret(), GroupWait: time.Hour}, "group_wait: 1h0m0s is not between 0s and 10m0s"},
		{ConfiguredReceiver{Name: "a", URL: "https://x.example/h", Secret: NewSecret(), GroupBy: []string{"role"}}, "group_by: groups only with a group_wait"},
		{ConfiguredReceiver{Name: "a", URL: "https://x.example/h", Secret: NewSecret(), GroupWait: time.Second, GroupBy: []string{"a-b"}}, `group_by: "a-b" is not a label name`},
		{ConfiguredReceiver{Name: "a", Type: TypePagerDuty, Secret: strings.Repeat("R", 32), GroupWait: time.Second}, "group_wait: PagerDuty keeps one incident per alert"},
	} {
		errs := tc.c.Validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, errs, tc.want)
		}
	}
}
