package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// A service is a local stand-in for a chat or paging service: it checks
// each request the way the real service would refuse it, answers as the
// real one does, and keeps what it got.
type service struct {
	*httptest.Server
	mu   sync.Mutex
	got  []map[string]any // JSON bodies (ntfy: {"body", "title", "priority", "tags", "click", "auth"})
	errs []string
}

func newService(t *testing.T, check func(r *http.Request, body []byte) (map[string]any, error), ok int, answer string) *service {
	s := &service{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, err := check(r, body)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.errs = append(s.errs, err.Error())
			w.WriteHeader(http.StatusBadRequest) // permanent: the delivery dies, and the test says why
			return
		}
		s.got = append(s.got, v)
		w.WriteHeader(ok)
		io.WriteString(w, answer)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *service) bodies() ([]map[string]any, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.got...), append([]string(nil), s.errs...)
}

func jsonBody(r *http.Request, body []byte) (map[string]any, error) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return nil, fmt.Errorf("%s with Content-Type %q, want a POST of JSON", r.Method, r.Header.Get("Content-Type"))
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	return v, nil
}

func str(v any) string { s, _ := v.(string); return s }
func list(v any) []any { l, _ := v.([]any); return l }
func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}
func runes(s string) int { return utf8.RuneCountInString(s) }

// Slack's incoming webhooks: text is required (it is the notification),
// blocks are section and context blocks whose mrkdwn has &, < and >
// escaped (a < starts a link or mention), a section's text at most 3,000
// characters and at most 10 fields of 2,000.
func checkSlack(r *http.Request, body []byte) (map[string]any, error) {
	v, err := jsonBody(r, body)
	if err != nil {
		return nil, err
	}
	if str(v["text"]) == "" {
		return nil, fmt.Errorf("no text")
	}
	blocks := list(v["blocks"])
	if len(blocks) == 0 || len(blocks) > 50 {
		return nil, fmt.Errorf("%d blocks", len(blocks))
	}
	link := regexp.MustCompile(`<https?://[^|>]+\|[^>]+>`)
	for _, b := range blocks {
		b := obj(b)
		var texts []string
		switch str(b["type"]) {
		case "section":
			if t := obj(b["text"]); t != nil {
				texts = append(texts, str(t["text"]))
				if str(t["type"]) != "mrkdwn" || runes(str(t["text"])) > 3000 {
					return nil, fmt.Errorf("section text %v", t)
				}
			}
			if f := list(b["fields"]); len(f) > 10 {
				return nil, fmt.Errorf("%d fields", len(f))
			}
			for _, f := range list(b["fields"]) {
				texts = append(texts, str(obj(f)["text"]))
				if runes(str(obj(f)["text"])) > 2000 {
					return nil, fmt.Errorf("field over 2000")
				}
			}
		case "context":
			for _, e := range list(b["elements"]) {
				texts = append(texts, str(obj(e)["text"]))
			}
		default:
			return nil, fmt.Errorf("block type %q", b["type"])
		}
		for _, t := range texts {
			if strings.ContainsAny(link.ReplaceAllString(t, ""), "<>") {
				return nil, fmt.Errorf("unescaped < or > in mrkdwn %q", t)
			}
		}
	}
	return v, nil
}

// Teams' Workflows webhooks: a message whose attachment is an adaptive
// card (its content type, type and version), with TextBlock and FactSet
// elements.
func checkTeams(r *http.Request, body []byte) (map[string]any, error) {
	v, err := jsonBody(r, body)
	if err != nil {
		return nil, err
	}
	att := list(v["attachments"])
	if str(v["type"]) != "message" || len(att) != 1 || str(obj(att[0])["contentType"]) != "application/vnd.microsoft.card.adaptive" {
		return nil, fmt.Errorf("not a message with an adaptive card: %s", body)
	}
	card := obj(obj(att[0])["content"])
	if str(card["type"]) != "AdaptiveCard" || str(card["version"]) == "" || len(list(card["body"])) == 0 {
		return nil, fmt.Errorf("card %v", card)
	}
	for _, e := range list(card["body"]) {
		if t := str(obj(e)["type"]); t != "TextBlock" && t != "FactSet" {
			return nil, fmt.Errorf("card element %q", t)
		}
	}
	return v, nil
}

