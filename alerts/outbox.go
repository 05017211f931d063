package alerts

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// The outbox, in vigil.db beside the alert states: the receivers, one row
// per webhook event (its body in each format, in payloads), each active
// receiver's cursor through the events, and the deliveries made of them
// as the dispatcher claims them, with their attempts. Its tables, their
// migrations from earlier versions, and every statement on them are here.

// Delivery states.
const (
	DeliveryQueued    = "queued"    // waiting for its next attempt
	DeliveryInFlight  = "in_flight" // an attempt is running
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead" // given up: a permanent failure, or out of attempts
)

// A Delivery is one message to one receiver and its attempts.
type Delivery struct {
	ID            string    `json:"id"` // also the webhook-id header, the same on every attempt
	ReceiverID    string    `json:"receiver_id"`
	EventType     string    `json:"event_type"`
	State         string    `json:"state"`
	Attempts      []Attempt `json:"attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	Payload       []byte    `json:"-"`
	LastError     string    `json:"last_error,omitempty"`
}

// An Attempt is one try of a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status,omitempty"` // HTTP status; 0 when there was no answer
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

const outboxSchema = `
CREATE TABLE IF NOT EXISTS receivers (
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
	receiver_id     TEXT NOT NULL,
	event_type      TEXT NOT NULL,
	payload         BLOB NOT NULL,
	state           TEXT NOT NULL,
	next_attempt_at INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	last_error      TEXT NOT NULL DEFAULT '',
	payload_id      INTEGER NOT NULL DEFAULT 0, -- a body shared by one event's deliveries, in payloads
	fingerprint     TEXT NOT NULL DEFAULT '' -- the alert's, or '' (tests, verifications)
);
CREATE TABLE IF NOT EXISTS payloads (
	id   INTEGER PRIMARY KEY,
	body BLOB NOT NULL
);
-- The webhook events, one row each however many receivers take it, with
-- its body in each format. A receiver's delivery of one is created when
-- the dispatcher starts on it; cursors say how far each active receiver
-- has got.
CREATE TABLE IF NOT EXISTS events (
	seq                  INTEGER PRIMARY KEY,
	type                 TEXT NOT NULL,
	standard_payload     INTEGER NOT NULL,
	alertmanager_payload INTEGER NOT NULL,
	created_at           INTEGER NOT NULL,
	fingerprint          TEXT NOT NULL DEFAULT '', -- the alert's; its webhooks go to each receiver in order
	labels               TEXT NOT NULL DEFAULT '' -- the alert's labels to match receivers on, JSON
);
CREATE TABLE IF NOT EXISTS cursors (
	receiver_id TEXT PRIMARY KEY,
	seq         INTEGER NOT NULL -- the newest event this receiver has taken (or passed over: not its type)
);
CREATE INDEX IF NOT EXISTS deliveries_receiver ON deliveries (receiver_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_receiver_due ON deliveries (receiver_id, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS attempts (
	delivery_id TEXT NOT NULL,
	at          INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	error       TEXT NOT NULL,
	duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);`

// migrateOutbox creates the outbox's tables, and brings those of a
// database from an earlier version up to date.
func migrateOutbox(db *sql.DB) error {
	if err := renameToReceivers(db); err != nil {
		return err
	}
	if _, err := db.Exec(outboxSchema); err != nil {
		return err
	}
	for _, m := range []string{
		`DROP INDEX IF EXISTS deliveries_due`, // claims go per receiver now, through deliveries_receiver_due
		// Databases from before these columns existed.
		`ALTER TABLE receivers ADD COLUMN challenge TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE deliveries ADD COLUMN payload_id INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE deliveries ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE events ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE events ADD COLUMN labels TEXT NOT NULL DEFAULT ''`,
		// A grouping receiver's firings: held for its group_wait (held),
		// and once claimed the group's lead (group_id, the lead's own id
		// on the lead).
		`ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE deliveries ADD COLUMN group_id TEXT NOT NULL DEFAULT ''`,
		// Undelivered webhooks of one alert to one receiver: a newer one
		// waits for these (after the column it needs exists).
		`CREATE INDEX IF NOT EXISTS deliveries_alert_open ON deliveries (receiver_id, fingerprint, seq) WHERE state IN ('queued', 'in_flight')`,
	} {
		if _, err := db.Exec(m); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			return err
		}
	}
	return nil
}

