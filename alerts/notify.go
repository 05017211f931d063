package alerts

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"vigil/stream"
)

// Receiver types: where a receiver's messages go. A webhook gets the
// signed JSON body of its format; the others get a message written for
// the service, made from the same event when it is sent, so they go
// through the same outbox, retries and address checks.
const (
	TypeWebhook   = "webhook"
	TypeSlack     = "slack"     // an incoming webhook
	TypeTeams     = "teams"     // a Workflows webhook, an adaptive card
	TypeDiscord   = "discord"   // a channel webhook
	TypeTelegram  = "telegram"  // the Bot API's sendMessage
	TypeNtfy      = "ntfy"      // a topic on an ntfy server
	TypePagerDuty = "pagerduty" // Events API v2
)

// ReceiverTypes are every receiver type, in the order the docs give them.
var ReceiverTypes = []string{TypeWebhook, TypeSlack, TypeTeams, TypeDiscord, TypeTelegram, TypeNtfy, TypePagerDuty, TypeEmail, TypeMQTT}

// The services' own addresses, for the types that have one.
const (
	TelegramAPI  = "https://api.telegram.org"
	PagerDutyAPI = "https://events.pagerduty.com/v2/enqueue"
)

// notice is what every message says, read from an event's standard
// body: a transition of an alert, or a test.
type notice struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		standardData
		ReceiverID string `json:"receiver_id"` // a test's
		Message    string `json:"message"`
	} `json:"data"`
	// Alerts are a group's (group.go), the first of them in Data.
	Alerts []standardData `json:"alerts"`
}

// grouped reports whether the notice is of several alerts.
func (n notice) grouped() bool { return len(n.Alerts) > 1 }

// maxListed is how many of a group's alerts a message lists, one a line
// (Slack takes ten fields a section).
const maxListed = 9

// one is a notice of one alert of a group.
func (n notice) one(d standardData) notice {
	o := notice{Type: n.Type, Timestamp: n.Timestamp}
	o.Data.standardData = d
	return o
}

func (n notice) resolved() bool { return n.Type == EventResolved }
func (n notice) test() bool     { return n.Type == EventTest }

// title is the message's first line: "[FIRING] HighCPU on host/web-1".
func (n notice) title() string {
	switch {
	case n.grouped():
		return "[FIRING:" + strconv.Itoa(len(n.Alerts)) + "] " + n.groupTitle()
	case n.test():
		return "vigil: a test message"
	case n.resolved():
		return "[RESOLVED] " + n.Data.Rule + " on " + n.Data.Source
	}
	return "[FIRING] " + n.Data.Rule + " on " + n.Data.Source
}

// condition is what was seen against what the rule allows:
// "cpu.percent = 97.3 (> 90)".
func (n notice) condition() string {
	d := n.Data
	return fmt.Sprintf("%s = %s (%s %s)", d.Metric, number(d.Value), d.Op, number(d.Threshold))
}

// when says since when it fires, or how long it fired.
func (n notice) when() string {
	d := n.Data
	if n.resolved() && !d.StartedAt.IsZero() && !d.EndedAt.IsZero() {
		return "fired " + d.StartedAt.UTC().Format(time.RFC3339) + " for " + d.EndedAt.Sub(d.StartedAt).Round(time.Second).String()
	}
	if !d.StartedAt.IsZero() {
		return "firing since " + d.StartedAt.UTC().Format(time.RFC3339)
	}
	return ""
}

// groupTitle names a group's alerts: one rule on its sources, or the
// rules, a few of each.
func (n notice) groupTitle() string {
	var rules, sources []string
	for _, d := range n.Alerts {
		if !slices.Contains(rules, d.Rule) {
			rules = append(rules, d.Rule)
		}
		if !slices.Contains(sources, d.Source) {
			sources = append(sources, d.Source)
		}
	}
	few := func(list []string) string {
		if len(list) <= 3 {
			return strings.Join(list, ", ")
		}
		return strings.Join(list[:3], ", ") + " and " + strconv.Itoa(len(list)-3) + " more"
	}
	if len(rules) == 1 {
		return rules[0] + " on " + few(sources)
	}
	return few(rules) + " on " + few(sources)
}

// summary is the alert's summary annotation, or its description.
func (n notice) summary() string {
	if n.grouped() {
		return ""
	}
	if n.test() {
		return cmp.Or(n.Data.Message, "a test message from vigil") + " (receiver " + n.Data.ReceiverID + ")"
	}
	return cmp.Or(n.Data.Annotations["summary"], n.Data.Annotations["description"])
}