// Discord's webhooks: content or embeds; content at most 2,000
// characters, at most 10 embeds, a title at most 256, a description at
// most 4,096, at most 25 fields (name 256, value 1,024), and 6,000 in all.
func checkDiscord(r *http.Request, body []byte) (map[string]any, error) {
	v, err := jsonBody(r, body)
	if err != nil {
		return nil, err
	}
	embeds := list(v["embeds"])
	if runes(str(v["content"])) > 2000 || len(embeds) > 10 || (str(v["content"]) == "" && len(embeds) == 0) {
		return nil, fmt.Errorf("content %d characters, %d embeds", runes(str(v["content"])), len(embeds))
	}
	total := 0
	for _, e := range embeds {
		e := obj(e)
		title, desc, fields := str(e["title"]), str(e["description"]), list(e["fields"])
		if runes(title) > 256 || runes(desc) > 4096 || len(fields) > 25 {
			return nil, fmt.Errorf("embed over its limits")
		}
		total += runes(title) + runes(desc)
		for _, f := range fields {
			n, val := str(obj(f)["name"]), str(obj(f)["value"])
			if n == "" || val == "" || runes(n) > 256 || runes(val) > 1024 {
				return nil, fmt.Errorf("field %v", f)
			}
			total += runes(n) + runes(val)
		}
	}
	if total > 6000 {
		return nil, fmt.Errorf("embeds hold %d characters", total)
	}
	if p := obj(v["allowed_mentions"]); p == nil || len(list(p["parse"])) != 0 {
		return nil, fmt.Errorf("mentions allowed: %v", v["allowed_mentions"])
	}
	return v, nil
}

// Telegram's sendMessage: at /bot<token>/sendMessage, chat_id and text
// (1 to 4,096 characters) required; with parse_mode HTML, only the tags
// it knows, and every other <, > and & escaped.
func checkTelegram(token, chat string) func(r *http.Request, body []byte) (map[string]any, error) {
	return func(r *http.Request, body []byte) (map[string]any, error) {
		if r.URL.Path != "/bot"+token+"/sendMessage" {
			return nil, fmt.Errorf("path %q", r.URL.Path)
		}
		v, err := jsonBody(r, body)
		if err != nil {
			return nil, err
		}
		text := str(v["text"])
		if fmt.Sprint(v["chat_id"]) != chat || text == "" || runes(text) > 4096 || str(v["parse_mode"]) != "HTML" {
			return nil, fmt.Errorf("chat_id %v, parse_mode %v, text %d characters", v["chat_id"], v["parse_mode"], runes(text))
		}
		tags := regexp.MustCompile(`</?b>|<a href="[^"<>]*">|</a>`)
		rest := tags.ReplaceAllString(text, "")
		if strings.ContainsAny(rest, "<>") {
			return nil, fmt.Errorf("a tag Telegram does not take, or a bare < or >, in %q", text)
		}
		if strings.Contains(regexp.MustCompile(`&(?:lt|gt|amp|quot|#[0-9]+);`).ReplaceAllString(rest, ""), "&") {
			return nil, fmt.Errorf("a bare & in %q", text)
		}
		return v, nil
	}
}

