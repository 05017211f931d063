package alerts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"
)

// Delivery states.
const (
	DeliveryQueued    = "queued"    // waiting for its next attempt
	DeliveryInFlight  = "in_flight" // an attempt is running
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead" // given up: a permanent failure, or out of attempts
)

// Subscription states.
const (
	SubscriptionActive   = "active"
	SubscriptionPending  = "pending_verification"
	SubscriptionDisabled = "disabled" // the receiver answered 410 Gone, or was turned off
)

// A Subscription is a receiver of webhooks: configured, or subscribed
// through the API.
type Subscription struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Format      string    `json:"format"`
	Description string    `json:"description,omitempty"`
	Status      string    `json:"status"`
	Origin      string    `json:"origin"` // "config" or "api"
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	Secret         string    `json:"-"`
	OldSecret      string    `json:"-"`
	OldSecretUntil time.Time `json:"-"`
	challenge      string
}

// Wants reports whether the subscription takes an event type; patterns may
// use wildcards ("alert.*", "*").
func (s Subscription) Wants(typ string) bool {
	for _, p := range s.Events {
		if ok, _ := path.Match(p, typ); ok || p == "*" {
			return true
		}
	}
	return false
}

// secrets are the secrets to sign with now: the current one, and the old
// one for a day after a rotation.
func (s Subscription) secrets(now time.Time) []string {
	out := []string{s.Secret}
	if s.OldSecret != "" && now.Before(s.OldSecretUntil) {
		out = append(out, s.OldSecret)
	}
	return out
}

// A Delivery is one message to one receiver and its attempts.
type Delivery struct {
	ID             string    `json:"id"` // also the webhook-id header, the same on every attempt
	SubscriptionID string    `json:"subscription_id"`
	EventType      string    `json:"event_type"`
	State          string    `json:"state"`
	Attempts       []Attempt `json:"attempts"`
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	Payload        []byte    `json:"-"`
	LastError      string    `json:"last_error,omitempty"`
}

// An Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status,omitempty"` // HTTP status; 0 when there was no answer
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

const outboxSchema = `
CREATE TABLE IF NOT EXISTS subscriptions (
	id               TEXT PRIMARY KEY,
	body             TEXT NOT NULL,
	secret           TEXT NOT NULL,
	old_secret       TEXT NOT NULL DEFAULT '',
	old_secret_until INTEGER NOT NULL DEFAULT 0,
	challenge        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS deliveries (
	seq             INTEGER PRIMARY KEY AUTOINCREMENT,
	id              TEXT NOT NULL UNIQUE,
	subscription_id TEXT NOT NULL,
	event_type      TEXT NOT NULL,
	payload         BLOB NOT NULL,
	state           TEXT NOT NULL,
	next_attempt_at INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	last_error      TEXT NOT NULL DEFAULT '',
	payload_id      INTEGER NOT NULL DEFAULT 0 -- a body shared by one event's deliveries, in payloads
);
CREATE TABLE IF NOT EXISTS payloads (
	id   INTEGER PRIMARY KEY,
	body BLOB NOT NULL
);
DROP INDEX IF EXISTS deliveries_due; -- claims go per receiver now, through deliveries_sub_due
CREATE INDEX IF NOT EXISTS deliveries_sub ON deliveries (subscription_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_sub_due ON deliveries (subscription_id, state, next_attempt_at);
CREATE TABLE IF NOT EXISTS attempts (
	delivery_id TEXT NOT NULL,
	at          INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	error       TEXT NOT NULL,
	duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);`

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// newID is a prefix and 16 random bytes, URL-safe.
func newID(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// PutSubscription creates or replaces a subscription.
func (d *DB) PutSubscription(ctx context.Context, s Subscription) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = d.db.ExecContext(ctx, `INSERT INTO subscriptions (id, body, secret, old_secret, old_secret_until) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body, secret = excluded.secret,
		old_secret = excluded.old_secret, old_secret_until = excluded.old_secret_until`,
		s.ID, string(body), s.Secret, s.OldSecret, ms(s.OldSecretUntil))
	d.forgetSubscriptions()
	if err != nil {
		return fmt.Errorf("save subscription: %w", err)
	}
	return nil
}

// ErrNotFound is returned for an unknown subscription or delivery.
var ErrNotFound = errors.New("alerts: not found")

