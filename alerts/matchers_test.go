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

func TestMatchers(t *testing.T) {
	labels := map[string]string{"severity": "critical", "team": "db", "alertname": "DiskFull"}
	for _, c := range []struct {
		in   string
		want bool
		bad  string
	}{
		{in: `severity="critical"`, want: true},
		{in: `severity = critical`, want: true},
		{in: `severity!="critical"`, want: false},
		{in: `team=~"ops|db"`, want: true},
		{in: `team=~"d"`, want: false}, // anchored: the whole value
		{in: `team!~"ops|web"`, want: true},
		{in: `env=""`, want: true}, // a missing label is empty
		{in: `env!=""`, want: false},
		{in: `alertname="Disk\"Full"`, want: false},
		{in: `severity==critical`, bad: "want label"},
		{in: `team=~"("`, bad: "missing closing"},
		{in: `team="open`, bad: "quotes do not close"},
		{in: `1team="x"`, bad: "want label"},
		{in: `team=db,severity=critical`, bad: "one matcher an item"},
		{in: `team=db core`, bad: "quote a value"},
	} {
		m, err := ParseMatcher(c.in)
		switch {
		case c.bad != "":
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("%s: %v, want an error with %q", c.in, err, c.bad)
			}
		case err != nil:
			t.Errorf("%s: %v", c.in, err)
		case m.Matches(labels) != c.want:
			t.Errorf("%s matches %v: %v, want %v", c.in, labels, !c.want, c.want)
		}
	}
}

// Receivers with matchers get only the alerts they match, through the
// outbox: critical ones to the pager, the db team's to its chat.
func TestReceiversMatchAlerts(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{} // path → rules
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notice
		json.NewDecoder(r.Body).Decode(&n)
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], n.Data.Rule)
		mu.Unlock()
	}))
	defer srv.Close()
	db, d := runOutbox(t, nil,
		ConfiguredReceiver{Name: "pager", URL: srv.URL + "/pager", Secret: NewSecret(), Match: []string{`severity="critical"`}},
		ConfiguredReceiver{Name: "db-chat", URL: srv.URL + "/db", Secret: NewSecret(), Match: []string{`team=~"db|storage"`, `severity!="info"`}},
		ConfiguredReceiver{Name: "all", URL: srv.URL + "/all", Secret: NewSecret()})
	ctx := context.Background()
	alert := func(rule, severity, team string) Transition {
		tr := firing(rule)
		tr.Alert.Severity, tr.Alert.Labels = severity, map[string]string{"team": team}
		return tr
	}
	if err := db.SaveTransitions(ctx, []Transition{alert("A", "critical", "web"), alert("B", "warning", "db"),
		alert("C", "info", "db"), alert("D", "critical", "storage")}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	within(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got["/all"]) == 4 })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for path, want := range map[string][]string{"/pager": {"A", "D"}, "/db": {"B", "D"}, "/all": {"A", "B", "C", "D"}} {
		g := slices.Clone(got[path])
		slices.Sort(g)
		if !slices.Equal(g, want) {
			t.Errorf("%s got %v, want %v", path, g, want)
		}
	}
}

// A resolution reaches every receiver its firing reached, though the
// alert's labels changed between them (a rule's severity edited); and an
// event from before labels were kept is matched on its body's.
func TestResolutionFollowsItsFiring(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notice
		json.NewDecoder(r.Body).Decode(&n)
		mu.Lock()
		got = append(got, n.Type+" "+n.Data.Rule)
		mu.Unlock()
	}))
	defer srv.Close()
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "pager", URL: srv.URL, Secret: NewSecret(), Match: []string{`severity="critical"`}})
	ctx := context.Background()
	wait := func(n int) []string {
		within(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n })
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	hot, cool := firing("Hot"), resolvedT("Hot")
	hot.Alert.Severity, cool.Alert.Severity = "critical", "warning"
	if err := db.SaveTransitions(ctx, []Transition{hot}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	wait(1)
	// An old event, its labels column empty: a warning, which the pager
	// does not take, read from its body.
	warn := firing("Warn")
	warn.Alert.Severity = "warning"
	if err := db.SaveTransitions(ctx, []Transition{warn}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.db.Exec(`UPDATE events SET labels = ''`); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveTransitions(ctx, []Transition{cool}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	if g := wait(2); !slices.Equal(g, []string{EventFiring + " Hot", EventResolved + " Hot"}) {
		t.Fatalf("the pager got %v; want Hot's firing and its resolution, not Warn", g)
	}
}