// ntfy: a POST to the topic's URL whose body is the message; Title,
// Priority (1 to 5), Tags and Click are headers; a token is a bearer.
func checkNtfy(token string) func(r *http.Request, body []byte) (map[string]any, error) {
	return func(r *http.Request, body []byte) (map[string]any, error) {
		p, err := strconv.Atoi(r.Header.Get("Priority"))
		if r.Method != http.MethodPost || r.URL.Path != "/vigil-alerts" || len(body) == 0 || len(body) > 4096 ||
			r.Header.Get("Title") == "" || err != nil || p < 1 || p > 5 {
			return nil, fmt.Errorf("%s %s, title %q, priority %q, %d bytes", r.Method, r.URL.Path, r.Header.Get("Title"), r.Header.Get("Priority"), len(body))
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			return nil, fmt.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		return map[string]any{"body": string(body), "title": r.Header.Get("Title"), "priority": p, "tags": r.Header.Get("Tags"), "click": r.Header.Get("Click")}, nil
	}
}

// PagerDuty's Events API v2: routing_key and event_action always; a
// trigger needs payload.summary (1,024 characters at most), source and a
// known severity; a resolve needs the dedup_key of what it resolves.
func checkPagerDuty(key string) func(r *http.Request, body []byte) (map[string]any, error) {
	return func(r *http.Request, body []byte) (map[string]any, error) {
		v, err := jsonBody(r, body)
		if err != nil {
			return nil, err
		}
		if str(v["routing_key"]) != key {
			return nil, fmt.Errorf("routing_key %q", v["routing_key"])
		}
		switch str(v["event_action"]) {
		case "trigger":
			p := obj(v["payload"])
			sev := str(p["severity"])
			if s := str(p["summary"]); s == "" || runes(s) > 1024 || str(p["source"]) == "" ||
				(sev != "critical" && sev != "error" && sev != "warning" && sev != "info") {
				return nil, fmt.Errorf("trigger payload %v", p)
			}
		case "resolve":
			if str(v["dedup_key"]) == "" {
				return nil, fmt.Errorf("resolve without dedup_key")
			}
		default:
			return nil, fmt.Errorf("event_action %q", v["event_action"])
		}
		return v, nil
	}
}

// Each receiver type gets, through the outbox and the dispatcher, a
// firing and then its resolution, each a message its service takes.
func TestReceiverTypes(t *testing.T) {
	const tgToken, tgChat, ntfyToken, pdKey = "123456789:AAH-example_token_0123456789abc", "-1001234567890", "tk_secret", "R0123456789abcdef0123456789abcd"
	cases := []struct {
		typ     string
		svc     *service
		rcv     func(url string) ConfiguredReceiver
		inspect func(t *testing.T, got []map[string]any)
	}{
		{TypeSlack, newService(t, checkSlack, http.StatusOK, "ok"), func(u string) ConfiguredReceiver { return ConfiguredReceiver{URL: u + "/services/T0/B0/x"} },
			func(t *testing.T, got []map[string]any) {
				if !strings.Contains(str(got[0]["text"]), "[FIRING] Hot") || !strings.Contains(str(got[1]["text"]), "[RESOLVED] Hot") {
					t.Errorf("texts %q, %q", got[0]["text"], got[1]["text"])
				}
			}},
		{TypeTeams, newService(t, checkTeams, http.StatusAccepted, ""), func(u string) ConfiguredReceiver { return ConfiguredReceiver{URL: u + "/workflows/x"} }, nil},
		{TypeDiscord, newService(t, checkDiscord, http.StatusNoContent, ""), func(u string) ConfiguredReceiver { return ConfiguredReceiver{URL: u + "/api/webhooks/1/x"} }, nil},
		{TypeTelegram, newService(t, checkTelegram(tgToken, tgChat), http.StatusOK, `{"ok":true,"result":{}}`),
			func(u string) ConfiguredReceiver { return ConfiguredReceiver{URL: u, Secret: tgToken, ChatID: tgChat} }, nil},
		{TypeNtfy, newService(t, checkNtfy(ntfyToken), http.StatusOK, `{"id":"x"}`),
			func(u string) ConfiguredReceiver {
				return ConfiguredReceiver{URL: u + "/vigil-alerts", Secret: ntfyToken}
			},
			func(t *testing.T, got []map[string]any) {
				if got[0]["priority"] != 5 || !strings.Contains(str(got[0]["body"]), "cpu.percent = 97 (> 90)") || got[0]["click"] == "" {
					t.Errorf("firing: %v", got[0])
				}
			}},
		{TypePagerDuty, newService(t, checkPagerDuty(pdKey), http.StatusAccepted, `{"status":"success","dedup_key":"x"}`),
			func(u string) ConfiguredReceiver { return ConfiguredReceiver{URL: u + "/v2/enqueue", Secret: pdKey} },
			func(t *testing.T, got []map[string]any) {
				if got[0]["event_action"] != "trigger" || got[1]["event_action"] != "resolve" || got[0]["dedup_key"] != got[1]["dedup_key"] {
					t.Errorf("trigger then resolve with one dedup_key: %v / %v", got[0], got[1])
				}
				if sev := obj(got[0]["payload"])["severity"]; sev != "critical" {
					t.Errorf("severity %v", sev)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			rc := c.rcv(c.svc.URL)
			rc.Name, rc.Type = "to-"+c.typ, c.typ
			if errs := rc.Validate(); len(errs) > 0 {
				t.Fatalf("valid receiver refused: %v", errs)
			}
			db, d := runOutbox(t, nil, rc)
			db.DashboardURL = "https://vigil.example.com"
			ctx := context.Background()
			hot := firing("Hot")
			hot.Alert.Annotations = map[string]string{"summary": "CPU > 90% & rising <fast>"}
			cool := resolvedT("Hot")
			cool.Alert.Annotations = hot.Alert.Annotations
			for _, tr := range []Transition{hot, cool} {
				if err := db.SaveTransitions(ctx, []Transition{tr}); err != nil {
					t.Fatal(err)
				}
				d.Wake()
			}
			var got []map[string]any
			var errs []string
			within(10*time.Second, func() bool { got, errs = c.svc.bodies(); return len(got)+len(errs) >= 2 })
			if len(errs) > 0 || len(got) != 2 {
				t.Fatalf("the service took %d and refused %v", len(got), errs)
			}
			if c.inspect != nil {
				c.inspect(t, got)
			}
		})
	}
}

// Each type says what it is missing, field by field.
func TestReceiverTypeFieldsChecked(t *testing.T) {
	for _, c := range []struct {
		rc   ConfiguredReceiver
		want string // the start of the one error
	}{
		{ConfiguredReceiver{Type: "sms", URL: "https://x.example"}, `type: "sms" is not one of webhook, slack`},
		{ConfiguredReceiver{Type: TypeSlack}, "url: want an absolute"},
		{ConfiguredReceiver{Type: TypeSlack, URL: "https://hooks.slack.com/services/x", Format: FormatAlertmanager}, "format: only a webhook has a format"},
		{ConfiguredReceiver{Type: TypeTelegram, Secret: "nope", ChatID: "-100123"}, "token: want the bot token"},
		{ConfiguredReceiver{Type: TypeTelegram, Secret: "123456789:AAH-example_token_0123456789abc"}, "chat_id: want a chat id"},
		{ConfiguredReceiver{Type: TypeNtfy, URL: "https://ntfy.sh/"}, "url: want the topic's URL"},
		{ConfiguredReceiver{Type: TypePagerDuty}, "routing_key: want the integration key"},
		{ConfiguredReceiver{Type: TypeWebhook, URL: "https://x.example/hook"}, "secret: "},
		{ConfiguredReceiver{Type: TypeEmail, URL: "https://mail.example.com", From: "v@example.com", To: []string{"o@example.com"}}, "url: want the relay as smtp://"},
		{ConfiguredReceiver{Type: TypeEmail, URL: "smtp://mail.example.com", From: "v@example.com"}, "to: want 1 to 50 addresses"},
		{ConfiguredReceiver{Type: TypeEmail, URL: "smtp://mail.example.com", From: "v@example.com", To: []string{"o@example.com"}, Username: "v"}, "password: give a username and a password"},
		{ConfiguredReceiver{Type: TypeEmail, URL: "smtp://mail.example.com", From: "v@example.com", To: []string{"o@example.com"}, Username: "v", Secret: "p", NoTLS: true}, "require_tls: a password is never sent in the clear"},
	} {
		c.rc.Name = "r"
		errs := c.rc.Validate()
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), c.want) {
			t.Errorf("%+v: %v, want one error starting %q", c.rc, errs, c.want)
		}
	}
	for _, rc := range []ConfiguredReceiver{
		{Name: "tg", Type: TypeTelegram, Secret: "123456789:AAH-example_token_0123456789abc", ChatID: "@ops_alerts"},
		{Name: "pd", Type: TypePagerDuty, Secret: "R0123456789abcdef0123456789abcd"},
		{Name: "nt", Type: TypeNtfy, URL: "https://ntfy.sh/vigil"},
		{Name: "em", Type: TypeEmail, URL: "smtps://mail.example.com", From: "vigil@example.com", To: []string{"ops@example.com"}},
	} {
		if errs := rc.Validate(); len(errs) > 0 {
			t.Errorf("%s: %v", rc.Name, errs)
		}
	}
}