// Subscription returns one subscription.
func (d *DB) Subscription(ctx context.Context, id string) (Subscription, error) {
	subs, err := d.Subscriptions(ctx)
	if err != nil {
		return Subscription{}, err
	}
	for _, s := range subs {
		if s.ID == id {
			return s, nil
		}
	}
	return Subscription{}, ErrNotFound
}

// Subscriptions lists every subscription. They are read from the
// database once and kept until one changes: the dispatcher asks on every
// pass.
func (d *DB) Subscriptions(ctx context.Context) ([]Subscription, error) {
	d.subsMu.Lock()
	defer d.subsMu.Unlock()
	if d.subs == nil {
		subs, err := d.subscriptions(ctx, d.db, `ORDER BY id`)
		if err != nil {
			return nil, err
		}
		if subs == nil {
			subs = []Subscription{}
		}
		d.subs = subs
	}
	return slices.Clone(d.subs), nil
}

// forgetSubscriptions drops the cached list after a change.
func (d *DB) forgetSubscriptions() {
	d.subsMu.Lock()
	d.subs = nil
	d.subsMu.Unlock()
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (d *DB) subscriptions(ctx context.Context, q querier, where string, args ...any) ([]Subscription, error) {
	rows, err := q.QueryContext(ctx, `SELECT body, secret, old_secret, old_secret_until, challenge FROM subscriptions `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var body string
		var s Subscription
		var until int64
		var challenge string
		if err := rows.Scan(&body, &s.Secret, &s.OldSecret, &until, &challenge); err != nil {
			return nil, err
		}
		secret, old := s.Secret, s.OldSecret
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return nil, err
		}
		s.Secret, s.OldSecret, s.OldSecretUntil, s.challenge = secret, old, fromMS(until), challenge
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteSubscription removes a subscription; its pending deliveries die.
func (d *DB) DeleteSubscription(ctx context.Context, id string) error {
	res, err := d.db.ExecContext(ctx, `DELETE FROM subscriptions WHERE id = ?`, id)
	d.forgetSubscriptions()
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	_, err = d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, last_error = 'subscription deleted' WHERE subscription_id = ? AND state = ?`,
		DeliveryDead, id, DeliveryQueued)
	return err
}

// enqueue adds one delivery inside a transaction. The payload is built by
// render with the delivery's sequence number.
func (d *DB) enqueue(ctx context.Context, tx *sql.Tx, sub Subscription, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error) {
	id := newID("msg_")
	seq := d.seq.Add(1)
	body, err := render(seq)
	if err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (seq, id, subscription_id, event_type, payload, state, next_attempt_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, seq, id, sub.ID, typ, body, DeliveryQueued, ms(now), ms(now), ms(now)); err != nil {
		return "", fmt.Errorf("enqueue delivery: %w", err)
	}
	return id, nil
}

// Enqueue adds a delivery of a ready payload (a test event, a
// verification) to one subscription.
func (d *DB) Enqueue(ctx context.Context, sub Subscription, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	id, err := d.enqueue(ctx, tx, sub, typ, now, render)
	if err != nil {
		return "", err
	}
	return id, tx.Commit()
}

// Delivery returns one delivery with its attempts.
func (d *DB) Delivery(ctx context.Context, id string) (Delivery, error) {
	ds, err := d.deliveries(ctx, `WHERE d.id = ?`, id)
	if err != nil {
		return Delivery{}, err
	}
	if len(ds) == 0 {
		return Delivery{}, ErrNotFound
	}
	return ds[0], nil
}

// Deliveries lists a subscription's deliveries, newest first.
func (d *DB) Deliveries(ctx context.Context, subscriptionID string, limit int) ([]Delivery, error) {
	return d.deliveries(ctx, `WHERE d.subscription_id = ? ORDER BY d.seq DESC LIMIT ?`, subscriptionID, limit)
}

func (d *DB) deliveries(ctx context.Context, where string, args ...any) ([]Delivery, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT d.id, d.subscription_id, d.event_type, COALESCE(p.body, d.payload), d.state,
		d.next_attempt_at, d.created_at, d.updated_at, d.last_error
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load deliveries: %w", err)
	}
	var out []Delivery
	for rows.Next() {
		var x Delivery
		var next, created, updated int64
		if err := rows.Scan(&x.ID, &x.SubscriptionID, &x.EventType, &x.Payload, &x.State, &next, &created, &updated, &x.LastError); err != nil {
			rows.Close()
			return nil, err
		}
		x.CreatedAt, x.UpdatedAt = fromMS(created), fromMS(updated)
		if x.State == DeliveryQueued {
			x.NextAttemptAt = fromMS(next)
		}
		out = append(out, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		arows, err := d.db.QueryContext(ctx, `SELECT at, status, error, duration_ms FROM attempts WHERE delivery_id = ? ORDER BY at`, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Attempts = []Attempt{}
		for arows.Next() {
			var a Attempt
			var at int64
			if err := arows.Scan(&at, &a.Status, &a.Error, &a.DurationMS); err != nil {
				arows.Close()
				return nil, err
			}
			a.At = fromMS(at)
			out[i].Attempts = append(out[i].Attempts, a)
		}
		arows.Close()
	}
	return out, nil
}

// Retry queues a dead delivery again, now.
func (d *DB) Retry(ctx context.Context, id string, now time.Time) error {
	res, err := d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ?, updated_at = ?, last_error = '' WHERE id = ? AND state = ?`,
		DeliveryQueued, ms(now), ms(now), id, DeliveryDead)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.Delivery(ctx, id); err != nil {
			return err
		}
		return errors.New("only a dead delivery can be retried")
	}
	return nil
}