// facts are the lines of detail, in order.
func (n notice) facts() [][2]string {
	if n.test() {
		return nil
	}
	if n.grouped() { // a line an alert: where, and what
		var out [][2]string
		for i, d := range n.Alerts {
			if i == maxListed && len(n.Alerts) > maxListed+1 {
				out = append(out, [2]string{"…", "and " + strconv.Itoa(len(n.Alerts)-i) + " more (the dashboard lists them)"})
				break
			}
			o := n.one(d)
			line := o.condition()
			if s := o.summary(); s != "" {
				line = s + " (" + line + ")"
			}
			out = append(out, [2]string{d.Rule + " on " + d.Source, line})
		}
		return out
	}
	d := n.Data
	out := [][2]string{{"Value", n.condition()}, {"Severity", d.Severity}}
	if w := n.when(); w != "" {
		out = append(out, [2]string{"When", w})
	}
	return out
}

// severity is the alert's, or the most severe of a group's.
func (n notice) severity() string {
	sev := n.Data.Severity
	for _, d := range n.Alerts {
		if d.Severity == "critical" || (d.Severity == "warning" && sev != "critical") {
			sev = d.Severity
		}
	}
	return sev
}

// link is where a message's "Open in vigil" goes: the alert's source, or
// for a group the dashboard.
func (n notice) link() string {
	if n.grouped() {
		base, _, _ := strings.Cut(n.Data.DashboardURL, "/source/")
		return base + "/"
	}
	return n.Data.DashboardURL
}

// number writes a value as a person reads it: 97.3, 0.0042, 1.2e+09.
func number(v float64) string {
	if a := math.Abs(v); a >= 1e4 && a < 1e15 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64) // 29480, not 2.948e+04
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// text is the whole message as plain lines.
func (n notice) text() string {
	lines := []string{n.title()}
	if s := n.summary(); s != "" {
		lines = append(lines, s)
	}
	for _, f := range n.facts() {
		lines = append(lines, f[0]+": "+f[1])
	}
	if u := n.link(); u != "/" && u != "" {
		lines = append(lines, u)
	}
	return strings.Join(lines, "\n")
}

// clip shortens s to at most n characters (not bytes), marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// A message is the request a receiver of a service type gets.
type message struct {
	url    string
	body   []byte
	header http.Header
}

// render makes the request for a receiver of a service type from an
// event's standard body.
func render(rcv Receiver, standard []byte) (message, error) {
	var n notice
	if err := json.Unmarshal(standard, &n); err != nil {
		return message{}, fmt.Errorf("read the event: %w", err)
	}
	m := message{url: rcv.URL, header: http.Header{"Content-Type": {"application/json"}}}
	var v any
	switch rcv.Type {
	case TypeSlack:
		v = slackBody(n)
	case TypeTeams:
		v = teamsBody(n)
	case TypeDiscord:
		v = discordBody(n)
	case TypeTelegram:
		m.url = strings.TrimSuffix(cmp.Or(rcv.URL, TelegramAPI), "/") + "/bot" + rcv.Secret + "/sendMessage"
		v = telegramBody(n, rcv.ChatID)
	case TypePagerDuty:
		m.url = cmp.Or(rcv.URL, PagerDutyAPI)
		v = pagerDutyBody(n, rcv.Secret)
	case TypeNtfy:
		m.header = ntfyHeaders(n, rcv.Secret)
		m.body = []byte(stream.Clip(n.text(), 4096-len("…"))) // ntfy's limit is in bytes: a longer one becomes an attachment
		return m, nil
	default:
		return message{}, fmt.Errorf("receiver type %q", rcv.Type)
	}
	b, err := marshal(v)
	m.body = b
	return m, err
}

// Slack: an incoming webhook takes text (the notification's) and blocks
// (what the channel shows); mrkdwn needs &, < and > escaped.
func slackBody(n notice) any {
	esc := func(s string) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	}
	head := "*" + esc(n.title()) + "*"
	if s := n.summary(); s != "" {
		head += "\n" + esc(s)
	}
	blocks := []any{map[string]any{"type": "section", "text": map[string]string{"type": "mrkdwn", "text": clip(head, 3000)}}}
	if facts := n.facts(); len(facts) > 0 {
		var fields []any
		for _, f := range facts {
			fields = append(fields, map[string]string{"type": "mrkdwn", "text": clip("*"+f[0]+"*\n"+esc(f[1]), 2000)})
		}
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields})
	}
	if u := n.link(); u != "/" && u != "" {
		blocks = append(blocks, map[string]any{"type": "context", "elements": []any{
			map[string]string{"type": "mrkdwn", "text": "<" + u + "|Open in vigil>"}}})
	}
	return map[string]any{"text": esc(clip(n.title(), 3000)), "blocks": blocks}
}

