package alerts

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
)

// Webhook event types.
const (
	EventFiring   = "alert.firing"
	EventResolved = "alert.resolved"
	EventTest     = "webhook.test"
	// EventVerify is the verification of a receiver that subscribed
	// through the API: it carries a challenge the receiver echoes. (The
	// name is from before "receiver" was the one name: receivers check
	// it.)
	EventVerify = "subscription.verify"
)

// EventTypes are the types a receiver can subscribe to (with wildcards such
// as "alert.*").
var EventTypes = []string{EventFiring, EventResolved, EventTest}

// Payload formats.
const (
	FormatStandard     = "standard"
	FormatAlertmanager = "alertmanager"
)

// NewSecret returns a Standard Webhooks secret: "whsec_" and 24 random
// bytes in base64.
func NewSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// checkSecret says what is wrong with a secret, without showing it.
func checkSecret(secret string) error {
	if _, err := secretKey(secret); err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	return nil
}

// checkEventPattern checks an event type or a pattern such as "alert.*".
func checkEventPattern(p string) error {
	if p == "*" {
		return nil
	}
	for _, t := range EventTypes {
		if ok, err := path.Match(p, t); err != nil {
			return fmt.Errorf("bad pattern %q", p)
		} else if ok {
			return nil
		}
	}
	return fmt.Errorf("%q matches no event type (%s)", p, strings.Join(EventTypes, ", "))
}

// secretKey decodes a whsec_ secret into its HMAC key.
func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 16 {
		return nil, errors.New("secret must be whsec_ and at least 16 bytes in base64")
	}
	return key, nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, space-separated,
// so a receiver holding either the new or the old secret of a rotation can
// verify it.
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	var sigs []string
	for _, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			return "", err
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " "), nil
}

// WebhookEvent is the webhook event type of a transition's kind, or ""
// for none.
func WebhookEvent(kind string) string {
	switch kind {
	case StateFiring:
		return EventFiring
	case StateResolved:
		return EventResolved
	}
	return ""
}

// webhookBodies are one webhook event's body in each format, rendered
// once however many receivers take it.
type webhookBodies struct {
	standard, alertmanager []byte
}

// renderTransition renders a transition's webhook in each format, with
// the outbox's sequence number for it.
func renderTransition(t Transition, dashboardURL string, seq uint64) (webhookBodies, error) {
	var b webhookBodies
	var err error
	if b.standard, err = payload(FormatStandard, t, dashboardURL, seq, t.Alert.UpdatedAt); err != nil {
		return b, err
	}
	b.alertmanager, err = payload(FormatAlertmanager, t, dashboardURL, seq, t.Alert.UpdatedAt)
	return b, err
}

// TransitionPayload renders the body a receiver in format gets for a
// transition, with the outbox's sequence number for it.
func TransitionPayload(format string, t Transition, dashboardURL string, seq uint64) ([]byte, error) {
	return payload(format, t, dashboardURL, seq, t.Alert.UpdatedAt)
}

// standardBody is the standard format's body of a transition's webhook;
// the service types' messages are read back from it (notice).
type standardBody struct {
	Type      string       `json:"type"`
	Timestamp time.Time    `json:"timestamp"`
	Data      standardData `json:"data"`
}

