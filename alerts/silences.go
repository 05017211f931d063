package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"vigil/stream"
)

// Silences: a silence mutes the alerts its matchers pick from its start
// to its end, as Alertmanager's do, during a maintenance window, say. A
// silenced alert still moves through its states and shows on the page,
// marked, but sends nothing, with two rules that keep receivers right:
//
//   - an alert that fired while silenced and is still firing when its
//     silences end is sent then, as a firing (late, not lost);
//   - a resolution goes wherever its firing went: an alert whose firing
//     was sent before a silence began still sends its resolution (so the
//     PagerDuty incident it opened closes), and one whose firing was
//     muted sends none.
//
// Repeats of a silenced alert wait until it is not. A silence is never
// deleted, only expired (ended now), and is forgotten SilenceRetention
// after its end.

// A Silence mutes the alerts that pass all of its matchers between
// StartsAt and EndsAt.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
	UpdatedAt time.Time `json:"updated_at"`
}

// A silence's states.
const (
	SilencePending = "pending" // it starts later
	SilenceActive  = "active"
	SilenceExpired = "expired"
)

// SilenceRetention is how long an expired silence is kept (listed) after
// its end: Alertmanager's default.
const SilenceRetention = 5 * 24 * time.Hour

// MaxSilences bounds the silences active or pending, and apart from them
// the expired ones kept.
const MaxSilences = 10000

// State is where the silence stands at now.
func (s Silence) State(now time.Time) string {
	switch {
	case !now.Before(s.EndsAt):
		return SilenceExpired
	case now.Before(s.StartsAt):
		return SilencePending
	}
	return SilenceActive
}

// Mutes reports whether the silence's matchers all pass labels (whatever
// its state).
func (s Silence) Mutes(labels map[string]string) bool {
	for _, src := range s.Matchers {
		m, err := matcher(src)
		if err != nil || !m.Matches(labels) {
			return false
		}
	}
	return len(s.Matchers) > 0
}