// renameToReceivers brings a database from before "receiver" was the one
// name up to date, in one transaction: the subscriptions table becomes
// receivers, and the subscription_id columns of deliveries and cursors
// become receiver_id (SQLite rewrites the indexes on them). The two
// indexes named after subscriptions go; the schema makes them again under
// their new names. Rows stay as they are. A database that has the new
// names already is left alone.
func renameToReceivers(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var renames []string
	var old int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'subscriptions'`).Scan(&old); err != nil {
		return err
	}
	if old > 0 {
		renames = append(renames, `ALTER TABLE subscriptions RENAME TO receivers`)
	}
	for _, table := range []string{"deliveries", "cursors"} {
		if err := tx.QueryRow(`SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = 'subscription_id'`, table).Scan(&old); err != nil {
			return err
		}
		if old > 0 {
			renames = append(renames, `ALTER TABLE `+table+` RENAME COLUMN subscription_id TO receiver_id`)
		}
	}
	if len(renames) == 0 {
		return nil
	}
	renames = append(renames, `DROP INDEX IF EXISTS deliveries_sub`, `DROP INDEX IF EXISTS deliveries_sub_due`)
	for _, q := range renames {
		if _, err := tx.Exec(q); err != nil {
			return fmt.Errorf("rename subscriptions to receivers: %w", err)
		}
	}
	return tx.Commit()
}

// The outbox's statements that run inside transactions, prepared when the
// database opens.
const (
	sqlInsertPayload = `INSERT INTO payloads (body) VALUES (?)`
	sqlInsertEvent   = `INSERT INTO events (seq, type, standard_payload, alertmanager_payload, created_at, fingerprint, labels) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlTakeEvents    = `SELECT e.seq, e.type, e.created_at, p.id, p.body, e.fingerprint, e.labels FROM events e
		JOIN payloads p ON p.id = CASE WHEN ? = 'alertmanager' THEN e.alertmanager_payload ELSE e.standard_payload END
		WHERE e.seq > ? ORDER BY e.seq LIMIT 64`
	sqlInsertDelivery = `INSERT INTO deliveries (seq, id, receiver_id, event_type, payload, payload_id, state, next_attempt_at, created_at, updated_at, fingerprint, held)
		VALUES (?, ?, ?, ?, x'', ?, ?, ?, ?, ?, ?, ?)`
	// An alert's webhook to a receiver is held back while an earlier one
	// is queued or in flight, so they arrive in order.
	alertOpenBefore = `EXISTS (SELECT 1 FROM deliveries o WHERE o.receiver_id = d.receiver_id AND o.fingerprint = d.fingerprint
		AND d.fingerprint != '' AND o.seq < d.seq AND o.state IN ('queued', 'in_flight'))`
	sqlAlertOpen  = `SELECT COUNT(*) FROM deliveries WHERE receiver_id = ? AND fingerprint = ? AND state IN ('queued', 'in_flight')`
	sqlMoveCursor = `UPDATE cursors SET seq = ? WHERE receiver_id = ?`
	// Whether a receiver got an alert's firing (its latest delivery of
	// the alert is one).
	sqlFired = `SELECT COALESCE((SELECT event_type = 'alert.firing' FROM deliveries WHERE receiver_id = ? AND fingerprint = ?
		ORDER BY seq DESC LIMIT 1), 0)`
	sqlRetries = `SELECT d.id, d.receiver_id, d.event_type, COALESCE(p.body, d.payload),
		(SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id), d.created_at, d.next_attempt_at, d.held, d.group_id
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id
		WHERE d.receiver_id = ? AND d.state = 'queued' AND d.next_attempt_at <= ? AND d.group_id IN ('', d.id) AND NOT ` + alertOpenBefore + `
		ORDER BY d.next_attempt_at, d.seq LIMIT ?`
	// A grouping receiver's firings waiting, due or not, that may go now:
	// the companions of a group that is due.
	sqlGroupable = `SELECT d.id, d.receiver_id, d.event_type, COALESCE(p.body, d.payload), 0, d.created_at, d.next_attempt_at, d.held, d.group_id
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id
		WHERE d.receiver_id = ? AND d.state = 'queued' AND d.held AND d.group_id = ''
		AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id) AND NOT ` + alertOpenBefore + `
		ORDER BY d.seq LIMIT ?`
	// A group's members waiting with their lead.
	sqlMembers = `SELECT d.id, d.receiver_id, d.event_type, COALESCE(p.body, d.payload),
		(SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id), d.created_at, d.next_attempt_at, d.held, d.group_id
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id
		WHERE d.group_id = ? AND d.id != d.group_id AND d.state = 'queued' ORDER BY d.seq`
	sqlJoinGroup     = `UPDATE deliveries SET group_id = ? WHERE id = ?`
	sqlNextRetry     = `SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.state = 'queued' AND NOT ` + alertOpenBefore
	sqlInFlight      = `UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ?`
	sqlInsertAttempt = `INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)`
	sqlRecord        = `UPDATE deliveries SET state = ?, next_attempt_at = ?, updated_at = ?, last_error = ? WHERE id = ?`
	// Whether a webhook of the same alert waits for this delivery (now
	// delivered or dead, so no longer open itself).
	sqlWaitsBehind = `SELECT EXISTS (SELECT 1 FROM deliveries d, deliveries o WHERE d.id = ? AND d.fingerprint != ''
		AND o.receiver_id = d.receiver_id AND o.fingerprint = d.fingerprint AND o.state IN ('queued', 'in_flight'))`
)