type standardData struct {
	Rule         string            `json:"rule"`
	Source       string            `json:"source"`
	Metric       string            `json:"metric"`
	Value        float64           `json:"value"`
	Threshold    float64           `json:"threshold"`
	Op           string            `json:"op"`
	Severity     string            `json:"severity"`
	State        string            `json:"state"`
	StartedAt    time.Time         `json:"started_at,omitzero"`
	EndedAt      time.Time         `json:"ended_at,omitzero"`
	Fingerprint  string            `json:"fingerprint"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	DashboardURL string            `json:"dashboard_url"`
	Seq          uint64            `json:"seq"`
}

// payload renders the body a receiver gets for a transition.
func payload(format string, t Transition, dashboardURL string, seq uint64, now time.Time) ([]byte, error) {
	a := t.Alert
	typ := EventFiring
	if t.Kind == StateResolved {
		typ = EventResolved
	}
	if format == FormatAlertmanager {
		return alertmanagerPayload(typ, a, dashboardURL)
	}
	return marshal(standardBody{Type: typ, Timestamp: now.UTC(), Data: standardData{Rule: a.Rule, Source: a.Source, Metric: a.Metric,
		Value: a.Value, Threshold: a.Threshold, Op: a.Op, Severity: a.Severity, State: stateOf(t), StartedAt: a.StartedAt,
		EndedAt: a.EndedAt, Fingerprint: a.Fingerprint, Labels: nonNil(a.Labels), Annotations: nonNil(a.Annotations),
		DashboardURL: dashboardURL + "/source/" + a.Source, Seq: seq}})
}

// verifyPayload is the body of the verification event a receiver that
// subscribed through the API gets: it echoes the challenge to show it wants
// the webhooks. The verification and test bodies name the receiver
// receiver_id, and subscription_id too, its name before "receiver" was the
// one name, for receivers written then. seq is the outbox's: it orders
// the webhook events, and is not an id of the event stream.
func verifyPayload(id, challenge string, now time.Time, seq uint64) ([]byte, error) {
	return json.Marshal(map[string]any{"type": EventVerify, "timestamp": now.UTC(),
		"data": map[string]any{"receiver_id": id, "subscription_id": id, "challenge": challenge, "seq": seq}})
}

// testPayload is the body of a test event: vigil's, or for a webhook in
// Alertmanager's format an alert named TestAlert in that format, as
// Grafana's test of a contact point sends, so a receiver written for
// Alertmanager reads it.
func testPayload(r Receiver, now time.Time, seq uint64) ([]byte, error) {
	if r.Format == FormatAlertmanager && (r.Type == "" || r.Type == TypeWebhook) {
		labels := map[string]string{"alertname": "TestAlert", "severity": "info", "receiver_id": r.ID}
		ann := map[string]string{"summary": "a test event from vigil (receiver " + r.ID + ")"}
		return marshal(amBody{"4", `{}:{alertname="TestAlert"}`, 0, "firing", "vigil", map[string]string{"alertname": "TestAlert"}, labels, ann, "",
			[]amAlert{{"firing", labels, ann, now.UTC(), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "", "vigil-test-" + r.ID}}})
	}
	return standardTestPayload(r.ID, now, seq)
}

func standardTestPayload(id string, now time.Time, seq uint64) ([]byte, error) {
	return json.Marshal(map[string]any{"type": EventTest, "timestamp": now.UTC(),
		"data": map[string]any{"receiver_id": id, "subscription_id": id, "message": "a test event from vigil", "seq": seq}})
}

// marshal is json.Marshal without HTML escaping: "op":">" as written.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func stateOf(t Transition) string {
	if t.Kind == StateResolved {
		return StateResolved
	}
	return t.Alert.State
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// alertmanagerPayload is the Prometheus Alertmanager webhook body, version
// "4", so receivers written for Alertmanager work unchanged.
func alertmanagerPayload(typ string, a Alert, dashboardURL string) ([]byte, error) {
	status := "firing"
	if typ == EventResolved {
		status = "resolved"
	}
	labels := map[string]string{"alertname": a.Rule, "source": a.Source, "metric": a.Metric, "severity": a.Severity}
	for k, v := range a.Labels {
		labels[k] = v
	}
	ann := nonNil(a.Annotations)
	ends := a.EndedAt
	if ends.IsZero() {
		ends = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) // Alertmanager's "not ended"
	}
	group := map[string]string{"alertname": a.Rule}
	return marshal(amBody{"4", `{}:{alertname="` + a.Rule + `"}`, 0, status, "vigil", group, labels, ann, dashboardURL,
		[]amAlert{{status, labels, ann, a.StartedAt.UTC(), ends.UTC(), dashboardURL + "/source/" + a.Source, a.Fingerprint}}})
}

// amBody is Alertmanager's webhook body.
type amBody struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

// amAlert is one alert of an Alertmanager webhook.
type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// NewClient is the HTTP client deliveries use: no redirects followed, no
// proxy, a dial-time address check, and a per-attempt timeout.
func NewClient(allow []netip.Prefix, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:           Dialer(allow, timeout).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
