package alerts

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"vigil/stream"
)

// Web Push (RFC 8030, with RFC 8291's encryption and RFC 8292's VAPID):
// a person who clicks "notify me" on the page gets firing alerts as the
// browser's own notifications, with the tab closed. The browser's push
// subscription is a receiver of type webpush — its endpoint the URL, its
// auth secret the Secret, its public key P256dh — so a push goes through
// the same outbox, retries, breaker and address checks as a webhook, and
// a subscription the push service says is gone (404, 410) is removed.
// The encryption and the VAPID signature are webpush-go's, made at each
// attempt; the request is sent by vigil's own client.

// TypeWebPush is a browser's push subscription.
const TypeWebPush = "webpush"

// maxPushBytes is the most of a message one encrypted record holds.
const maxPushBytes = 3900

// PushTTL is how long a push service keeps a push for a browser that is
// offline.
const PushTTL = 24 * time.Hour

// VAPID is the key pair vigil signs its pushes with (RFC 8292). A
// browser subscribes with the public key, and takes pushes signed with
// the private one only: every vigil that sends must have the same pair.
type VAPID struct {
	Public  string `json:"public_key"`  // base64url, an uncompressed P-256 point
	Private string `json:"private_key"` // base64url
	// Subject is who runs this vigil, for the push services (a mailto:
	// or https: URL); webpush-go makes a bare address a mailto:.
	Subject string `json:"-"`
}

// NewVAPID makes a key pair.
func NewVAPID() (VAPID, error) {
	priv, pub, err := webpush.GenerateVAPIDKeys()
	return VAPID{Public: pub, Private: priv}, err
}

// PushKeys holds the VAPID keys once they are known: at once from
// --data, or once NATS answers on a replica. Safe for concurrent use; the
// zero value has none (no pushes are sent, and the page offers none).
type PushKeys struct{ p atomic.Pointer[VAPID] }

// Set makes v the keys.
func (k *PushKeys) Set(v VAPID) { k.p.Store(&v) }

// Get is the keys, or nil while there are none.
func (k *PushKeys) Get() *VAPID {
	if k == nil {
		return nil
	}
	return k.p.Load()
}

// Public is the public key browsers subscribe with; "" while there is
// none.
func (k *PushKeys) Public() string {
	if v := k.Get(); v != nil {
		return v.Public
	}
	return ""
}

// vapidFile is where LoadVAPID keeps the keys, under --data.
const vapidFile = "vapid.json"

// LoadVAPID reads this vigil's VAPID keys from dir, making them (readable
// by vigil's user only) the first time.
func LoadVAPID(dir string) (VAPID, error) {
	path := filepath.Join(dir, vapidFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		v, err := NewVAPID()
		if err != nil {
			return VAPID{}, err
		}
		b, _ = json.Marshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return VAPID{}, fmt.Errorf("web push keys: %w", err)
		}
		return v, nil
	}
	if err != nil {
		return VAPID{}, fmt.Errorf("web push keys: %w", err)
	}
	var v VAPID
	if err := json.Unmarshal(b, &v); err != nil || v.Public == "" || v.Private == "" {
		return VAPID{}, fmt.Errorf("web push keys: %s is not vigil's (remove it to make new keys; browsers then subscribe again)", path)
	}
	return v, nil
}

// PushInput is what the page sends to subscribe: the browser's
// PushSubscription.toJSON(), and which alerts the person wants.
type PushInput struct {
	Endpoint       string          `json:"endpoint"`
	ExpirationTime json.RawMessage `json:"expirationTime,omitempty"` // the push service's; not used
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
	Match []string `json:"match,omitempty"`
	// Description says whose browser it is (the page sends who signed in).
	Description string `json:"description,omitempty"`
	// Replaces is the endpoint of the subscription this one renews (the
	// service worker's pushsubscriptionchange): its choice is kept, and it
	// is removed.
	Replaces string `json:"replaces,omitempty"`
}

// loopbackHost reports whether a host is this machine (a push service on
// loopback, as in tests, may be plain http).
func loopbackHost(h string) bool {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.IsLoopback()
	}
	return h == "localhost"
}

