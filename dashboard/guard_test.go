package dashboard

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"vigil/alerts"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// writes lists every request that changes something, with a body that
// would be accepted from vigil's own origin.
func writes(subID, deliveryID string) []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"POST", "/api/v1/subscriptions", `{"url":"http://127.0.0.1:9/hook"}`},
		{"PUT", "/api/v1/subscriptions/" + subID, `{"description":"changed"}`},
		{"DELETE", "/api/v1/subscriptions/" + subID, ""},
		{"POST", "/api/v1/subscriptions/" + subID + "/rotate-secret", ""},
		{"POST", "/api/v1/subscriptions/" + subID + "/test", ""},
		{"POST", "/api/v1/deliveries/" + deliveryID + "/retry", ""},
		{"POST", "/api/v1/alerts/fp1/ack", `{"by":"mallory"}`},
		{"POST", "/api/v1/silences", `{"matchers":["alertname=\"X\""],"duration":"1h","created_by":"mallory","comment":"x"}`},
		{"DELETE", "/api/v1/silences/sil_x", ""},
		// The page's buttons and sign-in, which are forms.
		{"POST", "/alerts/fp1/ack", "next=/"},
		{"POST", "/alerts/fp1/silence", "next=/"},
		{"POST", "/silences/sil_x/expire", "next=/"},
		{"POST", "/login", "name=mallory&token=x"},
		{"POST", "/logout", ""},
		{"POST", "/api/v1/push/subscriptions", `{"endpoint":"https://push.example/x","keys":{"p256dh":"x","auth":"y"}}`},
		{"DELETE", "/api/v1/push/subscriptions", `{"endpoint":"https://push.example/x"}`},
	}
}

// TestCrossSiteWritesRefused: a page on another site can make a visitor's
// browser send "simple" requests (no-cors, text/plain) to vigil. With no
// tokens configured those used to go through; every write endpoint must
// refuse them and change nothing.
func TestCrossSiteWritesRefused(t *testing.T) {
	a := newReceiverApp(t)
	rc := newEchoReceiver(t, true)
	code, sub := a.do(t, "POST", "/api/v1/subscriptions", `{"url":"`+rc.URL+`"}`, "Content-Type", "application/json")
	if code != 201 {
		t.Fatalf("create from the same origin: %d %v", code, sub)
	}
	id := sub["id"].(string)
	before := toJSON(mustGet(t, a, "/api/v1/subscriptions"))

	for _, w := range writes(id, "msg_x") {
		for name, h := range map[string][]string{
			"sec-fetch-site cross-site": {"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example", "Content-Type", "text/plain"},
			"sec-fetch-site same-site":  {"Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.2:8080", "Content-Type", "text/plain"},
			"origin only (old browser)": {"Origin", "http://evil.example", "Content-Type", "text/plain"},
			"json from another site":    {"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example", "Content-Type", "application/json"},
		} {
			code, body := a.do(t, w.method, w.path, w.body, h...)
			if code != http.StatusForbidden || !strings.Contains(fmt.Sprint(body["error"]), "cross-origin") {
				t.Errorf("%s %s (%s): %d %v, want 403 cross-origin", w.method, w.path, name, code, body)
			}
		}
	}
	if after := toJSON(mustGet(t, a, "/api/v1/subscriptions")); after != before {
		t.Fatalf("a refused request changed the receivers:\n%s\n%s", before, after)
	}
	// The same request from vigil's own page is fine.
	code, _ = a.do(t, "PUT", "/api/v1/subscriptions/"+id, `{"description":"mine"}`,
		"Sec-Fetch-Site", "same-origin", "Origin", a.srv.URL, "Content-Type", "application/json")
	if code != 200 {
		t.Fatalf("same-origin write: %d", code)
	}
}

func mustGet(t *testing.T, a *receiverApp, path string) map[string]any {
	t.Helper()
	code, body := a.do(t, "GET", path, "")
	if code != 200 {
		t.Fatalf("GET %s: %d %v", path, code, body)
	}
	return body
}

// TestJSONBodiesNeedJSONContentType: a body that is not declared as JSON
// is refused (a form or text/plain body is what a cross-site page can send
// without a preflight).
func TestJSONBodiesNeedJSONContentType(t *testing.T) {
	a := newReceiverApp(t)
	body := `{"url":"http://127.0.0.1:9/hook"}`
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
		code, out := a.do(t, "POST", "/api/v1/subscriptions", body, "Content-Type", ct)
		if code != http.StatusUnsupportedMediaType || !strings.Contains(fmt.Sprint(out["error"]), "application/json") {
			t.Errorf("Content-Type %q: %d %v, want 415", ct, code, out)
		}
	}
	if _, list := a.do(t, "GET", "/api/v1/subscriptions", ""); len(list["receivers"].([]any)) != 0 {
		t.Fatalf("a refused body created a receiver: %v", list)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		if code, out := a.do(t, "POST", "/api/v1/subscriptions", body, "Content-Type", ct); code != 201 {
			t.Errorf("Content-Type %q: %d %v, want 201", ct, code, out)
		}
	}
	// An acknowledgement may have no body at all; with one, it is JSON.
	b := newTestApp(t, stream.HubOptions{}, Options{Alerts: fakeAlerts{active: []alerts.Alert{{Fingerprint: "fp1", State: alerts.StateFiring}}}})
	for ct, want := range map[string]int{"text/plain": 415, "application/json": 200} {
		req, _ := http.NewRequest("POST", b.srv.URL+"/api/v1/alerts/fp1/ack", strings.NewReader(`{"by":"alice"}`))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("ack with %s: %d, want %d", ct, resp.StatusCode, want)
		}
	}
}