var outboxStatements = []string{sqlInsertPayload, sqlInsertEvent, sqlTakeEvents, sqlInsertDelivery, sqlMoveCursor,
	sqlRetries, sqlGroupable, sqlMembers, sqlJoinGroup, sqlNextRetry, sqlInFlight, sqlInsertAttempt, sqlRecord, sqlWaitsBehind, sqlAlertOpen, sqlFired}

// openOutbox picks up where the database left off: the newest sequence
// number and event, and a cursor for each active receiver from before
// cursors existed (it starts from here).
func (d *DB) openOutbox(ctx context.Context) error {
	var last, lastEvent sql.NullInt64
	if err := d.db.QueryRowContext(ctx, `SELECT MAX(seq), (SELECT MAX(seq) FROM events) FROM deliveries`).Scan(&last, &lastEvent); err != nil {
		return err
	}
	d.seq.Store(uint64(max(last.Int64, lastEvent.Int64)))
	d.lastEvent.Store(uint64(lastEvent.Int64))
	rcvs, err := d.ListReceivers(ctx)
	if err != nil {
		return err
	}
	for _, s := range rcvs {
		if err := d.syncCursor(ctx, d.db, s); err != nil {
			return err
		}
	}
	return nil
}

// newID is a prefix and 16 random bytes, URL-safe.
func newID(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// PutReceiver creates or replaces a receiver.
func (d *DB) PutReceiver(ctx context.Context, s Receiver) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save receiver: %w", err)
	}
	defer tx.Rollback()
	defer d.forgetReceivers()
	if _, err := tx.ExecContext(ctx, `INSERT INTO receivers (id, body, secret, old_secret, old_secret_until, challenge) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body, secret = excluded.secret,
		old_secret = excluded.old_secret, old_secret_until = excluded.old_secret_until, challenge = excluded.challenge`,
		s.ID, string(body), s.Secret, s.OldSecret, ms(s.OldSecretUntil), s.Challenge); err != nil {
		return fmt.Errorf("save receiver: %w", err)
	}
	if err := d.syncCursor(ctx, tx, s); err != nil {
		return fmt.Errorf("save receiver: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save receiver: %w", err)
	}
	return nil
}

// syncCursor gives an active receiver a cursor at the newest event,
// if it has none, and takes it from one that is not active: a receiver
// gets the events from when it became active, not those from before or
// from while it was disabled.
func (d *DB) syncCursor(ctx context.Context, x execer, s Receiver) error {
	var err error
	if s.Status == ReceiverActive {
		_, err = x.ExecContext(ctx, `INSERT OR IGNORE INTO cursors (receiver_id, seq) VALUES (?, ?)`, s.ID, d.lastEvent.Load())
	} else {
		_, err = x.ExecContext(ctx, `DELETE FROM cursors WHERE receiver_id = ?`, s.ID)
	}
	return err
}

// ErrNotFound is returned for an unknown receiver or delivery (as a
// *NotFoundError that names it).
var ErrNotFound = errors.New("alerts: not found")

// A NotFoundError names what was not found: `no receiver "rcv_x"`.
type NotFoundError struct{ What, ID string }