// claim is a due delivery handed to a worker.
type claim struct {
	Delivery
	sub      Subscription
	attempts int
}

// due returns queued deliveries whose time has come, oldest first, at
// most room(subscription) per receiver and limit in all, and marks them in
// flight. It asks per receiver (an index lookup each), so one receiver's
// backlog never crowds out another's deliveries.
func (d *DB) due(ctx context.Context, now time.Time, limit int, room func(subID string) int) ([]claim, error) {
	subs, err := d.Subscriptions(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]Subscription{}
	var out []claim
	for _, sub := range subs {
		n := room(sub.ID)
		if n <= 0 {
			continue
		}
		byID[sub.ID] = sub
		rows, err := d.db.QueryContext(ctx, `SELECT d.id, d.subscription_id, d.event_type, COALESCE(p.body, d.payload),
			(SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id), d.created_at, d.next_attempt_at
			FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id
			WHERE d.subscription_id = ? AND d.state = ? AND d.next_attempt_at <= ?
			ORDER BY d.next_attempt_at, d.seq LIMIT ?`, sub.ID, DeliveryQueued, ms(now), n)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var c claim
			var created, next int64
			if err := rows.Scan(&c.ID, &c.SubscriptionID, &c.EventType, &c.Payload, &c.attempts, &created, &next); err != nil {
				rows.Close()
				return nil, err
			}
			c.CreatedAt, c.NextAttemptAt = fromMS(created), fromMS(next)
			c.sub = sub
			out = append(out, c)
		}
		rows.Close()
	}
	slices.SortFunc(out, func(a, b claim) int { return a.NextAttemptAt.Compare(b.NextAttemptAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	for _, c := range out {
		if _, err := d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ?`, DeliveryInFlight, ms(now), c.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// record saves an attempt and the delivery's new state.
func (d *DB) record(ctx context.Context, id string, a Attempt, state string, next time.Time, lastErr string, now time.Time) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)`,
		id, ms(a.At), a.Status, a.Error, a.DurationMS); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ?, updated_at = ?, last_error = ? WHERE id = ?`,
		state, ms(next), ms(now), lastErr, id); err != nil {
		return err
	}
	return tx.Commit()
}

// requeueInFlight puts back deliveries that were in flight when vigil
// stopped: they are sent again (at least once).
func (d *DB) requeueInFlight(ctx context.Context, now time.Time) error {
	_, err := d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE state = ?`, DeliveryQueued, ms(now), DeliveryInFlight)
	return err
}

func (d *DB) setChallenge(ctx context.Context, id, challenge string) error {
	_, err := d.db.ExecContext(ctx, `UPDATE subscriptions SET challenge = ? WHERE id = ?`, challenge, id)
	d.forgetSubscriptions()
	return err
}

// setStatus changes a subscription's status.
func (d *DB) setStatus(ctx context.Context, id, status string, now time.Time) error {
	sub, err := d.Subscription(ctx, id)
	if err != nil {
		return err
	}
	sub.Status, sub.UpdatedAt = status, now
	return d.PutSubscription(ctx, sub)
}
