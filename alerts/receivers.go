package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

// Receiver statuses.
const (
	ReceiverActive   = "active"
	ReceiverPending  = "pending_verification" // subscribed through the API; has not echoed the challenge yet
	ReceiverDisabled = "disabled"             // it answered 410 Gone, or was turned off
)

// A Receiver is where webhooks go: one written in the config file, or one
// that subscribed itself through the API (Receivers.Create) and proved it
// wants them by echoing a challenge.
type Receiver struct {
	ID string `json:"id"`
	// Type is where its messages go: TypeWebhook (""), or a service
	// (TypeSlack, …) that gets a message written for it.
	Type   string `json:"type,omitempty"`
	URL    string `json:"url"`
	ChatID string `json:"chat_id,omitempty"` // a Telegram receiver's chat
	// P256dh is a browser's public key, for a webpush receiver (its auth
	// secret is the Secret).
	P256dh string `json:"p256dh,omitempty"`
	// Template, when set, is the body (text/template over a
	// TemplateData), instead of the type's own.
	Template string `json:"template,omitempty"`
	// Match picks the alerts it takes (Matcher); none: every alert.
	Match []string `json:"match,omitempty"`
	// RepeatInterval, when set, sends a firing alert's webhook again
	// every interval while it fires.
	RepeatInterval Interval `json:"repeat_interval,omitzero"`
	// GroupWait, when set, holds a firing alert's message this long and
	// sends it with the others that fired meanwhile (of the same GroupBy
	// labels) as one message (group.go).
	GroupWait Interval `json:"group_wait,omitzero"`
	GroupBy   []string `json:"group_by,omitempty"`
	// An email receiver's: its sender and recipients, the relay's user
	// (the password is the Secret), whether it may send without TLS, and
	// the certificates to trust.
	From        string    `json:"from,omitempty"`
	To          []string  `json:"to,omitempty"`
	Username    string    `json:"username,omitempty"`
	NoTLS       bool      `json:"no_tls,omitempty"`
	CAFile      string    `json:"ca_file,omitempty"`
	Events      []string  `json:"events"`
	Format      string    `json:"format"`
	Description string    `json:"description,omitempty"`
	Status      string    `json:"status"`
	Origin      string    `json:"origin"` // "config" or "api"
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	// Secret is the receiver's credential: a webhook's signing secret,
	// a Telegram bot's token, a PagerDuty routing key, an ntfy access
	// token.
	Secret         string    `json:"-"`
	OldSecret      string    `json:"-"`
	OldSecretUntil time.Time `json:"-"`
	// Challenge is what a receiver subscribed through the API must echo
	// to become active.
	Challenge string `json:"-"`
}

// Wants reports whether the receiver takes an event type; patterns may
// use wildcards ("alert.*", "*").
func (r Receiver) Wants(typ string) bool {
	for _, p := range r.Events {
		if ok, _ := path.Match(p, typ); ok || p == "*" {
			return true
		}
	}
	return false
}

// secrets are the secrets to sign with now: the current one, and the old
// one for a day after a rotation.
func (r Receiver) secrets(now time.Time) []string {
	out := []string{r.Secret}
	if r.OldSecret != "" && now.Before(r.OldSecretUntil) {
		out = append(out, r.OldSecret)
	}
	return out
}

// SecretOverlap is how long a rotated-out secret still signs deliveries.
const SecretOverlap = 24 * time.Hour

// Bounds of a receiver's fields.
const (
	MaxDescriptionBytes = 1000
	maxURLBytes         = 2048
	maxEvents           = 32
)

// The rules of a receiver's fields, the same for a receiver written in the
// config file and one that subscribes through the API. Each error reads
// "field: what is wrong".
var nameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