func (e *NotFoundError) Error() string        { return fmt.Sprintf("no %s %q", e.What, e.ID) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// ErrNotDead is returned when retrying a delivery that is not dead.
var ErrNotDead = errors.New("alerts: only a dead delivery can be retried")

// Receiver returns one receiver.
func (d *DB) Receiver(ctx context.Context, id string) (Receiver, error) {
	rcvs, err := d.ListReceivers(ctx)
	if err != nil {
		return Receiver{}, err
	}
	for _, s := range rcvs {
		if s.ID == id {
			return s, nil
		}
	}
	return Receiver{}, &NotFoundError{"receiver", id}
}

// ListReceivers lists every receiver. They are read from the
// database once and kept until one changes: the dispatcher asks on every
// pass.
func (d *DB) ListReceivers(ctx context.Context) ([]Receiver, error) {
	d.rcvMu.Lock()
	defer d.rcvMu.Unlock()
	if err := d.loadLocked(ctx); err != nil {
		return nil, err
	}
	return slices.Clone(d.rcvs), nil
}

// loadLocked reads the receivers and their cursors if they are not
// cached.
func (d *DB) loadLocked(ctx context.Context) error {
	if d.rcvs != nil {
		return nil
	}
	rcvs, err := d.loadReceivers(ctx, d.db, `ORDER BY id`)
	if err != nil {
		return err
	}
	rows, err := d.db.QueryContext(ctx, `SELECT receiver_id, seq FROM cursors`)
	if err != nil {
		return err
	}
	defer rows.Close()
	curs := map[string]uint64{}
	for rows.Next() {
		var id string
		var seq uint64
		if err := rows.Scan(&id, &seq); err != nil {
			return err
		}
		curs[id] = seq
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if rcvs == nil {
		rcvs = []Receiver{}
	}
	d.rcvs, d.curs = rcvs, curs
	return nil
}

// cached returns the cached receivers and cursors themselves, not
// copies: callers must not change them. (Both are replaced, never changed
// in place, so they stay as they were for whoever holds them.)
func (d *DB) cached(ctx context.Context) ([]Receiver, map[string]uint64, error) {
	d.rcvMu.Lock()
	defer d.rcvMu.Unlock()
	if err := d.loadLocked(ctx); err != nil {
		return nil, nil, err
	}
	return d.rcvs, d.curs, nil
}

// moved records cursors that a committed transaction moved.
func (d *DB) moved(curs map[string]uint64) {
	if len(curs) == 0 {
		return
	}
	d.rcvMu.Lock()
	defer d.rcvMu.Unlock()
	if d.curs == nil {
		return // reloaded from the database next time
	}
	next := maps.Clone(d.curs)
	for id, seq := range curs {
		if _, ok := next[id]; ok {
			next[id] = seq
		}
	}
	d.curs = next
}

// retryAt lowers the time of the earliest queued delivery, so the next
// pass looks for due ones.
func (d *DB) retryAt(t time.Time) {
	d.retryMu.Lock()
	defer d.retryMu.Unlock()
	if v := ms(t); v < d.nextRetry {
		d.nextRetry = v
	}
}

// forgetReceivers drops the cached list after a change.
func (d *DB) forgetReceivers() {
	d.rcvMu.Lock()
	d.rcvs, d.curs = nil, nil
	d.rcvMu.Unlock()
}

func (d *DB) loadReceivers(ctx context.Context, q querier, where string, args ...any) ([]Receiver, error) {
	rows, err := q.QueryContext(ctx, `SELECT body, secret, old_secret, old_secret_until, challenge FROM receivers `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load receivers: %w", err)
	}
	defer rows.Close()
	var out []Receiver
	for rows.Next() {
		var body string
		var s Receiver
		var until int64
		var challenge string
		if err := rows.Scan(&body, &s.Secret, &s.OldSecret, &until, &challenge); err != nil {
			return nil, err
		}
		secret, old := s.Secret, s.OldSecret
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return nil, err
		}
		s.Secret, s.OldSecret, s.OldSecretUntil, s.Challenge = secret, old, fromMS(until), challenge
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteReceiver removes a receiver; its pending deliveries die.
func (d *DB) DeleteReceiver(ctx context.Context, id string) error {
	res, err := d.db.ExecContext(ctx, `DELETE FROM receivers WHERE id = ?`, id)
	d.forgetReceivers()
	if err == nil {
		_, err = d.db.ExecContext(ctx, `DELETE FROM cursors WHERE receiver_id = ?`, id)
	}
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &NotFoundError{"receiver", id}
	}
	_, err = d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, last_error = 'receiver deleted' WHERE receiver_id = ? AND state = ?`,
		DeliveryDead, id, DeliveryQueued)
	return err
}

// wanted reports whether any active receiver takes an event type.
func wanted(rcvs []Receiver, typ string) bool {
	for _, s := range rcvs {
		if s.Status == ReceiverActive && s.Wants(typ) {
			return true
		}
	}
	return false
}

// addEvent adds a webhook event inside a transaction and returns its
// sequence number: one row, whatever the number of receivers, with its
// bodies, which render makes with that number. Each receiver's delivery
// of it is created when the dispatcher starts on it (see due), so an
// event costs the same beside fifty receivers as beside one.
func (d *DB) addEvent(ctx context.Context, tx *sql.Tx, typ string, a Alert, render func(seq uint64) (webhookBodies, error)) (uint64, error) {
	seq := d.seq.Add(1)
	bodies, err := render(seq)
	if err != nil {
		return 0, err
	}
	var ids [2]int64
	for i, body := range [][]byte{bodies.standard, bodies.alertmanager} {
		res, err := d.exec(ctx, tx, sqlInsertPayload, body)
		if err != nil {
			return 0, fmt.Errorf("enqueue webhooks: %w", err)
		}
		ids[i], _ = res.LastInsertId()
	}
	labels, err := json.Marshal(MatchLabels(a))
	if err != nil {
		return 0, err
	}
	if _, err := d.exec(ctx, tx, sqlInsertEvent, seq, typ, ids[0], ids[1], ms(a.UpdatedAt), a.Fingerprint, string(labels)); err != nil {
		return 0, fmt.Errorf("enqueue webhooks: %w", err)
	}
	return seq, nil
}

// enqueue adds one delivery inside a transaction. The payload is built by
// render with the delivery's sequence number.
func (d *DB) enqueue(ctx context.Context, tx *sql.Tx, rcv Receiver, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error) {
	id := newID("msg_")
	seq := d.seq.Add(1)
	body, err := render(seq)
	if err != nil {
		return "", err
	}
	// Bodies live in payloads, as alert events' do (deliveries.payload is
	// read only for rows from before that table).
	res, err := d.exec(ctx, tx, sqlInsertPayload, body)
	if err != nil {
		return "", fmt.Errorf("enqueue delivery: %w", err)
	}
	pid, _ := res.LastInsertId()
	if _, err := d.exec(ctx, tx, sqlInsertDelivery, seq, id, rcv.ID, typ, pid, DeliveryQueued, ms(now), ms(now), ms(now), "", false); err != nil {
		return "", fmt.Errorf("enqueue delivery: %w", err)
	}
	return id, nil
}

// Enqueue adds a delivery of a ready payload (a test event, a
// verification) to one receiver.
func (d *DB) Enqueue(ctx context.Context, rcv Receiver, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	id, err := d.enqueue(ctx, tx, rcv, typ, now, render)
	if err != nil {
		return "", err
	}
	if err := tx.Commit(); err != nil {
		return "", err
	}
	d.retryAt(now)
	return id, nil
}

// Delivery returns one delivery with its attempts.
func (d *DB) Delivery(ctx context.Context, id string) (Delivery, error) {
	ds, err := d.queryDeliveries(ctx, `WHERE d.id = ?`, id)
	if err != nil {
		return Delivery{}, err
	}
	if len(ds) == 0 {
		return Delivery{}, &NotFoundError{"delivery", id}
	}
	return ds[0], nil
}

// Deliveries lists a receiver's deliveries, newest first.
func (d *DB) Deliveries(ctx context.Context, receiverID string, limit int) ([]Delivery, error) {
	return d.queryDeliveries(ctx, `WHERE d.receiver_id = ? ORDER BY d.seq DESC LIMIT ?`, receiverID, limit)
}

func (d *DB) queryDeliveries(ctx context.Context, where string, args ...any) ([]Delivery, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT d.id, d.receiver_id, d.event_type, COALESCE(p.body, d.payload), d.state,
		d.next_attempt_at, d.created_at, d.updated_at, d.last_error
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load deliveries: %w", err)
	}
	var out []Delivery
	for rows.Next() {
		var x Delivery
		var next, created, updated int64
		if err := rows.Scan(&x.ID, &x.ReceiverID, &x.EventType, &x.Payload, &x.State, &next, &created, &updated, &x.LastError); err != nil {
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

// RetryDelivery queues a dead delivery again, now.
func (d *DB) RetryDelivery(ctx context.Context, id string, now time.Time) error {
	// It goes alone: out of its group, whose others are not retried.
	res, err := d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ?, updated_at = ?, last_error = '', group_id = '', held = 0 WHERE id = ? AND state = ?`,
		DeliveryQueued, ms(now), ms(now), id, DeliveryDead)
	if err != nil {
		return err
	}
	d.retryAt(now)
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := d.Delivery(ctx, id); err != nil {
			return err
		}
		return ErrNotDead
	}
	return nil
}

