package history

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	_ "modernc.org/sqlite" // the SQLite driver, pure Go

	"vigil/internal/decimal"
)

// The history's tables: sources and metrics by number, and a row a step
// of a source in a tier, its metrics' aggregates in one blob (encodeRow).
// One row a source's step, not one a series', keeps a host's forty
// series of a day in a few megabytes and a week of ten of them one
// query of ten thousand rows.
const schema = `
CREATE TABLE IF NOT EXISTS sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS steps (
	tier   INTEGER NOT NULL,
	source INTEGER NOT NULL,
	t      INTEGER NOT NULL, -- the step's start, unix milliseconds
	open   INTEGER NOT NULL, -- 1: a first-tier step written unfinished, at a Close
	data   BLOB NOT NULL,
	PRIMARY KEY (tier, source, t)
) WITHOUT ROWID;
-- A source removed at t (unix milliseconds): a hub's agent taken out of
-- its upstreams. Its steps before t are kept, but not given back to the
-- ring after a restart.
CREATE TABLE IF NOT EXISTS gone (source TEXT PRIMARY KEY, t INTEGER NOT NULL) WITHOUT ROWID;`

// sqlStore is the file, and the numbers of sources and metrics, which
// are only ever added.
type sqlStore struct {
	db *sql.DB

	mu      sync.Mutex // guards the maps
	srcIDs  map[string]int64
	srcName map[int64]string
	metIDs  map[string]int64
	metName map[int64]string
}

func openSQL(ctx context.Context, path string, tiers int) (*sqlStore, error) {
	// Run checkpoints the log once a minute, and SQLite only past 20,000
	// pages (80 MB) should Run fall behind. (8 MiB of page cache instead
	// of the default 2 saved a hub of a thousand hosts another 7% of the
	// history's CPU, for 7 MiB of its memory: not taken.)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)"+
		"&_pragma=wal_autocheckpoint(20000)")
	if err != nil {
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &sqlStore{db: db, srcIDs: map[string]int64{}, srcName: map[int64]string{}, metIDs: map[string]int64{}, metName: map[int64]string{}}
	if err := s.load(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	return s, nil
}

func (s *sqlStore) load(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return err
	}
	for _, d := range []struct {
		table string
		ids   map[string]int64
		names map[int64]string
	}{{"sources", s.srcIDs, s.srcName}, {"metrics", s.metIDs, s.metName}} {
		rows, err := s.db.QueryContext(ctx, "SELECT id, name FROM "+d.table)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return err
			}
			d.ids[name], d.names[id] = id, name
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqlStore) close() error { return s.db.Close() }

// write writes rows and the sources gone (by when) in one transaction,
// numbering new sources and metrics in it.
func (s *sqlStore) write(ctx context.Context, rows []row, gone map[string]int64) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	var added []func() // numbers given in the transaction, forgotten if it fails
	defer func() {
		if err != nil {
			tx.Rollback()
			for _, undo := range added {
				undo()
			}
		}
	}()
	number := func(table, name string, ids map[string]int64, names map[int64]string) (int64, error) {
		if id, ok := ids[name]; ok {
			return id, nil
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (name) VALUES (?)", name)
		if err != nil {
			return 0, err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return 0, err
		}
		ids[name], names[id] = id, name
		added = append(added, func() { delete(ids, name); delete(names, id) })
		return id, nil
	}
	ins, err := tx.PrepareContext(ctx, "INSERT OR REPLACE INTO steps (tier, source, t, open, data) VALUES (?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer ins.Close()
	// In the key's order: each source's rows, which lie together in the
	// file, one after the other, so that each page is read and written
	// once a write, not once a step (a hub's thousand sources' pages do
	// not fit SQLite's cache).
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b row) int { // stable: of a step closed twice, the later is written last
		return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(a.source, b.source), cmp.Compare(a.start, b.start))
	})
	var buf []byte
	var held []agg // a pending row's, decoded
	ids := make([]int64, 0, 64)
	for _, r := range rows {
		src, err := number("sources", r.source, s.srcIDs, s.srcName)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, name := range r.names {
			id, err := number("metrics", name, s.metIDs, s.metName)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if held, err = r.aggregates(held); err != nil {
			return fmt.Errorf("history: %s at %d: %w", r.source, r.start, err)
		}
		buf = encodeRow(buf[:0], ids, held)
		if _, err := ins.ExecContext(ctx, r.tier, src, r.start, r.open, buf); err != nil {
			return err
		}
	}
	for src, t := range gone {
		if _, err := tx.ExecContext(ctx, "INSERT OR REPLACE INTO gone (source, t) VALUES (?, ?)", src, t); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// gone returns the sources removed, by when.
func (s *sqlStore) gone(ctx context.Context) (map[string]int64, error) {
	q, err := s.db.QueryContext(ctx, "SELECT source, t FROM gone")
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer q.Close()
	gone := map[string]int64{}
	for q.Next() {
		var src string
		var t int64
		if err := q.Scan(&src, &t); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		gone[src] = t
	}
	return gone, q.Err()
}

// prune deletes a tier's steps before a time, source by source (the key's
// order).
func (s *sqlStore) prune(ctx context.Context, tier int, before int64) error {
	s.mu.Lock()
	ids := make([]int64, 0, len(s.srcName))
	for id := range s.srcName {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if _, err := s.db.ExecContext(ctx, "DELETE FROM steps WHERE tier = ? AND source = ? AND t < ?", tier, id, before); err != nil {
			return fmt.Errorf("history: prune: %w", err)
		}
	}
	return nil
}

// pruneGone deletes the removals before a time.
func (s *sqlStore) pruneGone(ctx context.Context, before int64) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM gone WHERE t < ?", before); err != nil {
		return fmt.Errorf("history: prune: %w", err)
	}
	return nil
}