// Teams: a Workflows webhook ("Post to a channel when a webhook request
// is received") takes a message with an adaptive card.
func teamsBody(n notice) any {
	body := []any{map[string]any{"type": "TextBlock", "text": n.title(), "weight": "Bolder", "size": "Medium", "wrap": true,
		"color": map[bool]string{true: "Good", false: "Attention"}[n.resolved() || n.test()]}}
	if s := n.summary(); s != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": s, "wrap": true})
	}
	if facts := n.facts(); len(facts) > 0 {
		var fs []any
		for _, f := range facts {
			fs = append(fs, map[string]string{"title": f[0], "value": f[1]})
		}
		body = append(body, map[string]any{"type": "FactSet", "facts": fs})
	}
	card := map[string]any{"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": body}
	if u := n.link(); u != "/" && u != "" {
		card["actions"] = []any{map[string]string{"type": "Action.OpenUrl", "title": "Open in vigil", "url": u}}
	}
	return map[string]any{"type": "message", "attachments": []any{map[string]any{
		"contentType": "application/vnd.microsoft.card.adaptive", "content": card}}}
}

// Discord: content up to 2,000 characters and an embed (title 256,
// description 4,096, field values 1,024); no one is pinged.
func discordBody(n notice) any {
	color := 0xd93f3f // firing
	if n.resolved() || n.test() {
		color = 0x2e9e5b
	}
	embed := map[string]any{"title": clip(n.title(), 256), "color": color}
	if s := n.summary(); s != "" {
		embed["description"] = clip(s, 4096)
	}
	if u := n.link(); u != "/" && u != "" {
		embed["url"] = u
	}
	if !n.Timestamp.IsZero() {
		embed["timestamp"] = n.Timestamp.UTC().Format(time.RFC3339)
	}
	// Discord refuses an embed of more than 6,000 characters in all.
	budget := 6000 - utf8.RuneCountInString(embed["title"].(string))
	if d, ok := embed["description"].(string); ok {
		budget -= utf8.RuneCountInString(d)
	}
	var fields []any
	for _, f := range n.facts() {
		name, value := clip(f[0], 256), clip(f[1], 1024)
		cost := utf8.RuneCountInString(name) + utf8.RuneCountInString(value)
		if cost > budget {
			break // the dashboard lists the rest
		}
		budget -= cost
		fields = append(fields, map[string]any{"name": name, "value": value, "inline": true})
	}
	if fields != nil {
		embed["fields"] = fields
	}
	return map[string]any{"content": clip(n.title(), 2000), "embeds": []any{embed}, "allowed_mentions": map[string]any{"parse": []string{}}}
}

// Telegram: sendMessage with HTML parse mode, whose text must escape
// <, > and &; at most 4,096 characters.
func telegramBody(n notice, chatID string) any {
	esc := html.EscapeString
	lines := []string{"<b>" + esc(n.title()) + "</b>"}
	if s := n.summary(); s != "" {
		lines = append(lines, esc(s))
	}
	for _, f := range n.facts() {
		lines = append(lines, esc(f[0])+": "+esc(f[1]))
	}
	if u := n.link(); u != "/" && u != "" {
		lines = append(lines, `<a href="`+esc(u)+`">Open in vigil</a>`)
	}
	text := strings.Join(lines, "\n")
	if utf8.RuneCountInString(text) > 4096 { // cut the plain text, not a tag in half
		text = esc(clip(n.text(), 4096))
	}
	return map[string]any{"chat_id": chatID, "text": text, "parse_mode": "HTML", "link_preview_options": map[string]bool{"is_disabled": true}}
}

