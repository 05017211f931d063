package alerts

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The journal keeps every transition of every alert, by time, so that a
// chart of last night can show when which rule fired and resolved (the
// alerts table keeps only where each alert stands now). Each transition is
// written in the transaction that saves the alert's new state.
const journalSchema = `
CREATE TABLE IF NOT EXISTS transitions (
	at          INTEGER NOT NULL, -- unix ms
	fingerprint TEXT NOT NULL,
	rule        TEXT NOT NULL,
	source      TEXT NOT NULL,
	metric      TEXT NOT NULL,
	kind        TEXT NOT NULL,
	severity    TEXT NOT NULL,
	value       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_source_at ON transitions (source, at);`

const sqlJournal = `INSERT INTO transitions (at, fingerprint, rule, source, metric, kind, severity, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// DefaultJournalRetention is how long transitions are kept: as long as the
// history's longest default tier, so each chart it can draw has its marks.
const DefaultJournalRetention = 90 * 24 * time.Hour

// MaxJournalRows bounds one read of the journal.
const MaxJournalRows = 10000

// Mark is one transition of one alert, as the journal keeps it.
type Mark struct {
	At          time.Time `json:"at"`
	Kind        string    `json:"kind"` // pending, firing, resolved, inactive, nodata or acknowledged
	Rule        string    `json:"rule"`
	Source      string    `json:"source"`
	Metric      string    `json:"metric"`
	Severity    string    `json:"severity,omitempty"`
	Value       float64   `json:"value"`
	Fingerprint string    `json:"fingerprint"`
}

// journal writes ts into the journal, within tx.
func (d *DB) journal(ctx context.Context, tx *sql.Tx, ts []Transition) error {
	for _, t := range ts {
		a := t.Alert
		if _, err := d.exec(ctx, tx, sqlJournal, a.UpdatedAt.UnixMilli(), a.Fingerprint, a.Rule, a.Source, a.Metric,
			t.Kind, a.Severity, a.Value); err != nil {
			return fmt.Errorf("save alerts: %w", err)
		}
	}
	return nil
}

// Marks returns the transitions of source's alerts in [from, to], oldest
// first: at most MaxJournalRows, the newest of them if there are more.
func (d *DB) Marks(ctx context.Context, source string, from, to time.Time) ([]Mark, error) {
	rows, err := d.query(ctx, nil, `SELECT at, kind, rule, metric, severity, value, fingerprint FROM
		(SELECT rowid AS id, * FROM transitions WHERE source = ? AND at >= ? AND at <= ? ORDER BY at DESC, id DESC LIMIT ?)
		ORDER BY at, id`, source, from.UnixMilli(), to.UnixMilli(), MaxJournalRows)
	if err != nil {
		return nil, fmt.Errorf("read alert transitions: %w", err)
	}
	defer rows.Close()
	out := []Mark{}
	for rows.Next() {
		m := Mark{Source: source}
		var at int64
		if err := rows.Scan(&at, &m.Kind, &m.Rule, &m.Metric, &m.Severity, &m.Value, &m.Fingerprint); err != nil {
			return nil, fmt.Errorf("read alert transitions: %w", err)
		}
		m.At = fromMS(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read alert transitions: %w", err)
	}
	return out, nil
}

// pruneJournal deletes transitions older than the retention, within tx.
func (d *DB) pruneJournal(ctx context.Context, tx *sql.Tx, now time.Time) (int64, error) {
	keep := d.JournalRetention
	if keep <= 0 {
		keep = DefaultJournalRetention
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM transitions WHERE at < ?`, ms(now.Add(-keep)))
	if err != nil {
		return 0, fmt.Errorf("prune alert transitions: %w", err)
	}
	return res.RowsAffected()
}
