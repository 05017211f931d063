package dashboard

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/stream"
)

func TestSilencesAPI(t *testing.T) {
	a := newReceiverApp(t)
	code, created := a.do(t, "POST", "/api/v1/silences",
		`{"matchers":["alertname=\"HighCPU\"","source=~\"host/web-.*\""],"duration":"2h","created_by":"ana","comment":"kernel upgrade"}`)
	if code != 201 || created["state"] != alerts.SilenceActive || created["created_by"] != "ana" || !strings.HasPrefix(created["id"].(string), "sil_") {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, pending := a.do(t, "POST", "/api/v1/silences",
		`{"matchers":["role=\"db\""],"starts_at":"`+later+`","duration":"1h","created_by":"bo","comment":"failover drill"}`)
	if code != 201 || pending["state"] != alerts.SilencePending {
		t.Fatalf("create a later one: %d %v", code, pending)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"duration":"1h","created_by":"ana","comment":"x"}`, "matchers: at least one"},
		{`{"matchers":["alertname=~\".*\""],"duration":"1h","created_by":"ana","comment":"x"}`, "silence every alert"},
		{`{"matchers":["alertname=\"X\""],"created_by":"ana","comment":"x"}`, "ends_at or duration"},
		{`{"matchers":["alertname=\"X\""],"duration":"soon","created_by":"ana","comment":"x"}`, `"soon": want a duration`},
		{`{"matchers":["alertname=\"X\""],"duration":"1h","comment":"x"}`, "created_by: say who"},
		{`{"matchers":["alertname=\"X\""],"duration":"1h","created_by":"ana","comment":"x","author":"ana"}`, `unknown field "author"`},
	} {
		if code, got := a.do(t, "POST", "/api/v1/silences", tc.body); code != 400 || !strings.Contains(got["error"].(string), tc.want) {
			t.Errorf("%s: %d %v, want 400 %q", tc.body, code, got, tc.want)
		}
	}
	list := func(q string) []string {
		t.Helper()
		var out struct{ Silences []struct{ ID, State string } }
		if code := getJSON(t, a.srv.URL+"/api/v1/silences"+q, &out); code != 200 {
			t.Fatalf("list%s: %d", q, code)
		}
		var ids []string
		for _, s := range out.Silences {
			ids = append(ids, s.ID+" "+s.State)
		}
		return ids
	}
	if got, want := list(""), []string{id + " active", pending["id"].(string) + " pending"}; !slices.Equal(got, want) {
		t.Fatalf("list: %v, want %v", got, want)
	}
	if code, got := a.do(t, "GET", "/api/v1/silences?state=over", ""); code != 400 {
		t.Fatalf("?state=over: %d %v", code, got)
	}
	if code, got := a.do(t, "GET", "/api/v1/silences/"+id, ""); code != 200 || got["comment"] != "kernel upgrade" {
		t.Fatalf("get: %d %v", code, got)
	}
	if code, got := a.do(t, "GET", "/api/v1/silences/sil_nope", ""); code != 404 || got["error"] != `no silence "sil_nope"` {
		t.Fatalf("get a silence that is not there: %d %v", code, got)
	}
	// Extended: the same silence, a later end; other matchers: a new one,
	// and the old one expired.
	if code, got := a.do(t, "PUT", "/api/v1/silences/"+id, `{"matchers":["source=~\"host/web-.*\"","alertname=\"HighCPU\""],"duration":"5h","created_by":"ana","comment":"longer"}`); code != 200 ||
		got["id"] != id || got["comment"] != "longer" || got["starts_at"] != created["starts_at"] {
		t.Fatalf("extend: %d %v", code, got)
	}
	code, moved := a.do(t, "PUT", "/api/v1/silences/"+pending["id"].(string), `{"matchers":["role=\"db\"","dc=\"fra\""],"duration":"1h","created_by":"bo","comment":"drill"}`)
	if code != 200 || moved["id"] != pending["id"] || moved["state"] != alerts.SilenceActive {
		t.Fatalf("a pending one changed (in place, from now): %d %v", code, moved)
	}
	code, moved = a.do(t, "PUT", "/api/v1/silences/"+pending["id"].(string), `{"matchers":["role=\"db\""],"duration":"1h","created_by":"bo","comment":"drill"}`)
	if code != 200 || moved["id"] == pending["id"] {
		t.Fatalf("an active one's matchers changed: %d %v, want a new silence", code, moved)
	}
	if code, got := a.do(t, "GET", "/api/v1/silences/"+pending["id"].(string), ""); code != 200 || got["state"] != alerts.SilenceExpired {
		t.Fatalf("the one replaced: %d %v, want it expired", code, got)
	}
	if code, got := a.do(t, "PUT", "/api/v1/silences/"+pending["id"].(string), `{"matchers":["role=\"db\""],"duration":"1h","created_by":"bo","comment":"x"}`); code != 400 ||
		!strings.Contains(got["error"].(string), "has expired") {
		t.Fatalf("changing an expired one: %d %v", code, got)
	}
	if code, got := a.do(t, "DELETE", "/api/v1/silences/"+id, ""); code != 200 || got["state"] != alerts.SilenceExpired {
		t.Fatalf("expire: %d %v", code, got)
	}
	if got, want := list("?state=expired"), []string{id + " expired", pending["id"].(string) + " expired"}; !slices.Equal(got, want) {
		t.Fatalf("after expiring: %v, want %v", got, want)
	}
}

// noRedirects is a client that shows a redirect rather than following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// form posts a form, with cookies, and returns the answer's status, its
// Location, its cookies and its body.
func form(t *testing.T, base, path string, vals url.Values, cookies ...*http.Cookie) (int, string, []*http.Cookie, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := send(t, req, cookies)
	return resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), body
}

func get(t *testing.T, base, path string, cookies ...*http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	resp, body := send(t, req, cookies)
	return resp.StatusCode, body
}

// send makes a request with cookies, not following a redirect.
func send(t *testing.T, req *http.Request, cookies []*http.Cookie) (*http.Response, string) {
	t.Helper()
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Signing in exchanges a token for a session cookie that scripts cannot
// read and other sites do not send; it writes with a write token, only
// reads with a read token, and ends when it expires, when it is altered,
// or when its token is taken out of the configuration.
func TestSignIn(t *testing.T) {
	const writeTok, readTok = "write-token-0123456789", "read-token-0123456789"
	db, err := alerts.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	secret := []byte("a session secret of the test's own")
	opts := Options{Silences: db, Tokens: []string{writeTok}, ReadTokens: []string{readTok}, Now: clock, SessionSecret: func() []byte { return secret }}
	a := newTestApp(t, stream.HubOptions{}, opts)
	if code, body := get(t, a.srv.URL, "/login?next=/source/host/a"); code != 200 || !strings.Contains(body, `data-testid="sign-in-form"`) ||
		!strings.Contains(body, `value="/source/host/a"`) {
		t.Fatalf("the form, open to all though reads need a token: %d", code)
	}
	signIn := func(name, token, next string) (int, string, *http.Cookie, string) {
		t.Helper()
		code, loc, cookies, body := form(t, a.srv.URL, "/login", url.Values{"name": {name}, "token": {token}, "next": {next}})
		for _, c := range cookies {
			if c.Name == sessionCookie {
				return code, loc, c, body
			}
		}
		return code, loc, nil, body
	}
	if code, _, c, body := signIn("ana", "wrong-token-0000000000", "/"); code != 401 || c != nil || !strings.Contains(body, "not one of this vigil") {
		t.Fatalf("a wrong token: %d %v", code, c)
	}
	if code, _, c, _ := signIn(" ", writeTok, "/"); code != 400 || c != nil {
		t.Fatalf("no name: %d %v", code, c)
	}
	code, loc, ana, _ := signIn("ana", writeTok, "/source/host/a")
	if code != 303 || loc != "/source/host/a" || ana == nil {
		t.Fatalf("signing in: %d %q %v", code, loc, ana)
	}
	if !ana.HttpOnly || ana.SameSite != http.SameSiteStrictMode || ana.Path != "/" || ana.MaxAge != int(SessionLifetime/time.Second) ||
		strings.Contains(ana.Value, writeTok) {
		t.Fatalf("the cookie: %+v", ana)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`, "/\t/evil.example/x", "/\n/evil.example",
		"javascript:alert(1)", "/ok\\/evil", "http:/evil.example"} {
		if _, loc, _, _ := signIn("ana", writeTok, next); loc != "/" {
			t.Errorf("next=%s went to %q, not back to vigil", next, loc)
		}
	}
	silence := func(c *http.Cookie) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", a.srv.URL+"/api/v1/silences",
			strings.NewReader(`{"matchers":["alertname=\"Hot\""],"duration":"1h","comment":"deploy"}`))
		req.Header.Set("Content-Type", "application/json")
		if c != nil {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		decodeStrict(resp.Body, &out)
		return resp.StatusCode, out
	}
	if code, got := silence(ana); code != 201 || got["created_by"] != "ana" {
		t.Fatalf("a silence made in ana's session: %d %v", code, got)
	}
	if code, _ := silence(nil); code != 401 {
		t.Fatalf("without a session: %d", code)
	}
	forged := *ana
	payload, sig, _ := strings.Cut(ana.Value, ".")
	forged.Value = strings.Replace(payload, payload[:4], "eyJu", 1) + "x." + sig
	if code, _ := silence(&forged); code != 401 {
		t.Fatalf("an altered cookie: %d", code)
	}
	_, _, bo, _ := signIn("bo", readTok, "/")
	if code, _ := silence(bo); code != 401 {
		t.Fatalf("a session of a read token wrote: %d", code)
	}
	// Who holds a read token can sign a session that says it writes: it
	// still does not.
	raised := &http.Cookie{Name: sessionCookie, Value: cookieValue(secret, login{Name: "bo", Write: true, Expires: now.Add(time.Hour).Unix()}, readTok)}
	if code, _ := silence(raised); code != 401 {
		t.Fatalf("a session of a read token that says it writes wrote: %d", code)
	}
	if code, _ := get(t, a.srv.URL, "/api/v1/silences", bo); code != 200 {
		t.Fatalf("a session of a read token reads: %d", code)
	}
	if code, _ := get(t, a.srv.URL, "/api/v1/silences"); code != 401 {
		t.Fatalf("reads need a token or a session: %d", code)
	}
	// A browser at the read gate is asked for the token as a password, and
	// shown the way to sign in.
	req, _ := http.NewRequest("GET", a.srv.URL+"/source/host/a?x=1", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if resp, err := noRedirects.Do(req); err != nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("a page behind the read gate: %v %v", resp, err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `href="/login?next=%2Fsource%2Fhost%2Fa%3Fx%3D1"`) {
			t.Fatalf("the read gate's page: %s", b)
		}
	}
	// A browser that gave the read token for the gate sends it with
	// everything: a write session beside it still writes, in its name.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+readTok))
	req, _ = http.NewRequest("POST", a.srv.URL+"/api/v1/silences", strings.NewReader(`{"matchers":["alertname=\"Hot\""],"duration":"1h","comment":"deploy"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", basic)
	req.AddCookie(ana)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("a write session beside a read token's Basic credentials: %v %v", resp, err)
	}
	// Over HTTPS (here, a proxy that says so) the cookie is Secure and
	// kept to this host (__Host-), and it signs in as well.
	req, _ = http.NewRequest("POST", a.srv.URL+"/login", strings.NewReader(url.Values{"name": {"ana"}, "token": {writeTok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].Name != "__Host-vigil_session" || !cs[0].Secure || cs[0].Path != "/" || cs[0].Domain != "" {
		t.Fatalf("the cookie over HTTPS: %+v", resp.Cookies())
	} else if code, got := silence(cs[0]); code != 201 || got["created_by"] != "ana" {
		t.Fatalf("a write with the __Host- cookie: %d %v", code, got)
	}
	// Another vigil, or this one restarted without ana's token.
	b := newTestApp(t, stream.HubOptions{}, Options{Silences: db, Tokens: []string{"another-token-0123456789"}, Now: clock})
	if code, _, _, _ := form(t, b.srv.URL, "/silences/sil_x/expire", url.Values{}, ana); code != 303 {
		t.Fatalf("a session whose token is gone: %d, want a redirect to sign in", code)
	}
	mu.Lock()
	now = now.Add(SessionLifetime)
	mu.Unlock()
	if code, _ := silence(ana); code != 401 {
		t.Fatalf("an expired session: %d", code)
	}
	code, _, cookies, _ := form(t, a.srv.URL, "/logout", url.Values{})
	if code != 303 || len(cookies) != 1 || cookies[0].MaxAge >= 0 || !cookies[0].HttpOnly {
		t.Fatalf("signing out: %d %+v", code, cookies)
	}
}

// signIn signs in as ana with the first of tokens; none: no session.
func (a *testApp) signIn(t *testing.T, tokens []string) []*http.Cookie {
	t.Helper()
	if len(tokens) == 0 {
		return nil
	}
	_, _, cookies, _ := form(t, a.srv.URL, "/login", url.Values{"name": {"ana"}, "token": {tokens[0]}})
	if len(cookies) != 1 {
		t.Fatalf("signing in: %v", cookies)
	}
	return cookies
}

// recordingAlerts is one firing alert, and the acknowledgements made.
type recordingAlerts struct {
	fakeAlerts
	mu   sync.Mutex
	acks []string
}

func (r *recordingAlerts) Ack(ctx context.Context, fp, by string) (alerts.Alert, error) {
	r.mu.Lock()
	r.acks = append(r.acks, fp+" "+by)
	r.mu.Unlock()
	return r.fakeAlerts.Ack(ctx, fp, by)
}

// The page's buttons: shown to who may write, sending who may not to
// sign in first; "Silence 1 h" silences the alert by its rule, source and
// metric, in the name of who is signed in.
func TestPageButtons(t *testing.T) {
	const tok = "write-token-0123456789"
	hot := alerts.Alert{Fingerprint: "fp1", Rule: "Hot", Source: "host/a", Metric: "cpu.percent", State: alerts.StateFiring,
		Value: 97, Threshold: 90, Op: ">", Severity: "critical", StartedAt: time.Now()}
	for _, tc := range []struct {
		name   string
		tokens []string
	}{{"writes open", nil}, {"tokens", []string{tok}}} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := alerts.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			rec := &recordingAlerts{fakeAlerts: fakeAlerts{active: []alerts.Alert{hot}}}
			a := newTestApp(t, stream.HubOptions{}, Options{Silences: db, Alerts: rec, Tokens: tc.tokens})
			a.store.Append(collector.Sample{Source: "host/a", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 97})})
			var cookies []*http.Cookie
			who := "anonymous"
			_, page := get(t, a.srv.URL, "/")
			if tc.tokens != nil {
				if strings.Contains(page, `data-testid="silence"`) || !strings.Contains(page, "Sign in to acknowledge or silence") {
					t.Fatal("the buttons are shown to who may not use them")
				}
				code, loc, _, _ := form(t, a.srv.URL, "/alerts/fp1/silence", url.Values{"next": {"/source/host/a"}})
				if code != 303 || loc != "/login?next="+url.QueryEscape("/source/host/a") {
					t.Fatalf("a button without a session: %d %q, want to sign in and come back", code, loc)
				}
				_, _, cookies, _ = form(t, a.srv.URL, "/login", url.Values{"name": {"ana"}, "token": {tok}})
				who = "ana"
				_, page = get(t, a.srv.URL, "/", cookies...)
				if !strings.Contains(page, `data-testid="viewer"`) || !strings.Contains(page, ">ana<") {
					t.Fatal("the page does not say who is signed in")
				}
			}
			if !strings.Contains(page, `data-testid="silence"`) || !strings.Contains(page, `data-testid="ack"`) {
				t.Fatal("no buttons for who may write")
			}
			code, loc, _, _ := form(t, a.srv.URL, "/alerts/fp1/silence", url.Values{"next": {"/source/host/a"}}, cookies...)
			if code != 303 || loc != "/source/host/a" {
				t.Fatalf("silence: %d %q", code, loc)
			}
			list, _ := db.Silences(context.Background())
			if len(list) != 1 || !slices.Equal(list[0].Matchers, []string{`alertname="Hot"`, `source="host/a"`, `metric="cpu.percent"`}) ||
				list[0].CreatedBy != who || list[0].EndsAt.Sub(list[0].StartsAt) != time.Hour {
				t.Fatalf("the silence made: %+v", list)
			}
			if code, _, _, _ := form(t, a.srv.URL, "/alerts/fp1/ack", url.Values{"next": {"/"}}, cookies...); code != 303 ||
				!slices.Equal(rec.acks, []string{"fp1 " + who}) {
				t.Fatalf("acknowledge: %d %v", code, rec.acks)
			}
			_, page = get(t, a.srv.URL, "/", cookies...)
			if !strings.Contains(page, `data-testid="silence-row"`) || !strings.Contains(page, `data-testid="expire"`) {
				t.Fatal("the page does not list the silence")
			}
			if code, _, _, body := form(t, a.srv.URL, "/alerts/nope/silence", url.Values{"next": {"/"}}, cookies...); code != 404 ||
				!strings.Contains(body, "no pending, firing or nodata alert") {
				t.Fatalf("silencing an alert that is not active: %d", code)
			}
			if code, _, _, _ := form(t, a.srv.URL, "/silences/"+list[0].ID+"/expire", url.Values{"next": {"/"}}, cookies...); code != 303 {
				t.Fatalf("expire: %d", code)
			}
			if list, _ := alerts.ListSilences(context.Background(), db, time.Now()); len(list) != 1 || list[0].State(time.Now()) != alerts.SilenceExpired {
				t.Fatalf("after expiring: %+v", list)
			}
		})
	}
}