func isAddress(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

// PushReceiverID is the id of a browser's subscription: the same for the
// same endpoint, so subscribing again replaces it.
func PushReceiverID(endpoint string) string {
	h := sha256.Sum256([]byte(endpoint))
	return "push-" + hex.EncodeToString(h[:10])
}

// Receiver checks the input and makes the receiver of the subscription;
// the error wraps ErrInvalid.
func (in PushInput) Receiver(now time.Time) (Receiver, error) {
	var errs []error
	u, err := url.Parse(in.Endpoint)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil:
		errs = append(errs, errors.New("endpoint: want the push service's URL from the browser's subscription"))
	case len(in.Endpoint) > maxURLBytes:
		errs = append(errs, fmt.Errorf("endpoint: longer than %d bytes", maxURLBytes))
	case loopbackHost(u.Hostname()): // a push service of a test, on this machine
	case u.Scheme == "http":
		errs = append(errs, errors.New("endpoint: a push service is reached over https"))
	case isAddress(u.Hostname()):
		errs = append(errs, errors.New("endpoint: a push service has a name, not an address"))
	}
	if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.Keys.P256dh, "=")); err != nil || len(k) != 65 || k[0] != 4 {
		errs = append(errs, errors.New("keys.p256dh: want the subscription's public key (65 bytes, base64url)"))
	} else if _, err := ecdh.P256().NewPublicKey(k); err != nil {
		errs = append(errs, errors.New("keys.p256dh: not a point of the P-256 curve"))
	}
	if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(in.Keys.Auth, "=")); err != nil || len(k) != 16 {
		errs = append(errs, errors.New("keys.auth: want the subscription's auth secret (16 bytes, base64url)"))
	}
	if err := checkMatch(in.Match); err != nil {
		errs = append(errs, err)
	}
	if len(in.Description) > 200 {
		errs = append(errs, errors.New("description: at most 200 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return Receiver{}, invalid(err)
	}
	return Receiver{ID: PushReceiverID(in.Endpoint), Type: TypeWebPush, URL: in.Endpoint, P256dh: in.Keys.P256dh, Secret: in.Keys.Auth,
		Match: in.Match, Events: []string{EventFiring, EventResolved, EventTest}, Format: FormatStandard,
		Description: cmp.Or(in.Description, "a browser"), Status: ReceiverActive, Origin: originAPI, CreatedAt: now, UpdatedAt: now}, nil
}

// pushMessage is what the page's service worker shows.
type pushMessage struct {
	Title   string `json:"title"`
	Body    string `json:"body"`
	URL     string `json:"url,omitempty"`
	Tag     string `json:"tag,omitempty"` // one notification per alert: a resolution replaces its firing
	Status  string `json:"status"`
	Urgent  bool   `json:"urgent,omitempty"`
	Fingerp string `json:"fingerprint,omitempty"`
}

// pushBody is the message of an event, before encryption.
func pushBody(n notice) pushMessage {
	d := n.Data
	m := pushMessage{Title: n.title(), Body: strings.Join(nonEmpty(n.summary(), n.condition(), n.when()), "\n"),
		URL: d.DashboardURL, Tag: d.Fingerprint, Status: "firing", Fingerp: d.Fingerprint}
	switch {
	case n.test():
		m.Status, m.Tag, m.Body = "test", "vigil-test", n.summary()
	case n.resolved():
		m.Status = "resolved"
	default:
		m.Urgent = strings.EqualFold(d.Severity, "critical")
	}
	return m
}

func nonEmpty(parts ...string) []string {
	out := parts[:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// captured keeps the request webpush-go makes, for vigil's client to
// send.
type captured struct{ req *http.Request }

func (c *captured) Do(r *http.Request) (*http.Response, error) {
	c.req = r
	return &http.Response{StatusCode: http.StatusCreated, Body: io.NopCloser(strings.NewReader(""))}, nil
}

// pushRequest encrypts an event's message for a browser and signs the
// request with the VAPID keys.
func (s Sender) pushRequest(r Receiver, d Delivery) (*http.Request, error) {
	vapid := s.VAPID.Get()
	if vapid == nil {
		return nil, errors.New("web push: this vigil has no VAPID keys yet")
	}
	var n notice
	if err := json.Unmarshal(d.Payload, &n); err != nil {
		return nil, fmt.Errorf("read the event: %w", err)
	}
	m := pushBody(n)
	// One record of 4,096 bytes once encrypted (webpush-go's): the
	// message is cut to fit, not refused.
	m.Title, m.Body = stream.Clip(m.Title, 256), stream.Clip(m.Body, 2048)
	body, err := marshal(m)
	if err == nil && r.Template != "" {
		body, err = applyTemplate(r.Template, d.Payload)
		if len(body) > maxPushBytes {
			body = []byte(stream.Clip(string(body), maxPushBytes))
		}
	}
	if err != nil {
		return nil, err
	}
	urgency := webpush.UrgencyNormal
	if m.Urgent {
		urgency = webpush.UrgencyHigh
	}
	var c captured
	_, err = webpush.SendNotificationWithContext(context.Background(), body,
		&webpush.Subscription{Endpoint: r.URL, Keys: webpush.Keys{Auth: r.Secret, P256dh: r.P256dh}},
		&webpush.Options{HTTPClient: &c, Subscriber: cmp.Or(vapid.Subject, "vigil@localhost"), VAPIDPublicKey: vapid.Public,
			VAPIDPrivateKey: vapid.Private, TTL: int(PushTTL / time.Second), Urgency: urgency, Topic: pushTopic(m.Tag)})
	if err != nil {
		return nil, fmt.Errorf("web push: %w", err)
	}
	c.req.Header.Set("User-Agent", "vigil")
	return c.req, nil
}

// pushTopic lets a push service replace an alert's push not delivered
// yet by its next (RFC 8030: at most 32 base64url characters).
func pushTopic(tag string) string {
	if tag == "" {
		return ""
	}
	h := sha256.Sum256([]byte(tag))
	return base64.RawURLEncoding.EncodeToString(h[:24])
}