// A Telegram bot's token is in the URL vigil posts to; an error of an
// attempt never shows it, even one that quotes the URL (as a proxy's
// may).
func TestTelegramTokenNotInErrors(t *testing.T) {
	const token = "123456789:AAH-example_token_0123456789abc"
	quoting := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("proxy refused %s", r.URL)
	})}
	rcv := Receiver{ID: "cfg-tg", Type: TypeTelegram, URL: "https://tg.example", Secret: token, ChatID: "-1001"}
	payload, _ := testPayload(rcv, t0, 1)
	_, o := Sender{Client: quoting}.Send(context.Background(), rcv, Delivery{ID: "msg_1", EventType: EventTest, Payload: payload})
	if !strings.HasPrefix(o.Err, "proxy refused") || strings.Contains(o.Err, "AAH-example") {
		t.Fatalf("error %q", o.Err)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A receiver's template replaces the body of its type: a service gets
// exactly what the template wrote, and a webhook's signature is over the
// body it gets.
func TestReceiverTemplate(t *testing.T) {
	type got struct {
		body      []byte
		id, ts    string
		signature string
	}
	ch := make(chan got, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{b, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")}
	}))
	defer srv.Close()
	tmpl := `{"status": {{json .Status}}, "title": {{json .Title}}, "team": {{json (index .Labels "team")}}, "value": {{.Value}}}`
	hot := firing("Hot")
	hot.Alert.Labels = map[string]string{"team": `db "core"`}
	bodies, _ := renderTransition(hot, "", 1)
	secret := NewSecret()
	for _, rcv := range []Receiver{
		{ID: "cfg-chat", Type: TypeSlack, URL: srv.URL, Format: FormatStandard, Template: tmpl},
		{ID: "cfg-hook", Type: TypeWebhook, URL: srv.URL, Format: FormatStandard, Template: tmpl, Secret: secret},
	} {
		_, o := Sender{Client: NewClient(loopback, 5*time.Second), Now: func() time.Time { return t0 }}.Send(context.Background(), rcv,
			Delivery{ID: "msg_1", EventType: EventFiring, Payload: bodies.standard})
		if o.Err != "" {
			t.Fatalf("%s: %s", rcv.ID, o.Err)
		}
		g := <-ch
		var v map[string]any
		if err := json.Unmarshal(g.body, &v); err != nil || v["status"] != "firing" || v["title"] != "[FIRING] Hot on host/a" || v["team"] != `db "core"` || v["value"] != 97.0 {
			t.Errorf("%s: body %s (%v)", rcv.ID, g.body, err)
		}
		if rcv.Type == TypeWebhook {
			want, _ := Sign([]string{secret}, g.id, t0, g.body)
			if g.signature != want {
				t.Errorf("signature %q, want %q over the templated body", g.signature, want)
			}
		}
	}
	for tmpl, want := range map[string]string{
		`{{.Nope}}`:     "can't evaluate field Nope",
		`{{json .Title`: "template: ",
	} {
		errs := ConfiguredReceiver{Name: "x", Type: TypeSlack, URL: "https://hooks.slack.com/x", Template: tmpl}.Validate()
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "template: ") || !strings.Contains(errs[0].Error(), want) {
			t.Errorf("template %q: %v", tmpl, errs)
		}
	}
}

