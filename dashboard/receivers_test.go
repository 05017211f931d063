package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

type receiverApp struct {
	*testApp
	db *alerts.DB
	d  *alerts.Dispatcher
}

func newReceiverApp(t *testing.T, tokens ...string) *receiverApp {
	db, err := alerts.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := &alerts.Dispatcher{DB: db, Client: alerts.NewClient([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 2*time.Second)}
	a := newTestApp(t, stream.HubOptions{}, Options{Receivers: &alerts.Receivers{Outbox: db}, Silences: db, Alerts: fakeAlerts{}, Tokens: tokens,
		PushKey: func() string { return "BPublicKey" }})
	return &receiverApp{testApp: a, db: db, d: d}
}

func (a *receiverApp) do(t *testing.T, method, path, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// newEchoReceiver starts a receiver that echoes verification challenges,
// or does not.
func newEchoReceiver(t *testing.T, echo bool) *vigiltest.Receiver {
	return vigiltest.NewReceiver(t, func(w http.ResponseWriter, req vigiltest.Request, _ int) {
		var ev struct {
			Type string
			Data struct{ Challenge string }
		}
		json.Unmarshal(req.Body, &ev)
		if ev.Type == alerts.EventVerify && echo {
			json.NewEncoder(w).Encode(map[string]string{"challenge": ev.Data.Challenge})
		}
	})
}

// dispatch runs the dispatcher, as vigil does, until the receiver has had
// n requests, and stops it: attempts under way are recorded before it
// returns.
func (a *receiverApp) dispatch(t *testing.T, rc *vigiltest.Receiver, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	vigiltest.Eventually(t, 10*time.Second, fmt.Sprintf("%d requests at the receiver", n), func() bool { return len(rc.Requests()) >= n })
}

// body decodes the data of the receiver's n-th request (from 0).
func body(t *testing.T, rc *vigiltest.Receiver, n int) (typ string, data map[string]any) {
	t.Helper()
	var ev struct {
		Type string
		Data map[string]any
	}
	if err := json.Unmarshal(rc.Requests()[n].Body, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Type, ev.Data
}

func TestReceiverLifecycle(t *testing.T) {
	a := newReceiverApp(t)
	rc := newEchoReceiver(t, true)
	code, sub := a.do(t, "POST", "/api/v1/receivers", `{"url":"`+rc.URL+`","events":["alert.*","webhook.test"],"description":"ops bridge"}`)
	secret, _ := sub["secret"].(string)
	id, _ := sub["id"].(string)
	if code != 201 || !strings.HasPrefix(secret, "whsec_") || sub["status"] != alerts.ReceiverPending || sub["format"] != "standard" {
		t.Fatalf("create: %d %v", code, sub)
	}
	// The secret is shown once.
	if _, got := a.do(t, "GET", "/api/v1/receivers/"+id, ""); got["secret"] != nil {
		t.Fatal("secret shown again")
	}
	if _, list := a.do(t, "GET", "/api/v1/receivers", ""); strings.Contains(toJSON(list), secret) {
		t.Fatal("secret in the list")
	}
	// The receiver echoes the challenge: it becomes active. The
	// verification names it receiver_id (and subscription_id, its name
	// before, for receivers written then).
	a.dispatch(t, rc, 1)
	if typ, data := body(t, rc, 0); typ != alerts.EventVerify || data["receiver_id"] != id || data["subscription_id"] != id {
		t.Fatalf("verification: %s %v", typ, data)
	}
	if _, got := a.do(t, "GET", "/api/v1/receivers/"+id, ""); got["status"] != alerts.ReceiverActive || got["backlog"] != 0.0 {
		t.Fatalf("after verification: %v", got)
	}
	// An alert fires: until the dispatcher starts on it, it is backlog.
	if err := a.db.SaveTransitions(context.Background(), []alerts.Transition{{Kind: alerts.StateFiring,
		Alert: alerts.Alert{Fingerprint: "f1", Rule: "Hot", Source: "host/a", Metric: "cpu.percent", State: alerts.StateFiring, UpdatedAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	if _, got := a.do(t, "GET", "/api/v1/receivers/"+id, ""); got["backlog"] != 1.0 {
		t.Fatalf("backlog after an alert: %v", got["backlog"])
	}
	a.dispatch(t, rc, 2)
	if _, got := a.do(t, "GET", "/api/v1/receivers/"+id, ""); got["backlog"] != 0.0 {
		t.Fatalf("backlog once sent: %v", got["backlog"])
	}
	// A test event: 202 with a delivery id, then its state by polling.
	code, acc := a.do(t, "POST", "/api/v1/receivers/"+id+"/test", "")
	did, _ := acc["delivery_id"].(string)
	if code != 202 || did == "" || acc["status_url"] != "/api/v1/deliveries/"+did {
		t.Fatalf("test: %d %v", code, acc)
	}
	if _, d := a.do(t, "GET", "/api/v1/deliveries/"+did, ""); d["state"] != alerts.DeliveryQueued {
		t.Fatalf("queued delivery: %v", d)
	}
	a.dispatch(t, rc, 3)
	_, d := a.do(t, "GET", "/api/v1/deliveries/"+did, "")
	attempts, _ := d["attempts"].([]any)
	if d["state"] != alerts.DeliveryDelivered || len(attempts) != 1 || d["event_type"] != alerts.EventTest {
		t.Fatalf("delivered: %v", d)
	}
	if typ, data := body(t, rc, 2); typ != alerts.EventTest || data["receiver_id"] != id {
		t.Fatalf("test event: %s %v", typ, data)
	}
	if _, ds := a.do(t, "GET", "/api/v1/receivers/"+id+"/deliveries", ""); len(ds["deliveries"].([]any)) != 3 {
		t.Fatalf("deliveries of the receiver: %v", ds)
	}
	// A delivered delivery cannot be retried.
	if code, _ := a.do(t, "POST", "/api/v1/deliveries/"+did+"/retry", ""); code != 409 {
		t.Fatalf("retry of a delivered one: %d", code)
	}
	// Rotation: a new secret, shown once; the old one still signs for a day.
	code, rot := a.do(t, "POST", "/api/v1/receivers/"+id+"/rotate-secret", "")
	if code != 200 || rot["secret"] == secret || !strings.HasPrefix(rot["secret"].(string), "whsec_") {
		t.Fatalf("rotate: %d %v", code, rot)
	}
	// Update, then delete.
	if code, up := a.do(t, "PUT", "/api/v1/receivers/"+id, `{"format":"alertmanager","status":"disabled"}`); code != 200 || up["format"] != "alertmanager" || up["status"] != "disabled" {
		t.Fatalf("update: %d %v", code, up)
	}
	if code, _ := a.do(t, "DELETE", "/api/v1/receivers/"+id, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := a.do(t, "GET", "/api/v1/receivers/"+id, ""); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestReceiverNotVerifiedStaysPending(t *testing.T) {
	a := newReceiverApp(t)
	rc := newEchoReceiver(t, false)
	_, sub := a.do(t, "POST", "/api/v1/receivers", `{"url":"`+rc.URL+`"}`)
	a.dispatch(t, rc, 1)
	id := sub["id"].(string)
	if _, got := a.do(t, "GET", "/api/v1/receivers/"+id, ""); got["status"] != alerts.ReceiverPending {
		t.Fatalf("unverified receiver: %v", got)
	}
	if code, _ := a.do(t, "PUT", "/api/v1/receivers/"+id, `{"status":"active"}`); code != 400 {
		t.Fatalf("activating an unverified receiver: %d", code)
	}
}

func TestReceiverBadInput(t *testing.T) {
	a := newReceiverApp(t)
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"url":`, 400, "bad JSON"},
		{`{"url":"http://x","colour":"red"}`, 400, "unknown field"},
		{`{"url":"ftp://x"}`, 400, "url:"},
		{`{"url":"http://user:pw@x"}`, 400, "url:"},
		{`{}`, 400, "url: required"},
		{`{"url":"http://x","events":["alert.fired"]}`, 400, "events:"},
		{`{"url":"http://x","events":[]}`, 400, "events:"},
		{`{"url":"http://x","format":"xml"}`, 400, "format:"},
		{`{"url":"http://x"} {"again":1}`, 400, "unexpected data"},
		{`{"url":"http://x","description":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "1 MiB"},
	} {
		code, body := a.do(t, "POST", "/api/v1/receivers", tc.body)
		msg, _ := body["error"].(string)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%.40s: %d %q, want %d %q", tc.body, code, msg, tc.code, tc.want)
		}
	}
	if _, list := a.do(t, "GET", "/api/v1/receivers", ""); len(list["receivers"].([]any)) != 0 {
		t.Fatalf("bad input changed something: %v", list)
	}
	for path, want := range map[string]string{"/api/v1/receivers/nope": `no receiver "nope"`, "/api/v1/deliveries/nope": `no delivery "nope"`,
		"/api/v1/receivers/nope/deliveries": `no receiver "nope"`} {
		if code, body := a.do(t, "GET", path, ""); code != 404 || body["error"] != want {
			t.Errorf("%s: %d %v, want 404 %q", path, code, body, want)
		}
	}
}

// TestConfiguredReceiverIsReadOnly: a receiver from the file is changed
// in the file. The API refuses to change, delete or rotate it — what it
// did would be undone at the next start — and says where to; it may be
// read and sent a test event.
func TestConfiguredReceiverIsReadOnly(t *testing.T) {
	a := newReceiverApp(t)
	rc := newEchoReceiver(t, false)
	rs := &alerts.Receivers{Outbox: a.db}
	if err := rs.Configure(context.Background(), []alerts.ConfiguredReceiver{{Name: "ops", URL: rc.URL, Secret: alerts.NewSecret()}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/receivers/cfg-ops", `{"status":"disabled"}`},
		{"DELETE", "/api/v1/receivers/cfg-ops", ""},
		{"POST", "/api/v1/receivers/cfg-ops/rotate-secret", ""},
	} {
		code, body := a.do(t, tc.method, tc.path, tc.body)
		if msg, _ := body["error"].(string); code != 409 || !strings.Contains(msg, "configured in the file") || !strings.Contains(msg, `alerts.receivers (name "ops")`) {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, code, body)
		}
	}
	if code, got := a.do(t, "GET", "/api/v1/receivers/cfg-ops", ""); code != 200 || got["status"] != alerts.ReceiverActive {
		t.Fatalf("after the refusals: %d %v", code, got)
	}
	if code, _ := a.do(t, "POST", "/api/v1/receivers/cfg-ops/test", ""); code != 202 {
		t.Fatalf("test event: %d", code)
	}
}

func TestWritesNeedTokenOnceConfigured(t *testing.T) {
	const token = "s3cret-token-0123456789"
	a := newReceiverApp(t, token)
	rc := newEchoReceiver(t, true)
	body := `{"url":"` + rc.URL + `"}`
	for _, tc := range []struct {
		header []string
		want   string
	}{
		{nil, "this request needs Authorization: Bearer <token> (auth.tokens)"},
		{[]string{"Authorization", "Bearer wrong-token-000000000"}, "the token is not one of auth.tokens"},
		{[]string{"Authorization", token}, "Authorization must be Bearer <token>, or Basic with the token as the password"},
	} {
		if code, got := a.do(t, "POST", "/api/v1/receivers", body, tc.header...); code != 401 || got["error"] != tc.want {
			t.Errorf("POST with %v: %d %v, want 401 %q", tc.header, code, got, tc.want)
		}
	}
	if code, _ := a.do(t, "POST", "/api/v1/receivers", body, "Authorization", "Bearer "+token); code != 201 {
		t.Fatalf("POST with the token: %d", code)
	}
	if code, _ := a.do(t, "GET", "/api/v1/receivers", ""); code != 200 {
		t.Fatalf("reads stay open: %d", code)
	}
}

// TestReceiverURLsRedacted: webhook targets often carry their token
// in the URL (user:password, ?token=, or the path, as Slack's do). The open
// GET shows only the scheme and host; a request with a valid token sees
// the whole URL.
func TestReceiverURLsRedacted(t *testing.T) {
	const token = "0123456789abcdef-token"
	const target = "https://ops:pa55word@hooks.example.com/services/T00/B00/SECRETPATH?token=abc123"
	for _, tokens := range [][]string{nil, {token}} {
		a := newReceiverApp(t, tokens...)
		configured := []alerts.ConfiguredReceiver{{Name: "ops", URL: target, Secret: alerts.NewSecret(),
			Template: `{"routing_key": "KEYINTEMPLATE", "title": {{json .Title}}}`}} // a key a service wants in the body
		if err := (&alerts.Receivers{Outbox: a.db}).Configure(context.Background(), configured); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/api/v1/receivers", "/api/v1/receivers/cfg-ops"} {
			_, open := a.do(t, "GET", path, "")
			body := toJSON(open)
			for _, secret := range []string{"pa55word", "SECRETPATH", "abc123", "ops:", "KEYINTEMPLATE"} {
				if strings.Contains(body, secret) {
					t.Errorf("tokens %v, GET %s without a token shows %q: %s", tokens, path, secret, body)
				}
			}
			if !strings.Contains(body, "https://hooks.example.com/") {
				t.Errorf("GET %s: the host should still show: %s", path, body)
			}
			if tokens != nil {
				_, whole := a.do(t, "GET", path, "", "Authorization", "Bearer "+token)
				if !strings.Contains(toJSON(whole), "SECRETPATH?token=abc123") {
					t.Errorf("GET %s with a valid token: %s", path, toJSON(whole))
				}
			}
		}
	}
}

// TestSubscriptionsPathsStillServed: /api/v1/subscriptions, the receivers
// API's path from before "receiver" was the one name, is served by the
// same handlers.
func TestSubscriptionsPathsStillServed(t *testing.T) {
	a := newReceiverApp(t)
	code, rcv := a.do(t, "POST", "/api/v1/subscriptions", `{"url":"http://127.0.0.1:9/hook"}`)
	id, _ := rcv["id"].(string)
	if code != 201 || id == "" {
		t.Fatalf("create: %d %v", code, rcv)
	}
	if _, list := a.do(t, "GET", "/api/v1/subscriptions", ""); !strings.Contains(toJSON(list["receivers"]), id) {
		t.Fatalf("list: %v", list)
	}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/receivers/" + id, "", 200},
		{"GET", "/api/v1/subscriptions/" + id, "", 200},
		{"PUT", "/api/v1/subscriptions/" + id, `{"description":"old path"}`, 200},
		{"POST", "/api/v1/subscriptions/" + id + "/rotate-secret", "", 200},
		{"POST", "/api/v1/subscriptions/" + id + "/test", "", 202},
		{"GET", "/api/v1/subscriptions/" + id + "/deliveries", "", 200},
		{"DELETE", "/api/v1/subscriptions/" + id, "", 204},
		{"GET", "/api/v1/receivers/" + id, "", 404},
	} {
		if code, out := a.do(t, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, code, out, tc.want)
		}
	}
}

// A receiver subscribed through the API can pick its alerts and ask for
// repeats; bad ones are refused with what is wrong.
func TestReceiverMatchAndRepeatThroughTheAPI(t *testing.T) {
	a := newReceiverApp(t)
	code, rcv := a.do(t, "POST", "/api/v1/receivers", `{"url":"http://127.0.0.1:9/hook","match":["severity=\"critical\""],"repeat_interval":"2h"}`)
	if code != 201 || rcv["repeat_interval"] != "2h0m0s" || fmt.Sprint(rcv["match"]) != `[severity="critical"]` {
		t.Fatalf("create: %d %v", code, rcv)
	}
	id, _ := rcv["id"].(string)
	code, got := a.do(t, "PUT", "/api/v1/receivers/"+id, `{"match":[],"repeat_interval":"0s"}`)
	if code != 200 || got["repeat_interval"] != nil || got["match"] != nil {
		t.Fatalf("update: %d %v", code, got)
	}
	code, got = a.do(t, "PUT", "/api/v1/receivers/"+id, `{"group_wait":"30s","group_by":["role"]}`)
	if code != 200 || got["group_wait"] != "30s" || fmt.Sprint(got["group_by"]) != "[role]" {
		t.Fatalf("grouping: %d %v", code, got)
	}
	for body, want := range map[string]string{
		`{"url":"http://127.0.0.1:9/x","group_wait":"1h"}`:             "group_wait: 1h0m0s is not between 0s and 10m0s",
		`{"url":"http://127.0.0.1:9/x","group_by":["role"]}`:           "group_by: groups only with a group_wait",
		`{"url":"http://127.0.0.1:9/x","match":["team==db"]}`:          "match: ",
		`{"url":"http://127.0.0.1:9/x","repeat_interval":"10s"}`:       "repeat_interval: 10s is shorter",
		`{"url":"http://127.0.0.1:9/x","repeat_interval":"sometimes"}`: "want a duration",
	} {
		code, res := a.do(t, "POST", "/api/v1/receivers", body)
		if code != 400 || !strings.Contains(fmt.Sprint(res["error"]), want) {
			t.Errorf("%s: %d %v, want 400 with %q", body, code, res, want)
		}
	}
}