// claim is a due delivery handed to a worker.
type claim struct {
	Delivery
	rcv      Receiver
	attempts int
	held     bool   // a grouping receiver's firing, held for its group
	groupID  string // its group's lead, once it has one
	// members are the other deliveries of a group (group.go), sent in
	// one request with this one, whose id it carries.
	members []claim
}

// due claims the deliveries to start now, at most what room gives each
// receiver and limit in all, and marks them in flight: first each
// receiver's retries whose time has come, oldest first, then new events
// after its cursor, each becoming a delivery as it is claimed. It goes
// receiver by receiver (an index lookup each), starting with a different
// one each time, so one receiver's backlog never crowds out another's, and
// a receiver with no room costs nothing.
func (d *DB) due(ctx context.Context, now time.Time, limit int, room func(rcvs []Receiver, rooms []int)) ([]claim, error) {
	p, ok, err := d.plan(ctx, now, room)
	if !ok || err != nil {
		return nil, err
	}
	out, err := d.claimAll(ctx, &p, now, limit)
	if err != nil {
		d.retryAt(now)
		return nil, err
	}
	d.moved(p.moved)
	return out, nil
}

// A pass is one claim pass: the receivers and cursors it works from, as
// cached, and what it finds.
type pass struct {
	rcvs   []Receiver
	curs   map[string]uint64
	newest uint64            // the newest event
	retry  bool              // a queued delivery may be due
	rooms  []int             // how many attempts each receiver may start
	moved  map[string]uint64 // the cursors the pass moved
}

// fresh reports whether a receiver takes events and has some after its
// cursor.
func (p *pass) fresh(rcv Receiver) bool {
	c, ok := p.curs[rcv.ID]
	return ok && c < p.newest && rcv.Status == ReceiverActive
}

// plan starts a pass, or says (ok false) that it would find nothing: no
// receiver with room has a new event or may have a retry due. That costs
// no query: it is asked after every attempt and four times a second.
func (d *DB) plan(ctx context.Context, now time.Time, room func(rcvs []Receiver, rooms []int)) (p pass, ok bool, err error) {
	rcvs, curs, err := d.cached(ctx)
	if err != nil || len(rcvs) == 0 {
		return p, false, err
	}
	p = pass{rcvs: rcvs, curs: curs, newest: d.lastEvent.Load(), rooms: make([]int, len(rcvs))}
	d.retryMu.Lock()
	p.retry = d.nextRetry <= ms(now)
	d.retryMu.Unlock()
	// Receivers with no room (at their limit, or their breaker open) are
	// passed over without a look: fifty dead ones cost fifty map lookups.
	room(rcvs, p.rooms)
	work := false
	for i, rcv := range rcvs {
		if p.rooms[i] > 0 && (p.retry || p.fresh(rcv)) {
			work = true
		}
	}
	if !work {
		return p, false, nil
	}
	if p.retry {
		d.retryMu.Lock()
		d.nextRetry = math.MaxInt64 // lowered again by the pass (scheduleRetries), and by every attempt recorded meanwhile
		d.retryMu.Unlock()
	}
	return p, true, nil
}