// Telegram's and PagerDuty's receivers need no url: theirs is the
// service's, where the attempt goes.
func TestServiceURLsByDefault(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		hosts = append(hosts, r.URL.Host+r.URL.Path)
		mu.Unlock()
		return &http.Response{StatusCode: http.StatusAccepted, Body: io.NopCloser(strings.NewReader(`{}`)), Header: http.Header{}}, nil
	})}
	db, d := runOutbox(t, client,
		ConfiguredReceiver{Name: "tg", Type: TypeTelegram, Secret: "123456789:AAH-example_token_0123456789abc", ChatID: "-1001"},
		ConfiguredReceiver{Name: "pd", Type: TypePagerDuty, Secret: "R0123456789abcdef0123456789abcd"})
	db.SaveTransitions(context.Background(), []Transition{firing("Hot")})
	d.Wake()
	within(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(hosts) == 2 })
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(hosts)
	if want := []string{"api.telegram.org/bot123456789:AAH-example_token_0123456789abc/sendMessage", "events.pagerduty.com/v2/enqueue"}; !slices.Equal(hosts, want) {
		t.Fatalf("attempts to %v, want %v", hosts, want)
	}
}

// A template that nests itself stops at MaxBodyBytes, not at the end of
// the memory.
func TestTemplateBodyBounded(t *testing.T) {
	tmpl := `{{define "a"}}xxxxxxxxxx{{end}}`
	for _, l := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		prev := map[string]string{"b": "a", "c": "b", "d": "c", "e": "d", "f": "e", "g": "f", "h": "g"}[l]
		tmpl += `{{define "` + l + `"}}` + strings.Repeat(`{{template "`+prev+`"}}`, 10) + `{{end}}`
	}
	tmpl += `{{template "h"}}` // 10^8 bytes
	errs := ConfiguredReceiver{Name: "x", Type: TypeSlack, URL: "https://hooks.slack.com/x", Template: tmpl}.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "grows past") {
		t.Fatalf("%v", errs)
	}
}

// within polls cond every 10 ms until it holds or d has passed, and says
// whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// runOutbox opens a store with receivers configured and runs its
// dispatcher until the test ends.
func runOutbox(t *testing.T, client *http.Client, rcvs ...ConfiguredReceiver) (*DB, *Dispatcher) {
	t.Helper()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	if err := (&Receivers{Outbox: db}).Configure(ctx, rcvs); err != nil {
		t.Fatal(err)
	}
	if client == nil {
		client = NewClient(loopback, 5*time.Second)
	}
	d := &Dispatcher{DB: db, Client: client}
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return db, d
}