// checkpoint copies the write-ahead log into the file, as far as no
// reader holds it back.
func (s *sqlStore) checkpoint(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	return err
}

// sources lists the sources that have steps in a tier.
func (s *sqlStore) sources(ctx context.Context, tier int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT source FROM steps WHERE tier = ?", tier)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if name, ok := s.srcName[id]; ok {
			out = append(out, name)
		}
	}
	return out, rows.Err()
}

// newest returns each source's newest finished step in a tier.
func (s *sqlStore) newest(ctx context.Context, tier int) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT source, MAX(t) FROM steps WHERE tier = ? AND open = 0 GROUP BY source", tier)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for rows.Next() {
		var id, t int64
		if err := rows.Scan(&id, &t); err != nil {
			return nil, err
		}
		if name, ok := s.srcName[id]; ok {
			out[name] = t
		}
	}
	return out, rows.Err()
}

// Which rows to read: every one, the unfinished ones a Close wrote, or
// the finished ones.
const (
	anyRow = iota
	openRows
	finishedRows
)

// rows reads a source's steps of a tier from lo up to hi (excluded),
// oldest first: with want, only those metrics, each row's aggregates in
// want's order (a count of 0 for one it lacks).
func (s *sqlStore) rows(ctx context.Context, tier int, source string, lo, hi int64, want []string, which int) ([]row, error) {
	s.mu.Lock()
	id, ok := s.srcIDs[source]
	pick := s.picker(want)
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	least, most := 0, 1 // of open
	switch which {
	case openRows:
		least = 1
	case finishedRows:
		most = 0
	}
	q, err := s.db.QueryContext(ctx, "SELECT t, open, data FROM steps WHERE tier = ? AND source = ? AND t >= ? AND t < ? AND open BETWEEN ? AND ? ORDER BY t",
		tier, id, lo, hi, least, most)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer q.Close()
	out := make([]row, 0, min(max(hi-lo, 0)/1000+1, 1<<14)) // a step a second, at most
	for q.Next() {
		r := row{tier: tier, source: source}
		var data sql.RawBytes // read before the next row: not copied
		if err := q.Scan(&r.start, &r.open, &data); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		if err := s.decode(&r, data, want, pick); err != nil {
			return nil, fmt.Errorf("history: %s at %d: %w", source, r.start, err)
		}
		out = append(out, r)
	}
	return out, q.Err()
}

// each calls fn with every source's steps of a tier since a time, oldest
// first.
func (s *sqlStore) each(ctx context.Context, tier int, since int64, fn func(row)) error {
	q, err := s.db.QueryContext(ctx, "SELECT source, t, open, data FROM steps WHERE tier = ? AND t >= ? ORDER BY t", tier, since)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer q.Close()
	for q.Next() {
		var id int64
		var data []byte
		r := row{tier: tier}
		if err := q.Scan(&id, &r.start, &r.open, &data); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		s.mu.Lock()
		r.source = s.srcName[id]
		s.mu.Unlock()
		if err := s.decode(&r, data, nil, nil); err != nil {
			return fmt.Errorf("history: %s at %d: %w", r.source, r.start, err)
		}
		fn(r)
	}
	return q.Err()
}