func checkName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("name: %q must be 1 to 63 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// checkURL returns the URL to store: the parsed one written out again, so
// that what is stored is what was checked (fuzzing found "httpS://0"
// accepted as written). A configured receiver's URL may carry credentials
// (user:password@): the config file is the operator's, and an existing
// endpoint behind basic auth is a fair target. One given through the API
// may not: a receiver that subscribes itself checks vigil's signature
// with the secret it was given, and needs no second secret kept in the
// open.
func checkURL(raw string, credentials bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > maxURLBytes || (u.User != nil && !credentials) {
		if credentials {
			return "", errors.New("url: want an absolute http:// or https:// URL")
		}
		return "", errors.New("url: want an absolute http:// or https:// URL without credentials")
	}
	return u.String(), nil // normalised: "HTTPS://Example.com" is stored as https://Example.com
}

func checkEvents(events []string) error {
	if len(events) == 0 || len(events) > maxEvents {
		return fmt.Errorf("events: want 1 to %d event types, such as alert.*", maxEvents)
	}
	for _, e := range events {
		if err := checkEventPattern(e); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	return nil
}

func checkFormat(format string) error {
	if format != FormatStandard && format != FormatAlertmanager {
		return fmt.Errorf("format: %q is not standard or alertmanager", format)
	}
	return nil
}

func checkDescription(d string) error {
	if len(d) > MaxDescriptionBytes {
		return fmt.Errorf("description: longer than %d bytes", MaxDescriptionBytes)
	}
	return nil
}

// A ConfiguredReceiver is a receiver written in the config file. It is
// saved with the id "cfg-" and its name, active from the start (the
// operator vouches for it: no challenge), with the secret written.
type ConfiguredReceiver struct {
	Name   string
	Type   string // TypeWebhook (the default), TypeSlack, …
	URL    string // may carry credentials (see checkURL); for Telegram and PagerDuty, their API unless set
	Secret string // a webhook's whsec_…, a Telegram bot token, a PagerDuty routing key, an ntfy token; never logged or shown
	ChatID string // Telegram's chat
	// Template replaces the body of any HTTP type (text/template over a
	// TemplateData).
	Template string
	Match    []string // Alertmanager's matchers: severity="critical"
	// RepeatInterval sends a firing alert's webhook again this often
	// while it fires; 0: once.
	RepeatInterval time.Duration
	// GroupWait holds firing alerts this long to send those that fired
	// together as one message, grouped by the GroupBy labels; 0: each
	// alert on its own.
	GroupWait time.Duration
	GroupBy   []string
	// Samples, for an MQTT receiver, publishes every sample too
	// (MQTTSamples).
	Samples bool
	// Email's: From, To, the relay's Username (Secret is its password),
	// NoTLS to send without STARTTLS, CAFile to trust.
	From     string
	To       []string
	Username string
	NoTLS    bool
	CAFile   string
	Format   string   // a webhook's: FormatStandard (the default) or FormatAlertmanager
	Events   []string // event types or patterns; default alert.*
}

// Validate says what is wrong with a configured receiver: an error per
// field, each "field: what is wrong".
func (c ConfiguredReceiver) Validate() []error {
	_, errs := c.receiver(time.Time{})
	return errs
}

// receiver is the receiver to save for c, at now.
func (c ConfiguredReceiver) receiver(now time.Time) (Receiver, []error) {
	r := Receiver{ID: "cfg-" + c.Name, Type: c.Type, Events: c.Events, Format: c.Format, Secret: c.Secret, ChatID: c.ChatID,
		From: c.From, To: c.To, Username: c.Username, NoTLS: c.NoTLS, CAFile: c.CAFile, Template: c.Template, Match: c.Match, RepeatInterval: Interval(c.RepeatInterval),
		GroupWait: Interval(c.GroupWait), GroupBy: c.GroupBy, Status: ReceiverActive,
		Origin: originConfig, Description: "configured receiver " + c.Name, CreatedAt: now, UpdatedAt: now}
	if r.Type == "" {
		r.Type = TypeWebhook
	}
	if r.Format == "" {
		r.Format = FormatStandard
	}
	if len(r.Events) == 0 {
		r.Events = []string{"alert.*"}
	}
	errs := []error{checkName(c.Name)}
	r.URL = c.URL
	if r.URL == "" { // Telegram's and PagerDuty's are their service's
		r.URL = map[string]string{TypeTelegram: TelegramAPI, TypePagerDuty: PagerDutyAPI}[r.Type]
	}
	if r.Type != TypeEmail && r.Type != TypeMQTT { // an email's is smtp://, an MQTT broker's mqtt://, checked with their fields
		u, err := checkURL(r.URL, true)
		r.URL = u
		errs = append(errs, err)
	}
	if r.Type == TypeWebhook {
		errs = append(errs, checkSecret(c.Secret))
	}
	errs = append(errs, checkFormat(r.Format), checkEvents(r.Events))
	errs = append(errs, checkMatch(r.Match), checkRepeat(r.RepeatInterval), checkGroup(r))
	errs = append(errs, checkType(r)...)
	if r.Type == TypeMQTT && r.GroupWait > 0 {
		errs = append(errs, errors.New("group_wait: an MQTT receiver keeps one retained message per alert"))
	}
	if r.Type == TypeEmail && r.Template != "" {
		errs = append(errs, errors.New("template: an email is written by vigil; a template is for the HTTP types"))
	} else {
		errs = append(errs, checkTemplate(r))
	}
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return r, out
}

// Where a receiver comes from (Receiver.Origin).
const (
	originConfig = "config"
	originAPI    = "api"
)

// ErrConfigured is returned for a change, through the API, to a receiver
// the configuration file declares: it is changed there (what the API did
// would be undone when vigil starts again).
var ErrConfigured = errors.New("alerts: configured in the file")

// editable returns the receiver id names, unless the file declares it.
func (rs *Receivers) editable(ctx context.Context, id string) (Receiver, error) {
	r, err := rs.Outbox.Receiver(ctx, id)
	if err == nil && r.Origin == originConfig {
		return Receiver{}, fmt.Errorf("%w: receiver %s is declared in alerts.receivers (name %q); change it there and restart vigil",
			ErrConfigured, id, strings.TrimPrefix(id, "cfg-"))
	}
	return r, err
}

// ErrInvalid wraps errors in a receiver request that the client must fix.
var ErrInvalid = errors.New("invalid")

func invalid(err error) error {
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// ReceiverInput is what a client sends to create or change a receiver.
// Unset fields keep their value on update.
type ReceiverInput struct {
	URL            *string   `json:"url"`
	Events         *[]string `json:"events"`
	Format         *string   `json:"format"`
	Description    *string   `json:"description"`
	Status         *string   `json:"status"`          // "active" or "disabled" (an unverified one stays pending)
	Match          *[]string `json:"match"`           // the alerts it takes; [] takes every one
	RepeatInterval *Duration `json:"repeat_interval"` // "4h"; "0s": no repeats
	GroupWait      *Duration `json:"group_wait"`      // "30s"; "0s": each alert on its own
	GroupBy        *[]string `json:"group_by"`
}

// checkRepeat says what is wrong with a repeat interval.
func checkRepeat(d Interval) error {
	if d != 0 && time.Duration(d) < MinRepeatInterval {
		return fmt.Errorf("repeat_interval: %s is shorter than %s", time.Duration(d), MinRepeatInterval)
	}
	return nil
}

// apply sets the fields in, by the rules of every receiver's fields (its
// URL without credentials), and the defaults when creating.
func (in ReceiverInput) apply(r *Receiver, creating bool) error {
	if in.URL == nil && creating {
		return invalid(errors.New("url: required"))
	}
	if in.URL != nil {
		u, err := checkURL(*in.URL, false)
		if err != nil {
			return invalid(err)
		}
		r.URL = u
	}
	if in.Events == nil && creating {
		r.Events = []string{"alert.*"}
	} else if in.Events != nil {
		if err := checkEvents(*in.Events); err != nil {
			return invalid(err)
		}
		r.Events = *in.Events
	}
	if in.Format == nil && creating {
		r.Format = FormatStandard
	} else if in.Format != nil {
		if err := checkFormat(*in.Format); err != nil {
			return invalid(err)
		}
		r.Format = *in.Format
	}
	if in.Description != nil {
		if err := checkDescription(*in.Description); err != nil {
			return invalid(err)
		}
		r.Description = *in.Description
	}
	if in.Match != nil {
		if err := checkMatch(*in.Match); err != nil {
			return invalid(err)
		}
		r.Match = *in.Match
	}
	if in.RepeatInterval != nil {
		if err := checkRepeat(Interval(*in.RepeatInterval)); err != nil {
			return invalid(err)
		}
		r.RepeatInterval = Interval(*in.RepeatInterval)
	}
	if in.GroupWait != nil {
		r.GroupWait = Interval(*in.GroupWait)
	}
	if in.GroupBy != nil {
		r.GroupBy = *in.GroupBy
	}
	if in.GroupWait != nil || in.GroupBy != nil {
		if err := checkGroup(*r); err != nil {
			return invalid(err)
		}
	}
	if in.Status != nil {
		return in.applyStatus(r)
	}
	return nil
}

// applyStatus turns a receiver on or off; only the challenge activates one
// that is pending.
func (in ReceiverInput) applyStatus(r *Receiver) error {
	switch *in.Status {
	case ReceiverDisabled:
		r.Status = ReceiverDisabled
	case ReceiverActive:
		if r.Status == ReceiverPending {
			return invalid(errors.New("status: the receiver has not answered the verification challenge yet"))
		}
		r.Status = ReceiverActive
	default:
		return invalid(fmt.Errorf("status: %q is not active or disabled", *in.Status))
	}
	return nil
}

// Receivers is the service behind the receivers API — receivers that
// subscribe themselves, their verification, secrets, test events and
// delivery history — and Configure, for the ones in the config file. It
// is safe for concurrent use.
type Receivers struct {
	Outbox Outbox
	Wake   func() // wakes the dispatcher; may be nil
	Now    func() time.Time
}

// An Outbox keeps the receivers and their deliveries, for Receivers: DB,
// in vigil.db, on one machine (sent by Dispatcher); cluster.Webhooks, in
// NATS JetStream, shared by the replicas (and sent by whichever is up).
type Outbox interface {
	Receiver(ctx context.Context, id string) (Receiver, error)
	ListReceivers(ctx context.Context) ([]Receiver, error) // ordered by id
	// PutReceiver creates or replaces a receiver, its secrets and
	// challenge with it.
	PutReceiver(ctx context.Context, r Receiver) error
	// DeleteReceiver removes a receiver; its queued deliveries die.
	DeleteReceiver(ctx context.Context, id string) error
	// Enqueue queues one delivery to r (a verification or a test event),
	// whose body render makes with the outbox's sequence number, and
	// returns its id.
	Enqueue(ctx context.Context, r Receiver, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error)
	// RetryDelivery queues a dead delivery again (ErrNotDead if it is
	// not dead).
	RetryDelivery(ctx context.Context, id string, now time.Time) error
	// Backlog is how many events wait for a receiver, not yet started.
	Backlog(ctx context.Context, receiverID string) (int, error)
	Delivery(ctx context.Context, id string) (Delivery, error)
	// Deliveries are a receiver's, newest first.
	Deliveries(ctx context.Context, receiverID string, limit int) ([]Delivery, error)
}

var _ Outbox = (*DB)(nil)

func (rs *Receivers) now() time.Time {
	if rs.Now == nil {
		return time.Now()
	}
	return rs.Now()
}

func (rs *Receivers) wake() {
	if rs.Wake != nil {
		rs.Wake()
	}
}

// Configure saves the receivers of the config file: each as active,
// keeping when it was first configured, and it disables configured
// receivers that are no longer in the file (their history stays). An
// invalid one (see ConfiguredReceiver.Validate) changes nothing.
func (rs *Receivers) Configure(ctx context.Context, configured []ConfiguredReceiver) error {
	now := rs.now()
	keep := map[string]bool{}
	var saves []Receiver
	for _, c := range configured {
		r, errs := c.receiver(now)
		if len(errs) > 0 {
			return fmt.Errorf("receiver %q: %w", c.Name, errors.Join(errs...))
		}
		if old, err := rs.Outbox.Receiver(ctx, r.ID); err == nil {
			r.CreatedAt = old.CreatedAt
		}
		saves = append(saves, r)
		keep[r.ID] = true
	}
	all, err := rs.Outbox.ListReceivers(ctx)
	if err != nil {
		return err
	}
	for _, r := range all {
		if r.Origin == originConfig && !keep[r.ID] && r.Status != ReceiverDisabled {
			r.Status, r.UpdatedAt = ReceiverDisabled, now
			saves = append(saves, r)
		}
	}
	for _, r := range saves {
		if err := rs.Outbox.PutReceiver(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// Create saves a receiver as pending verification and queues the signed
// verification event. The secret is returned only here.
func (rs *Receivers) Create(ctx context.Context, in ReceiverInput) (_ Receiver, err error) {
	defer func() { err = storeErr(err) }()
	now := rs.now()
	r := Receiver{ID: newID("rcv_"), Type: TypeWebhook, Origin: originAPI, Status: ReceiverPending, Secret: NewSecret(), CreatedAt: now, UpdatedAt: now}
	if err := in.apply(&r, true); err != nil {
		return Receiver{}, err
	}
	if in.Status != nil && *in.Status == ReceiverDisabled {
		r.Status = ReceiverDisabled
	}
	r.Challenge = strings.TrimPrefix(NewSecret(), "whsec_")
	if err := rs.Outbox.PutReceiver(ctx, r); err != nil {
		return Receiver{}, err
	}
	if _, err := rs.Outbox.Enqueue(ctx, r, EventVerify, now, func(seq uint64) ([]byte, error) {
		return verifyPayload(r.ID, r.Challenge, now, seq)
	}); err != nil {
		return Receiver{}, err
	}
	rs.wake()
	return r, nil
}

// Subscribe adds a browser's push subscription (or replaces the one of
// the same endpoint) as a webpush receiver.
func (rs *Receivers) Subscribe(ctx context.Context, in PushInput) (_ Receiver, err error) {
	defer func() { err = storeErr(err) }()
	r, err := in.Receiver(rs.now())
	if err != nil {
		return Receiver{}, err
	}
	if old, err := rs.Outbox.Receiver(ctx, r.ID); err == nil {
		r.CreatedAt = old.CreatedAt
	}
	var renewed string
	if in.Replaces != "" && in.Replaces != in.Endpoint {
		if old, err := rs.Outbox.Receiver(ctx, PushReceiverID(in.Replaces)); err == nil && old.Type == TypeWebPush {
			r.Match, r.Description, r.CreatedAt, renewed = old.Match, old.Description, old.CreatedAt, old.ID
		}
	}
	if err := rs.Outbox.PutReceiver(ctx, r); err != nil {
		return Receiver{}, err
	}
	if renewed != "" {
		if err := rs.Outbox.DeleteReceiver(ctx, renewed); err != nil && !errors.Is(err, ErrNotFound) {
			return Receiver{}, err
		}
	}
	rs.wake()
	return r, nil
}

// Unsubscribe removes the push subscription of a browser's endpoint.
func (rs *Receivers) Unsubscribe(ctx context.Context, endpoint string) error {
	err := rs.Outbox.DeleteReceiver(ctx, PushReceiverID(endpoint))
	if errors.Is(err, ErrNotFound) {
		return &NotFoundError{"push subscription for", endpoint}
	}
	return storeErr(err)
}

// Update changes a receiver made through the API.
func (rs *Receivers) Update(ctx context.Context, id string, in ReceiverInput) (_ Receiver, err error) {
	defer func() { err = storeErr(err) }()
	r, err := rs.editable(ctx, id)
	if err != nil {
		return Receiver{}, err
	}
	if err := in.apply(&r, false); err != nil {
		return Receiver{}, err
	}
	r.UpdatedAt = rs.now()
	return r, rs.Outbox.PutReceiver(ctx, r)
}

// Rotate gives a receiver a new secret; the old one keeps signing, beside
// the new, for SecretOverlap.
func (rs *Receivers) Rotate(ctx context.Context, id string) (_ Receiver, err error) {
	defer func() { err = storeErr(err) }()
	r, err := rs.editable(ctx, id)
	if err != nil {
		return Receiver{}, err
	}
	now := rs.now()
	r.OldSecret, r.OldSecretUntil, r.Secret, r.UpdatedAt = r.Secret, now.Add(SecretOverlap), NewSecret(), now
	return r, rs.Outbox.PutReceiver(ctx, r)
}

// Test queues a signed test event and returns its delivery id.
func (rs *Receivers) Test(ctx context.Context, id string) (_ string, err error) {
	defer func() { err = storeErr(err) }()
	r, err := rs.Outbox.Receiver(ctx, id)
	if err != nil {
		return "", err
	}
	now := rs.now()
	did, err := rs.Outbox.Enqueue(ctx, r, EventTest, now, func(seq uint64) ([]byte, error) {
		return testPayload(r, now, seq)
	})
	if err == nil {
		rs.wake()
	}
	return did, err
}

// Delete removes a receiver made through the API.
func (rs *Receivers) Delete(ctx context.Context, id string) (err error) {
	defer func() { err = storeErr(err) }()
	if _, err := rs.editable(ctx, id); err != nil {
		return err
	}
	return rs.Outbox.DeleteReceiver(ctx, id)
}

// Retry sends a dead delivery again.
func (rs *Receivers) Retry(ctx context.Context, id string) (err error) {
	defer func() { err = storeErr(err) }()
	err = rs.Outbox.RetryDelivery(ctx, id, rs.now())
	if err == nil {
		rs.wake()
	}
	return err
}

// Get, List, Backlog, Delivery and Deliveries read the outbox.
func (rs *Receivers) Get(ctx context.Context, id string) (Receiver, error) {
	return rs.Outbox.Receiver(ctx, id)
}

func (rs *Receivers) List(ctx context.Context) ([]Receiver, error) {
	return rs.Outbox.ListReceivers(ctx)
}

// Backlog is how many events wait for a receiver, not yet started.
func (rs *Receivers) Backlog(ctx context.Context, id string) (int, error) {
	return rs.Outbox.Backlog(ctx, id)
}

func (rs *Receivers) Delivery(ctx context.Context, id string) (Delivery, error) {
	return rs.Outbox.Delivery(ctx, id)
}

func (rs *Receivers) Deliveries(ctx context.Context, receiverID string, limit int) ([]Delivery, error) {
	return rs.Outbox.Deliveries(ctx, receiverID, limit)
}

// storeErr marks an error of the database as the store's (ErrStore), so the
// HTTP edge answers it with 503 and what the database said, rather than
// as an unforeseen failure.
func storeErr(err error) error {
	var db interface{ Code() int } // the SQLite driver's errors
	if errors.As(err, &db) && !errors.Is(err, ErrStore) {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return err
}
