package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the embedded, pure-Go SQLite: no cgo, one static binary
)

// DB is vigil's embedded store: alert states now, the webhook outbox in the
// same database so a state change and its deliveries commit together.
type DB struct {
	db *sql.DB
	// DashboardURL is the base of links in webhook payloads.
	DashboardURL string
	now          func() time.Time
	seq          atomic.Uint64 // the last sequence number given to an event or a delivery
	lastEvent    atomic.Uint64 // the newest webhook event's seq
	turn         atomic.Uint64 // which receiver the next claim starts with

	subsMu sync.Mutex
	subs   []Subscription    // every subscription, read once and kept until one changes
	curs   map[string]uint64 // every active receiver's cursor, kept with subs

	retryMu   sync.Mutex
	nextRetry int64 // unix ms: no queued delivery is due before this

	stmts sync.Map // query text → *sql.Stmt, for the statements run on every event and delivery
}

var _ Store = (*DB)(nil)

// Open opens (creating if needed) vigil.db in dir, in WAL mode: readers
// never wait for the writer, and a committed transaction survives the
// process being killed.
func Open(dir string) (*DB, error) {
	path := filepath.Join(dir, "vigil.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises writes anyway
	if _, err := db.Exec(schema + outboxSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Databases from before these columns existed.
	for _, m := range []string{
		`ALTER TABLE subscriptions ADD COLUMN challenge TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE deliveries ADD COLUMN payload_id INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE deliveries ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE events ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''`,
		// Undelivered webhooks of one alert to one receiver: a newer one
		// waits for these (after the column it needs exists).
		`CREATE INDEX IF NOT EXISTS deliveries_alert_open ON deliveries (subscription_id, fingerprint, seq) WHERE state IN ('queued', 'in_flight')`,
	} {
		if _, err := db.Exec(m); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	d := &DB{db: db, now: time.Now}
	var last, lastEvent sql.NullInt64
	if err := db.QueryRow(`SELECT MAX(seq), (SELECT MAX(seq) FROM events) FROM deliveries`).Scan(&last, &lastEvent); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d.seq.Store(uint64(max(last.Int64, lastEvent.Int64)))
	for _, q := range inTx {
		if _, err := d.stmt(context.Background(), nil, q); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	d.lastEvent.Store(uint64(lastEvent.Int64))
	// Active receivers from before cursors existed start from here.
	subs, err := d.Subscriptions(context.Background())
	if err == nil {
		for _, s := range subs {
			if err = d.syncCursor(context.Background(), d.db, s); err != nil {
				break
			}
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return d, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS alerts (
	fingerprint TEXT PRIMARY KEY,
	body        TEXT NOT NULL,
	updated_at  INTEGER NOT NULL
);`

// The statements run inside transactions, prepared when the database opens.
const (
	sqlSaveAlert = `INSERT INTO alerts (fingerprint, body, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (fingerprint) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`
	sqlInsertPayload = `INSERT INTO payloads (body) VALUES (?)`
	sqlInsertEvent   = `INSERT INTO events (seq, type, standard_payload, alertmanager_payload, created_at, fingerprint) VALUES (?, ?, ?, ?, ?, ?)`
	sqlTakeEvents    = `SELECT e.seq, e.type, e.created_at, p.id, p.body, e.fingerprint FROM events e
		JOIN payloads p ON p.id = CASE WHEN ? = 'alertmanager' THEN e.alertmanager_payload ELSE e.standard_payload END
		WHERE e.seq > ? ORDER BY e.seq LIMIT 64`
	sqlInsertDelivery = `INSERT INTO deliveries (seq, id, subscription_id, event_type, payload, payload_id, state, next_attempt_at, created_at, updated_at, fingerprint)
		VALUES (?, ?, ?, ?, x'', ?, ?, ?, ?, ?, ?)`
	// An alert's webhook to a receiver is held back while an earlier one
	// is queued or in flight, so they arrive in order.
	alertOpenBefore = `EXISTS (SELECT 1 FROM deliveries o WHERE o.subscription_id = d.subscription_id AND o.fingerprint = d.fingerprint
		AND d.fingerprint != '' AND o.seq < d.seq AND o.state IN ('queued', 'in_flight'))`
	sqlAlertOpen  = `SELECT COUNT(*) FROM deliveries WHERE subscription_id = ? AND fingerprint = ? AND state IN ('queued', 'in_flight')`
	sqlMoveCursor = `UPDATE cursors SET seq = ? WHERE subscription_id = ?`
	sqlCursor     = `SELECT seq FROM cursors WHERE subscription_id = ?`
	sqlRetries    = `SELECT d.id, d.subscription_id, d.event_type, COALESCE(p.body, d.payload),
		(SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id), d.created_at, d.next_attempt_at
		FROM deliveries d LEFT JOIN payloads p ON p.id = d.payload_id
		WHERE d.subscription_id = ? AND d.state = ? AND d.next_attempt_at <= ? AND NOT ` + alertOpenBefore + `
		ORDER BY d.next_attempt_at, d.seq LIMIT ?`
	sqlInFlight      = `UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ?`
	sqlInsertAttempt = `INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)`
	sqlRecord        = `UPDATE deliveries SET state = ?, next_attempt_at = ?, updated_at = ?, last_error = ? WHERE id = ?`
)

var inTx = []string{sqlSaveAlert, sqlInsertPayload, sqlInsertEvent, sqlTakeEvents, sqlInsertDelivery, sqlMoveCursor,
	sqlRetries, sqlInFlight, sqlInsertAttempt, sqlRecord, sqlAlertOpen}

// Close closes the database.
func (d *DB) Close() error {
	d.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return d.db.Close()
}

// stmt returns a statement prepared once, within tx when tx is not nil.
// Parsing SQL is a good part of a small statement's cost in SQLite.
func (d *DB) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	v, ok := d.stmts.Load(query)
	if !ok && tx != nil {
		// Preparing on the pool would wait for the one connection, which
		// tx holds: prepare in tx, for this transaction only. (Open
		// prepares the statements that run in transactions.)
		return tx.PrepareContext(ctx, query)
	}
	if !ok {
		st, err := d.db.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		if v, ok = d.stmts.LoadOrStore(query, st); ok {
			st.Close()
		}
	}
	st := v.(*sql.Stmt)
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	return st, nil
}

func (d *DB) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := d.stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (d *DB) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	st, err := d.stmt(ctx, tx, query)
	if err != nil {
		return tx.QueryRowContext(ctx, query, args...) // prepares it again, and reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

func (d *DB) query(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	st, err := d.stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// stored is an alert as kept on disk, with the fields the API leaves out.
type stored struct {
	Alert
	ClearedAt time.Time `json:"cleared_at,omitzero"`
}

// LoadAlerts returns every saved alert.
func (d *DB) LoadAlerts(ctx context.Context) ([]Alert, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT body FROM alerts`)
	if err != nil {
		return nil, fmt.Errorf("load alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("load alerts: %w", err)
		}
		var s stored
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return nil, fmt.Errorf("load alerts: %w", err)
		}
		s.Alert.ClearedAt = s.ClearedAt
		out = append(out, s.Alert)
	}
	return out, rows.Err()
}

// SaveTransitions writes the alerts' new states in one transaction.
func (d *DB) SaveTransitions(ctx context.Context, ts []Transition) error {
	// Read the receivers before the transaction takes the connection.
	subs, _, err := d.cached(ctx)
	if err != nil {
		return fmt.Errorf("save alerts: %w", err)
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save alerts: %w", err)
	}
	defer tx.Rollback()
	for _, t := range ts {
		body, err := json.Marshal(stored{Alert: t.Alert, ClearedAt: t.Alert.ClearedAt})
		if err != nil {
			return fmt.Errorf("save alerts: %w", err)
		}
		if _, err := d.exec(ctx, tx, sqlSaveAlert,
			t.Alert.Fingerprint, string(body), t.Alert.UpdatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("save alerts: %w", err)
		}
	}
	// Each transition's webhook event commits with it: a state change is
	// never saved without its webhooks, nor a webhook without its state.
	// It is one row, whatever the number of receivers: each receiver's
	// delivery is created when the dispatcher starts on it (see due), so
	// a transition costs the same beside fifty receivers as beside one.
	var last uint64
	for _, t := range ts {
		typ := webhookType(t.Kind)
		if typ == "" || !wanted(subs, typ) {
			continue
		}
		seq := d.seq.Add(1)
		var ids [2]int64
		for i, format := range []string{FormatStandard, FormatAlertmanager} {
			body, err := payload(format, t, d.DashboardURL, seq, t.Alert.UpdatedAt)
			if err != nil {
				return err
			}
			res, err := d.exec(ctx, tx, sqlInsertPayload, body)
			if err != nil {
				return fmt.Errorf("enqueue webhooks: %w", err)
			}
			ids[i], _ = res.LastInsertId()
		}
		if _, err := d.exec(ctx, tx, sqlInsertEvent,
			seq, typ, ids[0], ids[1], ms(t.Alert.UpdatedAt), t.Alert.Fingerprint); err != nil {
			return fmt.Errorf("enqueue webhooks: %w", err)
		}
		last = seq
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save alerts: %w", err)
	}
	if last > 0 {
		d.lastEvent.Store(last)
	}
	return nil
}

// wanted reports whether any active subscription takes an event type.
func wanted(subs []Subscription, typ string) bool {
	for _, s := range subs {
		if s.Status == SubscriptionActive && s.Wants(typ) {
			return true
		}
	}
	return false
}

// webhookType is the webhook event of a transition, or "" for none.
func webhookType(kind string) string {
	switch kind {
	case StateFiring:
		return EventFiring
	case StateResolved:
		return EventResolved
	}
	return ""
}