// picker gives, by metric number, the place in want of each metric
// wanted, -1 for the others; nil for every metric. Under s.mu.
func (s *sqlStore) picker(want []string) []int32 {
	if want == nil {
		return nil
	}
	ids := make([]int64, len(want))
	top := int64(-1)
	for i, name := range want {
		ids[i] = -1
		if id, ok := s.metIDs[name]; ok {
			ids[i], top = id, max(top, id)
		}
	}
	pick := make([]int32, top+1)
	for i := range pick {
		pick[i] = -1
	}
	for i, id := range ids {
		if id >= 0 {
			pick[id] = int32(i)
		}
	}
	return pick
}

// decode reads a row's blob: with pick, the metrics wanted in want's
// order; without, every metric by name.
func (s *sqlStore) decode(r *row, data []byte, want []string, pick []int32) error {
	if pick != nil || want != nil {
		r.names, r.aggs = want, make([]agg, len(want))
		return decodeRow(data, pick, func(_ int64, i int, a agg) { r.aggs[i] = a })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return decodeRow(data, nil, func(id int64, _ int, a agg) {
		if name, ok := s.metName[id]; ok {
			r.names = append(r.names, name)
			r.aggs = append(r.aggs, a)
		}
	})
}

// encodeRow appends a row's blob: for each metric its number, its count,
// its min and, when it counted more than one value, its max and sum
// (appendValue). Without ids, a metric's number is its place in aggs
// (a row waiting to be written: see row.aggregates).
func encodeRow(b []byte, ids []int64, aggs []agg) []byte {
	for i, a := range aggs {
		id := int64(i)
		if ids != nil {
			id = ids[i]
		}
		b = binary.AppendUvarint(b, uint64(id))
		b = binary.AppendUvarint(b, uint64(a.n))
		b = appendValue(b, a.min)
		if a.n > 1 {
			b = appendValue(b, a.max)
			b = appendValue(b, a.sum)
		}
	}
	return b
}

// errCorrupt is a blob that does not read.
var errCorrupt = errors.New("a step's data does not read")

// decodeRow reads a row's blob, calling fn with each metric's number,
// its place in pick and its aggregates; with pick, only for the metrics
// it places, the others passed over undecoded.
func decodeRow(b []byte, pick []int32, fn func(id int64, i int, a agg)) error {
	for len(b) > 0 {
		id, k := binary.Uvarint(b)
		if k <= 0 {
			return errCorrupt
		}
		b = b[k:]
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > math.MaxUint32 {
			return errCorrupt
		}
		b = b[k:]
		values := 1
		if n > 1 {
			values = 3
		}
		i := -1
		if pick != nil {
			if id < uint64(len(pick)) {
				i = int(pick[id])
			}
			if i < 0 {
				var ok bool
				if b, ok = skipValues(b, values); !ok {
					return errCorrupt
				}
				continue
			}
		}
		a := agg{n: uint32(n)}
		var ok bool
		if a.min, b, ok = readValue(b); !ok {
			return errCorrupt
		}
		a.max, a.sum = a.min, a.min
		if n > 1 {
			if a.max, b, ok = readValue(b); !ok {
				return errCorrupt
			}
			if a.sum, b, ok = readValue(b); !ok {
				return errCorrupt
			}
		}
		fn(int64(id), i, a)
	}
	return nil
}

// skipValues passes over n values.
func skipValues(b []byte, n int) ([]byte, bool) {
	for range n {
		x, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, false
		}
		b = b[k:]
		if x == rawValue {
			if len(b) < 8 {
				return nil, false
			}
			b = b[8:]
		}
	}
	return b, true
}

// rawValue is the scale code of a value kept whole, in its 8 bytes.
const rawValue = 31

// appendValue appends a value as the decimal it was written as, when it
// is one — one varint of its digits and scale: two to four bytes for
// what hosts report — or else whole.
func appendValue(b []byte, v float64) []byte {
	if m, k, ok := decimal.Of(v); ok {
		z := uint64(m<<1) ^ uint64(m>>63) // zigzag: |m| < 2^53
		return binary.AppendUvarint(b, z<<5|uint64(k-decimal.MinScale))
	}
	b = binary.AppendUvarint(b, rawValue)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func readValue(b []byte) (float64, []byte, bool) {
	x, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, false
	}
	b = b[k:]
	if x == rawValue {
		if len(b) < 8 {
			return 0, nil, false
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:], true
	}
	code := int8(x & 31)
	if code > decimal.MaxScale-decimal.MinScale {
		return 0, nil, false
	}
	z := x >> 5
	m := int64(z>>1) ^ -int64(z&1)
	return decimal.Value(m, code+decimal.MinScale), b, true
}
