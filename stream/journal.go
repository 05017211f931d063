package stream

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the embedded, pure-Go SQLite
)

// Journal retention: events older than this, or beyond this many, are
// pruned.
const (
	DefaultJournalKeep = 7 * 24 * time.Hour
	DefaultJournalRows = 100_000
)

// A Journal keeps the events that are history — alert and source
// transitions — on disk, in events.db under the data directory, so that a
// client that lost its position (vigil restarted, or it was away longer
// than the replay window) is still told every transition it missed.
// Samples are state, not history: the newest one says it all, and they
// are not kept. A Journal is safe for concurrent use.
type Journal struct {
	db   *sql.DB
	keep time.Duration
	rows int
	now  func() time.Time
}

var _ History = (*Journal)(nil)

// OpenJournal opens (creating if needed) the journal in dir. Events with
// ids from first on are from an earlier epoch (ids started again lower)
// and are dropped: they would pass for events after every id of this one.
func OpenJournal(dir string, first uint64) (*Journal, error) {
	path := filepath.Join(dir, "events.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS events (
		id     INTEGER PRIMARY KEY,
		type   TEXT NOT NULL,
		source TEXT NOT NULL,
		ts     INTEGER NOT NULL, -- unix milliseconds
		data   BLOB NOT NULL     -- the event's JSON, as sent
	)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := db.Exec(`DELETE FROM events WHERE id >= ?`, int64(first)); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Journal{db: db, keep: DefaultJournalKeep, rows: DefaultJournalRows, now: time.Now}, nil
}

// Close closes the journal's database.
func (j *Journal) Close() error { return j.db.Close() }

// Append saves events in one transaction and prunes what is past the
// retention.
func (j *Journal) Append(ctx context.Context, evs []*Event) error {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer tx.Rollback()
	for _, ev := range evs {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO events (id, type, source, ts, data) VALUES (?, ?, ?, ?, ?)`,
			int64(ev.ID), ev.Type, ev.Source, ev.Time.UnixMilli(), ev.JSON()); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE ts < ? OR id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		j.now().Add(-j.keep).UnixMilli(), j.rows); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// After returns the events after id that match, oldest first: the newest
// limit of them, and how many older ones were left out.
func (j *Journal) After(ctx context.Context, id uint64, match func(*Event) bool, limit int) ([]*Event, int, error) {
	rows, err := j.db.QueryContext(ctx, `SELECT id, type, source, ts, data FROM events WHERE id > ? ORDER BY id`, int64(min(id, MaxID)))
	if err != nil {
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	defer rows.Close()
	var out []*Event
	omitted := 0
	for rows.Next() {
		var (
			eid      int64
			typ, src string
			ts       int64
			data     []byte
		)
		if err := rows.Scan(&eid, &typ, &src, &ts, &data); err != nil {
			return nil, 0, fmt.Errorf("journal: %w", err)
		}
		ev := storedEvent(uint64(eid), typ, src, time.UnixMilli(ts), data)
		if match(ev) {
			out = append(out, ev)
		}
	}
	if len(out) > limit {
		omitted = len(out) - limit
		out = out[omitted:]
	}
	return out, omitted, rows.Err()
}