// claimAll claims, receiver by receiver from the pass's turn, up to limit
// in all, in one transaction: one commit however many receivers get
// something.
func (d *DB) claimAll(ctx context.Context, p *pass, now time.Time, limit int) ([]claim, error) {
	first := int(d.turn.Add(1) % uint64(len(p.rcvs)))
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var out []claim
	for k := range p.rcvs {
		i := (first + k) % len(p.rcvs)
		n := min(p.rooms[i], limit-len(out))
		if n <= 0 {
			continue
		}
		claims, err := d.claimFor(ctx, tx, p, p.rcvs[i], now, n)
		if err != nil {
			return nil, err
		}
		out = append(out, claims...)
	}
	if p.retry {
		if err := d.scheduleRetries(ctx, tx); err != nil {
			return nil, err
		}
	}
	return out, tx.Commit()
}

// claimFor claims up to n deliveries for one receiver: its retries whose
// time has come, then new events after its cursor.
func (d *DB) claimFor(ctx context.Context, tx *sql.Tx, p *pass, rcv Receiver, now time.Time, n int) ([]claim, error) {
	var out []claim
	if p.retry {
		retries, err := d.retries(ctx, tx, rcv, now, n)
		if err != nil {
			return nil, err
		}
		out = retries
		n -= len(retries)
	}
	if n <= 0 || !p.fresh(rcv) {
		return out, nil
	}
	taken, cursor, err := d.take(ctx, tx, rcv, now, n, p.curs[rcv.ID], p.newest)
	if err != nil {
		return nil, err
	}
	if p.moved == nil {
		p.moved = map[string]uint64{}
	}
	p.moved[rcv.ID] = cursor
	return append(out, taken...), nil
}

// scheduleRetries lowers the next retry's time to the earliest queued
// delivery's, for the passes to come.
func (d *DB) scheduleRetries(ctx context.Context, tx *sql.Tx) error {
	var next sql.NullInt64
	if err := d.queryRow(ctx, tx, sqlNextRetry).Scan(&next); err != nil {
		return err
	}
	if next.Valid {
		d.retryAt(fromMS(next.Int64))
	}
	return nil
}