// TestHostHeaderChecked: against DNS rebinding, a vigil on a loopback
// address answers only to loopback names and addresses, and to the names
// in server.allowed_hosts.
func TestHostHeaderChecked(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{Loopback: true, AllowedHosts: []string{"vigil.example.com", "*.dash.example"}})
	port := a.srv.Listener.Addr().(*net.TCPAddr).Port
	for host, want := range map[string]int{
		"127.0.0.1":                          200,
		fmt.Sprintf("127.0.0.1:%d", port):    200,
		"127.0.0.2":                          200,
		fmt.Sprintf("[::1]:%d", port):        200,
		"localhost":                          200,
		fmt.Sprintf("localhost:%d", port):    200,
		"LOCALHOST.":                         200,
		"app.localhost":                      200,
		"vigil.example.com":                  200,
		"vigil.example.com:443":              200,
		"a.dash.example":                     200,
		"evil.example":                       421,
		fmt.Sprintf("evil.example:%d", port): 421,
		"vigil.example.com.evil.example":     421,
		"dash.example":                       421,
		"10.0.0.1":                           421,
		"localhost.evil.example":             421,
		"127.0.0.1.nip.io":                   421,
	} {
		for _, path := range []string{"/", "/api/v1/alerts", "/healthz"} {
			req, _ := http.NewRequest("GET", a.srv.URL+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("Host %q %s: %d, want %d", host, path, resp.StatusCode, want)
			}
			if want == 421 && (!strings.Contains(string(b), "and to the names in server.allowed_hosts") || resp.Header.Get("Content-Type") != "application/json") {
				t.Errorf("Host %q: the answer does not say what to do: %s", host, b)
			}
		}
	}

	// Listening on every interface, any name is accepted unless
	// allowed_hosts says which.
	open := newTestApp(t, stream.HubOptions{}, Options{})
	req, _ := http.NewRequest("GET", open.srv.URL+"/healthz", nil)
	req.Host = "dashboard.internal"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("not loopback, no allowed_hosts: %v %v", resp, err)
	}
	strict := newTestApp(t, stream.HubOptions{}, Options{AllowedHosts: []string{"dashboard.internal"}})
	for host, want := range map[string]int{"dashboard.internal": 200, "other.internal": 421, "192.0.2.7:8080": 200, "localhost": 200} {
		req, _ := http.NewRequest("GET", strict.srv.URL+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("allowed_hosts set, Host %q: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestWebSocketOriginNotFooledByHost: a rebinding page has the same origin
// as the Host it sends, so the socket's same-origin check alone would let
// it in; the Host check stops it first. A page on another origin is
// refused by the origin check.
func TestWebSocketOriginNotFooledByHost(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{Loopback: true})
	port := a.srv.Listener.Addr().(*net.TCPAddr).Port
	ws := "ws" + strings.TrimPrefix(a.srv.URL, "http") + "/ws"
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{fmt.Sprintf("evil.example:%d", port), fmt.Sprintf("http://evil.example:%d", port), 421},
		{fmt.Sprintf("127.0.0.1:%d", port), "http://evil.example", 403},
		{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://localhost:%d", port), 403},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, resp, err := websocket.Dial(ctx, ws, &websocket.DialOptions{Host: tc.host, HTTPHeader: http.Header{"Origin": {tc.origin}}})
		cancel()
		if err == nil {
			c.CloseNow()
			t.Errorf("Host %s Origin %s: connected", tc.host, tc.origin)
			continue
		}
		if resp == nil || resp.StatusCode != tc.want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Host %s Origin %s: %v %v, want %d with a JSON error", tc.host, tc.origin, resp, err, tc.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {a.srv.URL}}})
	if err != nil {
		t.Fatalf("same origin: %v", err)
	}
	c.CloseNow()
}

// TestEveryErrorIsJSON: the error answers that are not an API's own —
// an unknown static file, an unknown source's page, an unknown path — are
// JSON too.
func TestEveryErrorIsJSON(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	for _, path := range []string{"/static/nope.js", "/source/host/nope", "/nowhere"} {
		resp, err := http.Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var e errorBody
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" || e.Error == "" {
			t.Errorf("GET %s: %d %q %+v", path, resp.StatusCode, resp.Header.Get("Content-Type"), e)
		}
	}
}

// TestBearerSchemeCaseInsensitive: RFC 7235 auth schemes are
// case-insensitive.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	const token = "0123456789abcdef-token"
	a := newReceiverApp(t, token)
	body := `{"url":"http://127.0.0.1:9/hook"}`
	for _, h := range []string{"Bearer " + token, "bearer " + token, "BEARER " + token, "Bearer  " + token} {
		if code, out := a.do(t, "POST", "/api/v1/subscriptions", body, "Authorization", h, "Content-Type", "application/json"); code != 201 {
			t.Errorf("Authorization %q: %d %v", h, code, out)
		}
	}
	for _, h := range []string{"Basic " + token, "Bearer" + token, token, "Bearer " + token + "x", "Bearer"} {
		if code, _ := a.do(t, "POST", "/api/v1/subscriptions", body, "Authorization", h, "Content-Type", "application/json"); code != 401 {
			t.Errorf("Authorization %q: %d, want 401", h, code)
		}
	}
}

// TestSlowBodyCutOff: reading a request body has a time limit, also when
// the answer is a 401 that never reads it; the connection is released.
func TestSlowBodyCutOff(t *testing.T) {
	for name, tokens := range map[string][]string{"open": nil, "needs a token": {"0123456789abcdef-token"}} {
		t.Run(name, func(t *testing.T) {
			a := newTestApp(t, stream.HubOptions{}, Options{BodyTimeout: 300 * time.Millisecond, Tokens: tokens,
				Receivers: &alerts.Receivers{Outbox: openDB(t)}})
			conn, err := net.Dial("tcp", a.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /api/v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"url\":")
			// The client sends nothing more. The server must answer (408 or
			// 401) and close the connection rather than wait for the rest.
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			want := http.StatusRequestTimeout
			if tokens != nil {
				want = http.StatusUnauthorized
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("connection still open after the answer: %v", err)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func openDB(t *testing.T) *alerts.DB {
	t.Helper()
	db, err := alerts.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// panickyReceivers crashes on listing receivers.
type panickyReceivers struct{ *alerts.Receivers }

func (panickyReceivers) List(context.Context) ([]alerts.Receiver, error) {
	panic("boom: a bug in a handler")
}

// TestPanicLoggedAndCounted: a crash in a handler is logged at error level
// with its stack, whatever the log level, and counted in /metrics.
func TestPanicLoggedAndCounted(t *testing.T) {
	var logs vigiltest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	a := newTestApp(t, stream.HubOptions{}, Options{Logger: log, Receivers: panickyReceivers{&alerts.Receivers{Outbox: openDB(t)}}})
	if resp, err := http.Get(a.srv.URL + "/api/v1/subscriptions"); err == nil {
		resp.Body.Close()
		t.Fatalf("a crashed request was answered: %s", resp.Status)
	}
	out := logs.String()
	for _, want := range []string{"level=ERROR", "boom: a bug in a handler", "/api/v1/subscriptions", "guard_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	resp, err := http.Get(a.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "vigil_http_panics_total 1\n") {
		t.Fatalf("panic not counted:\n%s", b)
	}
}

// TestReadTokens: with auth.read_tokens set, every read — the stream, the
// API, the pages — needs a token, read or write, as Bearer or as the
// password of Basic (a browser asks for it); health checks and static
// files stay open. A read token writes nothing.
func TestReadTokens(t *testing.T) {
	const read, write = "read-token-0123456789", "write-token-0123456789"
	a := newTestApp(t, stream.HubOptions{}, Options{ReadTokens: []string{read}, Tokens: []string{write}})
	basic := func(tok string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+tok)) }
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", a.srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/api/v1/alerts", "/api/v1/series", "/api/v1/snapshot", "/metrics", "/api/v1/poll?timeout=0s"} {
		for auth, want := range map[string]int{"": 401, "Bearer nope-nope-nope-nope": 401, "Bearer " + read: 200, "Bearer " + write: 200, basic(read): 200, basic("wrong"): 401} {
			if got := get(path, auth); got != want {
				t.Errorf("GET %s with %q: %d, want %d", path, auth, got, want)
			}
		}
	}
	for _, path := range []string{"/healthz", "/static/app.css"} {
		if got := get(path, ""); got != 200 {
			t.Errorf("GET %s without a token: %d", path, got)
		}
	}
	resp, _ := vigiltest.SSE(t, a.srv.URL+"/events", http.Header{"Authorization": {"Bearer " + read}})
	if resp.StatusCode != 200 {
		t.Fatalf("the stream with a read token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", a.srv.URL+"/api/v1/alerts/f1/ack", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+read)
	w, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	w.Body.Close()
	if w.StatusCode != 401 {
		t.Fatalf("a write with a read token: %d", w.StatusCode)
	}
	// Read tokens without write tokens: nobody writes.
	ro := newTestApp(t, stream.HubOptions{}, Options{ReadTokens: []string{read}})
	req, _ = http.NewRequest("POST", ro.srv.URL+"/api/v1/alerts/f1/ack", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+read)
	if w, err := http.DefaultClient.Do(req); err != nil || w.StatusCode != 401 {
		t.Fatalf("a write where only read tokens are set: %v %v", w, err)
	}
}