// Muting is the ids of the silences in list, active at now, that mute an
// alert with labels: sorted, nil for none.
func Muting(list []Silence, labels map[string]string, now time.Time) []string {
	var ids []string
	for _, s := range list {
		if s.State(now) == SilenceActive && s.Mutes(labels) {
			ids = append(ids, s.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// A SilenceStore keeps silences: vigil.db (DB), or NATS for replicas
// (cluster.Silences). Silences answers from memory, for every
// evaluation; it may fail while the store has not been read. It must be
// safe for concurrent use.
type SilenceStore interface {
	Silences(ctx context.Context) ([]Silence, error)
	// PutSilence creates or replaces a silence, and forgets those that
	// Forget lists at its UpdatedAt.
	PutSilence(ctx context.Context, s Silence) error
}

// SilenceInput is what a client sends to create a silence: an end, or a
// duration from its start.
type SilenceInput struct {
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at,omitzero"` // zero: now
	EndsAt    time.Time `json:"ends_at,omitzero"`
	Duration  Duration  `json:"duration,omitempty"` // instead of ends_at
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
}

// Bounds of a silence's fields.
const (
	maxSilenceAuthor  = 100
	maxSilenceComment = 1000
)

// Silence checks the input and makes a new silence of it at now; the
// error wraps ErrInvalid.
func (in SilenceInput) Silence(now time.Time) (Silence, error) {
	var errs []error
	if len(in.Matchers) == 0 {
		errs = append(errs, errors.New(`matchers: at least one, such as alertname="HighCPU" or source="host/web-1"`))
	}
	if err := checkMatch(in.Matchers); err != nil {
		errs = append(errs, errors.New("matchers"+strings.TrimPrefix(err.Error(), "match")))
	} else if len(in.Matchers) > 0 && Muting([]Silence{{Matchers: in.Matchers, EndsAt: now.Add(time.Hour)}}, map[string]string{}, now) != nil {
		errs = append(errs, errors.New(`matchers: they match an alert without labels, so they silence every alert; add one that names what to silence, such as alertname="HighCPU"`))
	}
	in.CreatedBy, in.Comment = strings.TrimSpace(in.CreatedBy), strings.TrimSpace(in.Comment)
	switch {
	case in.CreatedBy == "":
		errs = append(errs, errors.New("created_by: say who silences (a name)"))
	case len(in.CreatedBy) > maxSilenceAuthor:
		errs = append(errs, fmt.Errorf("created_by: at most %d bytes", maxSilenceAuthor))
	}
	switch {
	case in.Comment == "":
		errs = append(errs, errors.New("comment: say why (a ticket, the maintenance)"))
	case len(in.Comment) > maxSilenceComment:
		errs = append(errs, fmt.Errorf("comment: at most %d bytes", maxSilenceComment))
	}
	start := in.StartsAt
	if start.IsZero() || start.Before(now) {
		start = now
	}
	end := in.EndsAt
	switch {
	case !end.IsZero() && in.Duration != 0:
		errs = append(errs, errors.New("give ends_at or duration, not both"))
	case in.Duration < 0:
		errs = append(errs, errors.New("duration: must be positive"))
	case in.Duration > 0:
		end = start.Add(time.Duration(in.Duration))
	case end.IsZero():
		errs = append(errs, errors.New(`ends_at or duration: when the silence ends ("duration": "2h")`))
	case !end.After(start):
		errs = append(errs, fmt.Errorf("ends_at: %s is not after the start, %s", end.Format(time.RFC3339), start.Format(time.RFC3339)))
	}
	if err := errors.Join(errs...); err != nil {
		return Silence{}, invalid(err)
	}
	return Silence{ID: newID("sil_"), Matchers: slices.Clone(in.Matchers), StartsAt: start.UTC(), EndsAt: end.UTC(),
		CreatedBy: stream.Clip(in.CreatedBy, maxSilenceAuthor), Comment: in.Comment, UpdatedAt: now.UTC()}, nil
}

// CreateSilence adds a silence made of in at now.
func CreateSilence(ctx context.Context, st SilenceStore, in SilenceInput, now time.Time) (Silence, error) {
	s, err := in.Silence(now)
	if err != nil {
		return Silence{}, err
	}
	list, err := st.Silences(ctx)
	if err != nil {
		return Silence{}, err
	}
	if n := countLive(list, now); n >= MaxSilences {
		return Silence{}, invalid(fmt.Errorf("%d silences are active or pending already; expire some first", n))
	}
	if err := st.PutSilence(ctx, s); err != nil {
		return Silence{}, err
	}
	return s, nil
}

// countLive counts the silences active or pending: Alertmanager's bound
// (expired ones are bounded by their retention, and by forget).
func countLive(list []Silence, now time.Time) int {
	n := 0
	for _, s := range list {
		if s.State(now) != SilenceExpired {
			n++
		}
	}
	return n
}

// Forgotten reports whether a silence ended more than SilenceRetention
// before now.
func Forgotten(s Silence, now time.Time) bool { return now.Sub(s.EndsAt) > SilenceRetention }

// Forget lists the silences a store drops at now: those past their
// retention, and the oldest expired ones beyond MaxSilences of them.
func Forget(list []Silence, now time.Time) map[string]bool {
	out := map[string]bool{}
	var expired []Silence
	for _, s := range list {
		switch {
		case Forgotten(s, now):
			out[s.ID] = true
		case s.State(now) == SilenceExpired:
			expired = append(expired, s)
		}
	}
	if len(expired) > MaxSilences {
		slices.SortFunc(expired, func(a, b Silence) int { return b.EndsAt.Compare(a.EndsAt) })
		for _, s := range expired[MaxSilences:] {
			out[s.ID] = true
		}
	}
	return out
}

// FindSilence is the silence with id, or a *NotFoundError.
func FindSilence(ctx context.Context, st SilenceStore, id string, now time.Time) (Silence, error) {
	list, err := st.Silences(ctx)
	if err != nil {
		return Silence{}, err
	}
	for _, s := range list {
		if s.ID == id && !Forgotten(s, now) {
			return s, nil
		}
	}
	return Silence{}, &NotFoundError{"silence", id}
}

// ExpireSilence ends a silence at now: a pending one never starts. An
// expired one is left as it is.
func ExpireSilence(ctx context.Context, st SilenceStore, id string, now time.Time) (Silence, error) {
	s, err := FindSilence(ctx, st, id, now)
	if err != nil || s.State(now) == SilenceExpired {
		return s, err
	}
	if s.StartsAt.After(now) {
		s.StartsAt = now.UTC()
	}
	s.EndsAt, s.UpdatedAt = now.UTC(), now.UTC()
	if err := st.PutSilence(ctx, s); err != nil {
		return Silence{}, err
	}
	return s, nil
}

// UpdateSilence changes a silence, as Alertmanager does: in gives the
// whole silence again (a duration counts from now). A pending one is
// changed in place; an active one too if its matchers stay the same
// (its end, its comment, its author), and otherwise it is expired and a
// new one made, which is returned. An expired one is not changed.
func UpdateSilence(ctx context.Context, st SilenceStore, id string, in SilenceInput, now time.Time) (Silence, error) {
	old, err := FindSilence(ctx, st, id, now)
	if err != nil {
		return Silence{}, err
	}
	state := old.State(now)
	if state == SilenceExpired {
		return Silence{}, invalid(fmt.Errorf("silence %s has expired; make a new one", id))
	}
	next, err := in.Silence(now)
	if err != nil {
		return Silence{}, err
	}
	same := slices.Equal(slices.Sorted(slices.Values(old.Matchers)), slices.Sorted(slices.Values(next.Matchers)))
	if state == SilenceActive && !same {
		if _, err := ExpireSilence(ctx, st, id, now); err != nil {
			return Silence{}, err
		}
		if err := st.PutSilence(ctx, next); err != nil {
			return Silence{}, err
		}
		return next, nil
	}
	next.ID = old.ID
	if state == SilenceActive {
		next.StartsAt = old.StartsAt
	}
	if err := st.PutSilence(ctx, next); err != nil {
		return Silence{}, err
	}
	return next, nil
}

// ListSilences is every silence kept at now: active first, then pending,
// then expired; within each, the one ending first first (expired: the
// latest first).
func ListSilences(ctx context.Context, st SilenceStore, now time.Time) ([]Silence, error) {
	list, err := st.Silences(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Silence, 0, len(list))
	for _, s := range list {
		if !Forgotten(s, now) {
			out = append(out, s)
		}
	}
	rank := map[string]int{SilenceActive: 0, SilencePending: 1, SilenceExpired: 2}
	slices.SortFunc(out, func(a, b Silence) int {
		ra, rb := rank[a.State(now)], rank[b.State(now)]
		if ra != rb {
			return ra - rb
		}
		if ra == 2 {
			return b.EndsAt.Compare(a.EndsAt)
		}
		return a.EndsAt.Compare(b.EndsAt)
	})
	return out, nil
}

const silencesSchema = `
CREATE TABLE IF NOT EXISTS silences (
	id      TEXT PRIMARY KEY,
	body    TEXT NOT NULL,
	ends_at INTEGER NOT NULL
);`

// loadSilences reads the silences into memory, once, when the database
// opens.
func (d *DB) loadSilences(ctx context.Context) error {
	rows, err := d.db.QueryContext(ctx, `SELECT body FROM silences`)
	if err != nil {
		return fmt.Errorf("load silences: %w", err)
	}
	defer rows.Close()
	var list []Silence
	for rows.Next() {
		var body string
		var s Silence
		if err := rows.Scan(&body); err != nil {
			return fmt.Errorf("load silences: %w", err)
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return fmt.Errorf("load silences: %w", err)
		}
		list = append(list, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load silences: %w", err)
	}
	d.silMu.Lock()
	d.silences = list
	d.silMu.Unlock()
	return nil
}

// Silences is every silence kept, from memory.
func (d *DB) Silences(context.Context) ([]Silence, error) {
	d.silMu.Lock()
	defer d.silMu.Unlock()
	return slices.Clone(d.silences), nil
}

// PutSilence saves a silence, and forgets those past their retention.
func (d *DB) PutSilence(ctx context.Context, s Silence) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	d.silMu.Lock()
	defer d.silMu.Unlock()
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%w: save silence: %w", ErrStore, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO silences (id, body, ends_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body, ends_at = excluded.ends_at`, s.ID, string(body), ms(s.EndsAt)); err != nil {
		return fmt.Errorf("%w: save silence: %w", ErrStore, err)
	}
	all := append(slices.DeleteFunc(slices.Clone(d.silences), func(o Silence) bool { return o.ID == s.ID }), s)
	gone := Forget(all, s.UpdatedAt)
	for id := range gone {
		if _, err := tx.ExecContext(ctx, `DELETE FROM silences WHERE id = ?`, id); err != nil {
			return fmt.Errorf("%w: save silence: %w", ErrStore, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%w: save silence: %w", ErrStore, err)
	}
	d.silences = slices.DeleteFunc(all, func(o Silence) bool { return gone[o.ID] })
	return nil
}
