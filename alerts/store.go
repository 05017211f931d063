package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the embedded, pure-Go SQLite: no cgo, one static binary
)

// DB is vigil's embedded store, vigil.db: the alert states (this file) and
// the webhook outbox (outbox.go) in one database, so that a state change
// and its webhook commit together.
type DB struct {
	db *sql.DB
	// DashboardURL is the base of links in webhook payloads.
	DashboardURL string
	// JournalRetention is how long alert transitions are kept for the
	// charts' marks; 0 is DefaultJournalRetention.
	JournalRetention time.Duration
	now              func() time.Time
	seq              atomic.Uint64 // the last sequence number given to an event or a delivery
	lastEvent        atomic.Uint64 // the newest webhook event's seq
	turn             atomic.Uint64 // which receiver the next claim starts with

	rcvMu sync.Mutex
	rcvs  []Receiver        // every receiver, read once and kept until one changes
	curs  map[string]uint64 // every active receiver's cursor, kept with rcvs

	retryMu   sync.Mutex
	nextRetry int64 // unix ms: no queued delivery is due before this

	stmts sync.Map // query text → *sql.Stmt, for the statements run on every event and delivery

	silMu    sync.Mutex
	silences []Silence // every silence kept, read once when the database opens
}

var (
	_ StateStore   = (*DB)(nil)
	_ SilenceStore = (*DB)(nil)
)

// Open opens (creating if needed) vigil.db in dir, in WAL mode: readers
// never wait for the writer, and a committed transaction survives the
// process being killed. A database written by an earlier version is
// brought up to date.
func Open(dir string) (*DB, error) {
	path := filepath.Join(dir, "vigil.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises writes anyway
	d := &DB{db: db, now: time.Now}
	if err := d.open(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return d, nil
}

func (d *DB) open() error {
	if _, err := d.db.Exec(alertsSchema + journalSchema + silencesSchema); err != nil {
		return err
	}
	if err := migrateOutbox(d.db); err != nil {
		return err
	}
	for _, q := range append([]string{sqlSaveAlert, sqlJournal}, outboxStatements...) {
		if _, err := d.stmt(context.Background(), nil, q); err != nil {
			return err
		}
	}
	if err := d.loadSilences(context.Background()); err != nil {
		return err
	}
	return d.openOutbox(context.Background())
}

const alertsSchema = `
CREATE TABLE IF NOT EXISTS alerts (
	fingerprint TEXT PRIMARY KEY,
	body        TEXT NOT NULL,
	updated_at  INTEGER NOT NULL
);`

const sqlSaveAlert = `INSERT INTO alerts (fingerprint, body, updated_at) VALUES (?, ?, ?)
	ON CONFLICT (fingerprint) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`

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

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
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

// SaveTransitions writes the alerts' new states in one transaction, and
// with them the webhook event of each transition an active receiver
// takes: a state change is never saved without its webhooks, nor a
// webhook without its state.
func (d *DB) SaveTransitions(ctx context.Context, ts []Transition) error {
	return d.saveTransitions(ctx, ts, true)
}

// WithoutWebhooks is a StateStore that saves the states and the journal
// in d, and no webhooks: for a replica whose webhooks go through the
// shared outbox in NATS (cluster.Webhooks).
func (d *DB) WithoutWebhooks() StateStore { return statesOnly{d} }

type statesOnly struct{ d *DB }

func (s statesOnly) LoadAlerts(ctx context.Context) ([]Alert, error) { return s.d.LoadAlerts(ctx) }
func (s statesOnly) SaveTransitions(ctx context.Context, ts []Transition) error {
	return s.d.saveTransitions(ctx, ts, false)
}

func (d *DB) saveTransitions(ctx context.Context, ts []Transition, webhooks bool) error {
	// Read the receivers before the transaction takes the connection.
	var rcvs []Receiver
	if webhooks {
		var err error
		if rcvs, _, err = d.cached(ctx); err != nil {
			return fmt.Errorf("save alerts: %w", err)
		}
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
	if err := d.journal(ctx, tx, ts); err != nil {
		return err
	}
	var last uint64
	for _, t := range ts {
		w, ok := t.Webhook()
		typ := WebhookEvent(w.Kind)
		if !ok || !wanted(rcvs, typ) {
			continue
		}
		if last, err = d.addEvent(ctx, tx, typ, w.Alert, func(seq uint64) (webhookBodies, error) {
			return renderTransition(w, d.DashboardURL, seq)
		}); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save alerts: %w", err)
	}
	if last > 0 {
		d.lastEvent.Store(last)
	}
	return nil
}