// ntfy: the message is the body, and the rest goes in headers: a title,
// a priority from the severity (5 urgent for critical), tags shown as
// emoji, and where a click leads.
func ntfyHeaders(n notice, token string) http.Header {
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	h.Set("Title", mime.BEncoding.Encode("utf-8", n.title())) // RFC 2047 when it is not ASCII, which ntfy decodes
	prio, tag := "3", "rotating_light"
	switch {
	case n.resolved() || n.test():
		prio, tag = "3", "white_check_mark"
	case n.severity() == "critical":
		prio = "5"
	case n.severity() == "warning":
		prio = "4"
	}
	h.Set("Priority", prio)
	h.Set("Tags", tag)
	if u := n.link(); u != "/" && u != "" {
		h.Set("Click", u)
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return h
}

// PagerDuty: a trigger for a firing alert and a resolve for its end, with
// the alert's fingerprint as dedup_key, so the resolve closes the incident
// the trigger opened.
func pagerDutyBody(n notice, routingKey string) any {
	d := n.Data
	if n.test() {
		return map[string]any{"routing_key": routingKey, "event_action": "trigger", "dedup_key": "vigil-test-" + d.ReceiverID,
			"payload": map[string]any{"summary": n.summary(), "source": "vigil", "severity": "info"}}
	}
	action := "trigger"
	if n.resolved() {
		action = "resolve"
	}
	sev := "warning"
	switch d.Severity {
	case "critical", "error", "warning", "info":
		sev = d.Severity
	}
	summary := n.title() + ": " + n.condition()
	if s := n.summary(); s != "" {
		summary = n.title() + ": " + s
	}
	details := map[string]any{"rule": d.Rule, "metric": d.Metric, "value": d.Value, "threshold": d.Threshold, "op": d.Op}
	for k, v := range d.Labels {
		details["label_"+k] = v
	}
	out := map[string]any{"routing_key": routingKey, "event_action": action, "dedup_key": d.Fingerprint,
		"payload": map[string]any{"summary": clip(summary, 1024), "source": d.Source, "severity": sev,
			"timestamp": n.Timestamp.UTC().Format(time.RFC3339), "component": d.Metric, "group": d.Rule, "custom_details": details}}
	if d.DashboardURL != "" {
		out["links"] = []any{map[string]string{"href": d.DashboardURL, "text": "Open in vigil"}}
	}
	return out
}

// Checks of the fields each type needs, with the errors a person reads
// in `vigil validate` ("field: what is wrong").
var (
	telegramToken = regexp.MustCompile(`^[0-9]{3,20}:[A-Za-z0-9_-]{20,100}$`)
	telegramChat  = regexp.MustCompile(`^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$`)
)

// checkType says what is wrong with a receiver's type-specific fields.
func checkType(r Receiver) []error {
	var errs []error
	need := func(ok bool, err string) {
		if !ok {
			errs = append(errs, errors.New(err))
		}
	}
	switch r.Type {
	case TypeWebhook, TypeSlack, TypeTeams, TypeDiscord: // a URL, checked as every receiver's
	case TypeNtfy:
		u, _ := url.Parse(r.URL)
		need(u == nil || r.URL == "" || strings.Trim(u.Path, "/") != "", "url: want the topic's URL, such as https://ntfy.sh/my-alerts")
	case TypeTelegram:
		need(telegramToken.MatchString(r.Secret), "token: want the bot token BotFather gave, 123456789:AA…")
		need(telegramChat.MatchString(r.ChatID), "chat_id: want a chat id (-1001234567890) or a channel's @name")
	case TypeEmail:
		errs = append(errs, checkEmail(r)...)
	case TypeMQTT:
		errs = append(errs, checkMQTT(r)...)
	case TypeWebPush:
		need(r.P256dh != "", `type: a webpush receiver is a browser's, made by "Notify me" on the page`)
	case TypePagerDuty:
		need(len(r.Secret) >= 20 && len(r.Secret) <= 64 && !strings.ContainsAny(r.Secret, " \t\n"),
			"routing_key: want the integration key of an Events API v2 integration (32 characters)")
	default:
		errs = append(errs, fmt.Errorf("type: %q is not one of %s", r.Type, strings.Join(ReceiverTypes, ", ")))
	}
	if r.Type != TypeWebhook && r.Format != FormatStandard {
		errs = append(errs, fmt.Errorf("format: only a webhook has a format; a %s receiver gets messages written for it", r.Type))
	}
	return errs
}

// request makes the HTTP request of one attempt: a webhook's signed
// body, or the message for a service.
func (s Sender) request(r Receiver, d Delivery, now time.Time) (*http.Request, error) {
	if r.Type == TypeWebPush {
		return s.pushRequest(r, d)
	}
	if r.Type != TypeWebhook && r.Type != "" {
		m, err := render(r, d.Payload)
		if err == nil && r.Template != "" {
			m.body, err = applyTemplate(r.Template, d.Payload)
		}
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequest(http.MethodPost, m.url, bytes.NewReader(m.body))
		if err != nil {
			return nil, errors.New("bad url")
		}
		req.Header = m.header
		req.Header.Set("User-Agent", "vigil")
		return req, nil
	}
	body := d.Payload
	if r.Template != "" {
		var err error
		if body, err = applyTemplate(r.Template, d.Payload); err != nil {
			return nil, err
		}
	}
	sig, err := Sign(r.secrets(now), d.ID, now, body)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, r.URL, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("bad url")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-webhooks")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	return req, nil
}

// MaxTemplateBytes bounds a receiver's body template.
const MaxTemplateBytes = 16 << 10

// A TemplateData is what a receiver's body template reads: the event,
// and the pieces of the message every service type gets.
type TemplateData struct {
	Status       string // firing, resolved or test
	Title        string // [FIRING] HighCPU on host/web-1
	Text         string // the whole message, plain, one piece a line
	Summary      string // the summary annotation (or the description)
	Condition    string // cpu.percent = 97.3 (> 90)
	When         string // firing since …, or fired … for …
	Rule         string
	Source       string
	Metric       string
	Op           string
	Severity     string
	Fingerprint  string
	DashboardURL string
	Value        float64
	Threshold    float64
	StartedAt    time.Time
	EndedAt      time.Time
	Labels       map[string]string
	Annotations  map[string]string
	Alerts       []TemplateData // a group's alerts (group_wait), each as above; empty for one alert
}

func (n notice) templateData() TemplateData {
	d := n.Data
	status := "firing"
	switch {
	case n.resolved():
		status = "resolved"
	case n.test():
		status = "test"
	}
	return TemplateData{Status: status, Title: n.title(), Text: n.text(), Summary: n.summary(), Condition: n.condition(), When: n.when(),
		Rule: d.Rule, Source: d.Source, Metric: d.Metric, Op: d.Op, Severity: d.Severity, Fingerprint: d.Fingerprint,
		DashboardURL: d.DashboardURL, Value: d.Value, Threshold: d.Threshold, StartedAt: d.StartedAt, EndedAt: d.EndedAt,
		Labels: nonNil(d.Labels), Annotations: nonNil(d.Annotations), Alerts: n.groupData()}
}

// groupData is each alert of a group as a template reads it; one alert's
// notice has itself alone.
func (n notice) groupData() []TemplateData {
	if !n.grouped() {
		return nil
	}
	out := make([]TemplateData, len(n.Alerts))
	for i, d := range n.Alerts {
		out[i] = n.one(d).templateData()
	}
	return out
}

// parseTemplate parses a body template (text/template) with its one
// function: json, which writes a value as JSON ({"text": {{json .Title}}}).
func parseTemplate(text string) (*template.Template, error) {
	if len(text) > MaxTemplateBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxTemplateBytes)
	}
	return template.New("body").Option("missingkey=zero").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := marshal(v)
			return string(b), err
		},
	}).Parse(text)
}

