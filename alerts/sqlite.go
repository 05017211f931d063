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
	seq          atomic.Uint64 // the last delivery's sequence number

	subsMu sync.Mutex
	subs   []Subscription // every subscription, read once and kept until one changes
}

var _ Store = (*DB)(nil)

// Open opens (creating if needed) vigil.db in dir, in WAL mode: readers
// never wait for the writer, and a committed transaction survives the
// process being killed.
func Open(dir string) (*DB, error) {
	path := filepath.Join(dir, "vigil.db")
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
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
	} {
		if _, err := db.Exec(m); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	d := &DB{db: db, now: time.Now}
	var last sql.NullInt64
	if err := db.QueryRow(`SELECT MAX(seq) FROM deliveries`).Scan(&last); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d.seq.Store(uint64(last.Int64))
	return d, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS alerts (
	fingerprint TEXT PRIMARY KEY,
	body        TEXT NOT NULL,
	updated_at  INTEGER NOT NULL
);`

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

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
	subs, err := d.Subscriptions(ctx)
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO alerts (fingerprint, body, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (fingerprint) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
			t.Alert.Fingerprint, string(body), t.Alert.UpdatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("save alerts: %w", err)
		}
	}
	// The deliveries of these transitions commit with them: a state change
	// is never saved without its webhooks, nor a webhook without its state.
	for _, t := range ts {
		typ := webhookType(t.Kind)
		if typ == "" {
			continue
		}
		// One body per format, stored once and shared by every receiver of
		// this event, and one INSERT for all of its deliveries.
		seq := d.seq.Add(1)
		bodies := map[string]int64{}
		var q strings.Builder
		var args []any
		now := ms(t.Alert.UpdatedAt)
		for _, sub := range subs {
			if sub.Status != SubscriptionActive || !sub.Wants(typ) {
				continue
			}
			pid, ok := bodies[sub.Format]
			if !ok {
				body, err := payload(sub.Format, t, d.DashboardURL, seq, t.Alert.UpdatedAt)
				if err != nil {
					return err
				}
				res, err := tx.ExecContext(ctx, `INSERT INTO payloads (body) VALUES (?)`, body)
				if err != nil {
					return fmt.Errorf("enqueue deliveries: %w", err)
				}
				pid, _ = res.LastInsertId()
				bodies[sub.Format] = pid
			}
			if q.Len() == 0 {
				q.WriteString(`INSERT INTO deliveries (seq, id, subscription_id, event_type, payload, payload_id, state, next_attempt_at, created_at, updated_at) VALUES `)
			} else {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?, ?, ?, x'', ?, ?, ?, ?, ?)")
			args = append(args, d.seq.Add(1), newID("msg_"), sub.ID, typ, pid, DeliveryQueued, now, now, now)
		}
		if len(args) > 0 {
			if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
				return fmt.Errorf("enqueue deliveries: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save alerts: %w", err)
	}
	return nil
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