// retries claims up to n of a receiver's queued deliveries whose time has
// come, a group's lead with its members.
func (d *DB) retries(ctx context.Context, tx *sql.Tx, rcv Receiver, now time.Time, n int) ([]claim, error) {
	out, err := d.queued(ctx, tx, rcv, sqlRetries, rcv.ID, ms(now), n)
	if err != nil {
		return nil, err
	}
	if rcv.GroupWait > 0 {
		if out, err = d.groups(ctx, tx, rcv, out); err != nil {
			return nil, err
		}
	}
	for _, c := range out {
		for _, m := range append([]claim{c}, c.members...) {
			if _, err := d.exec(ctx, tx, sqlInFlight, DeliveryInFlight, ms(now), m.ID); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// queued reads a receiver's queued deliveries with a query of sqlRetries'
// columns.
func (d *DB) queued(ctx context.Context, tx *sql.Tx, rcv Receiver, query string, args ...any) ([]claim, error) {
	rows, err := d.query(ctx, tx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claim
	for rows.Next() {
		var c claim
		var created, next int64
		if err := rows.Scan(&c.ID, &c.ReceiverID, &c.EventType, &c.Payload, &c.attempts, &created, &next, &c.held, &c.groupID); err != nil {
			return nil, err
		}
		c.CreatedAt, c.NextAttemptAt = fromMS(created), fromMS(next)
		c.rcv = rcv
		out = append(out, c)
	}
	return out, rows.Err()
}

// groups gathers the groups of a grouping receiver's due claims (group.go).
// A group's membership is settled when it is first claimed, and kept
// (group_id) for its retries, which then carry the same alerts under the
// same webhook-id: a held firing due, never attempted, takes the held
// firings of its group waiting, never attempted either (due or not); a
// group claimed before takes its members again. Anything else — a
// repeat, a resolution, a delivery retried through the API — goes alone.
func (d *DB) groups(ctx context.Context, tx *sql.Tx, rcv Receiver, due []claim) ([]claim, error) {
	var out, fresh []claim
	for _, c := range due {
		switch {
		case c.held && c.groupID == c.ID:
			members, err := d.queued(ctx, tx, rcv, sqlMembers, c.ID)
			if err != nil {
				return nil, err
			}
			c.members = members
			out = append(out, c)
		case c.held && c.groupID == "" && c.attempts == 0:
			fresh = append(fresh, c)
		default:
			out = append(out, c)
		}
	}
	if len(fresh) == 0 {
		return out, nil
	}
	waiting, err := d.queued(ctx, tx, rcv, sqlGroupable, rcv.ID, MaxGroup*4)
	if err != nil {
		return nil, err
	}
	for _, g := range group(rcv, fresh, waiting) {
		for _, m := range append([]claim{g}, g.members...) {
			if _, err := d.exec(ctx, tx, sqlJoinGroup, g.ID, m.ID); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// group gathers, for each held firing due, the held firings of its group
// waiting into one claim, at most MaxGroup alerts: the first due is the
// group's lead, the others its members.
func group(rcv Receiver, due, waiting []claim) []claim {
	var out []claim
	taken := map[string]bool{}
	lead := map[string]int{} // group key → its claim in out
	for _, c := range due {
		taken[c.ID] = true
		key := GroupKey(rcv, payloadLabels(c.Payload))
		if i, ok := lead[key]; ok && len(out[i].members)+1 < MaxGroup {
			out[i].members = append(out[i].members, c)
			continue
		}
		lead[key] = len(out)
		out = append(out, c)
	}
	for _, w := range waiting {
		if taken[w.ID] {
			continue
		}
		if i, ok := lead[GroupKey(rcv, payloadLabels(w.Payload))]; ok && len(out[i].members)+1 < MaxGroup {
			out[i].members = append(out[i].members, w)
			taken[w.ID] = true
		}
	}
	return out
}

// take turns up to n of the events after a receiver's cursor that it
// wants into deliveries, in flight, and moves its cursor past them (and
// past the events it does not want).
func (d *DB) take(ctx context.Context, tx *sql.Tx, rcv Receiver, now time.Time, n int, cursor, newest uint64) ([]claim, uint64, error) {
	var out []claim
	for len(out) < n && cursor < newest {
		rows, err := d.query(ctx, tx, sqlTakeEvents, rcv.Format, cursor)
		if err != nil {
			return nil, 0, err
		}
		type row struct {
			seq     uint64
			typ     string
			created int64
			pid     int64
			body    []byte
			fp      string
			labels  string
		}
		var batch []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.typ, &r.created, &r.pid, &r.body, &r.fp, &r.labels); err != nil {
				rows.Close()
				return nil, 0, err
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		if len(batch) == 0 {
			break
		}
		for _, r := range batch {
			if len(out) == n {
				break
			}
			cursor = r.seq
			if !rcv.Wants(r.typ) {
				continue
			}
			if !rcv.Takes(eventLabels(r.labels, r.body, rcv)) {
				// A resolution goes wherever its firing went, whatever
				// the labels are now (a rule's severity changed, an
				// upstream's labels).
				var fired bool
				if r.typ != EventResolved || r.fp == "" {
					continue
				}
				if err := d.queryRow(ctx, tx, sqlFired, rcv.ID, r.fp).Scan(&fired); err != nil {
					return nil, 0, err
				}
				if !fired {
					continue
				}
			}
			c := claim{Delivery: Delivery{ID: newID("msg_"), ReceiverID: rcv.ID, EventType: r.typ, Payload: r.body,
				CreatedAt: fromMS(r.created), NextAttemptAt: now}, rcv: rcv}
			// A webhook of an alert whose earlier one to this receiver is
			// not delivered yet waits, queued, behind it: an alert's
			// webhooks arrive in order.
			state, next := DeliveryInFlight, now
			if r.fp != "" {
				var open int
				if err := d.queryRow(ctx, tx, sqlAlertOpen, rcv.ID, r.fp).Scan(&open); err != nil {
					return nil, 0, err
				}
				if open > 0 {
					state = DeliveryQueued
				}
			}
			held := rcv.groups(r.typ)
			if held { // for the others of its group (group.go)
				state, next = DeliveryQueued, now.Add(time.Duration(rcv.GroupWait))
				d.retryAt(next)
			}
			if _, err := d.exec(ctx, tx, sqlInsertDelivery, d.seq.Add(1), c.ID, rcv.ID, r.typ, r.pid, state, ms(next), r.created, ms(now), r.fp, held); err != nil {
				return nil, 0, fmt.Errorf("enqueue delivery: %w", err)
			}
			if state == DeliveryInFlight {
				out = append(out, c)
			}
		}
	}
	if _, err := d.exec(ctx, tx, sqlMoveCursor, cursor, rcv.ID); err != nil {
		return nil, 0, err
	}
	return out, cursor, nil
}

// record saves an attempt and the delivery's new state. A webhook of the
// same alert that waits behind a delivery now done is due at once.
func (d *DB) record(ctx context.Context, id string, a Attempt, state string, next time.Time, lastErr string, now time.Time) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := d.exec(ctx, tx, sqlInsertAttempt,
		id, ms(a.At), a.Status, a.Error, a.DurationMS); err != nil {
		return err
	}
	if _, err := d.exec(ctx, tx, sqlRecord,
		state, ms(next), ms(now), lastErr, id); err != nil {
		return err
	}
	waits := false
	if state != DeliveryQueued {
		if err := d.queryRow(ctx, tx, sqlWaitsBehind, id).Scan(&waits); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	switch {
	case state == DeliveryQueued:
		d.retryAt(next)
	case waits:
		d.retryAt(now)
	}
	return nil
}

// Backlog is how many webhook events wait for a receiver that vigil has
// not started sending yet (they become deliveries, with ids, when it
// does): a dead receiver's backlog grows while its breaker is open.
func (d *DB) Backlog(ctx context.Context, rcvID string) (int, error) {
	rcv, err := d.Receiver(ctx, rcvID)
	if err != nil {
		return 0, err
	}
	_, curs, err := d.cached(ctx)
	if err != nil {
		return 0, err
	}
	cursor, ok := curs[rcvID]
	if !ok {
		return 0, nil
	}
	rows, err := d.db.QueryContext(ctx, `SELECT type, COUNT(*) FROM events WHERE seq > ? GROUP BY type`, cursor)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var typ string
		var c int
		if err := rows.Scan(&typ, &c); err != nil {
			return 0, err
		}
		if rcv.Wants(typ) {
			n += c
		}
	}
	return n, rows.Err()
}

// Retention of the outbox.
const (
	DeliveryRetention = 7 * 24 * time.Hour // delivered and dead deliveries, with their attempts
	EventRetention    = time.Hour          // webhook events every receiver has taken
)

// prune deletes what the outbox no longer needs: delivered and dead
// deliveries older than DeliveryRetention, events that every active
// receiver has taken and that are older than EventRetention, and bodies
// nothing refers to. Queued deliveries and events a receiver has not
// taken yet are never deleted.
func (d *DB) prune(ctx context.Context, now time.Time) (deliveries, events int64, err error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	old := ms(now.Add(-DeliveryRetention))
	if _, err := tx.ExecContext(ctx, `DELETE FROM attempts WHERE delivery_id IN
		(SELECT id FROM deliveries WHERE state IN (?, ?) AND updated_at < ?)`, DeliveryDelivered, DeliveryDead, old); err != nil {
		return 0, 0, fmt.Errorf("prune outbox: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM deliveries WHERE state IN (?, ?) AND updated_at < ?`, DeliveryDelivered, DeliveryDead, old)
	if err != nil {
		return 0, 0, fmt.Errorf("prune outbox: %w", err)
	}
	deliveries, _ = res.RowsAffected()
	res, err = tx.ExecContext(ctx, `DELETE FROM events WHERE created_at < ? AND seq <= (SELECT COALESCE(MIN(seq), ?) FROM cursors)`,
		ms(now.Add(-EventRetention)), d.lastEvent.Load())
	if err != nil {
		return 0, 0, fmt.Errorf("prune outbox: %w", err)
	}
	events, _ = res.RowsAffected()
	if _, err := d.pruneJournal(ctx, tx, now); err != nil {
		return 0, 0, err
	}
	if deliveries+events > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM payloads WHERE id NOT IN (SELECT payload_id FROM deliveries)
			AND id NOT IN (SELECT standard_payload FROM events) AND id NOT IN (SELECT alertmanager_payload FROM events)`); err != nil {
			return 0, 0, fmt.Errorf("prune outbox: %w", err)
		}
	}
	return deliveries, events, tx.Commit()
}

// requeueInFlight puts back deliveries that were in flight when vigil
// stopped: they are sent again (at least once).
func (d *DB) requeueInFlight(ctx context.Context, now time.Time) error {
	_, err := d.db.ExecContext(ctx, `UPDATE deliveries SET state = ?, next_attempt_at = ? WHERE state = ?`, DeliveryQueued, ms(now), DeliveryInFlight)
	d.retryAt(now)
	return err
}

// setStatus changes a receiver's status.
func (d *DB) setStatus(ctx context.Context, id, status string, now time.Time) error {
	rcv, err := d.Receiver(ctx, id)
	if err != nil {
		return err
	}
	rcv.Status, rcv.UpdatedAt = status, now
	return d.PutReceiver(ctx, rcv)
}

// eventLabels are an event's labels to match rcv's matchers on (nil when
// it has no matchers). An event from before labels were kept has them
// read from its standard body; one whose labels cannot be read has none,
// so matchers on them see empty values.
func eventLabels(raw string, body []byte, rcv Receiver) map[string]string {
	if len(rcv.Match) == 0 {
		return nil
	}
	l := map[string]string{}
	if raw != "" {
		json.Unmarshal([]byte(raw), &l)
		return l
	}
	var n notice
	if json.Unmarshal(body, &n) == nil && n.Data.Rule != "" {
		l = MatchLabels(Alert{Rule: n.Data.Rule, Severity: n.Data.Severity, Source: n.Data.Source, Metric: n.Data.Metric, Labels: n.Data.Labels})
	}
	return l
}