// applyTemplate renders a receiver's body template for an event.
func applyTemplate(text string, standard []byte) ([]byte, error) {
	t, err := parseTemplate(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	var n notice
	if err := json.Unmarshal(standard, &n); err != nil {
		return nil, fmt.Errorf("read the event: %w", err)
	}
	b := &limitedBuffer{max: MaxBodyBytes}
	if err := t.Execute(b, n.templateData()); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return b.Bytes(), nil
}

// MaxBodyBytes bounds what a template may write.
const MaxBodyBytes = 1 << 20

// A limitedBuffer refuses writes past max: a template that nests itself
// cannot fill the memory.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, fmt.Errorf("the body grows past %d bytes", b.max)
	}
	return b.Buffer.Write(p)
}

// checkTemplate parses a receiver's template and runs it on a firing,
// so a field it names that does not exist is found when vigil starts.
func checkTemplate(r Receiver) error {
	if r.Template == "" {
		return nil
	}
	if r.Format != FormatStandard {
		return errors.New("template: a template replaces the standard body; leave format out")
	}
	sample, err := renderTransition(Transition{Kind: StateFiring, Alert: Alert{Rule: "Sample", Source: "host/example", Metric: "cpu.percent",
		Value: 97, Threshold: 90, Op: ">", Severity: "warning", StartedAt: time.Unix(0, 0)}}, "http://vigil.example", 1)
	if err != nil {
		return err
	}
	_, err = applyTemplate(r.Template, sample.standard)
	return err
}
