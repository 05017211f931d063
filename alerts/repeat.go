package alerts

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"vigil/internal/duration"
)

// Repeats: a receiver with a RepeatInterval gets a firing alert's webhook
// again every interval while it fires, as Alertmanager's repeat_interval
// does: a page that was missed comes back. The n-th repeat of an episode
// is due n intervals after it fired, and has an id of its own, the same
// wherever it is made, so it is sent once.

// An Interval is a duration that JSON writes as Go does ("4h0m0s"), and
// reads from such a string (or, as stored before, nanoseconds).
type Interval time.Duration

func (d Interval) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Interval) UnmarshalJSON(b []byte) error {
	var ns int64
	if err := json.Unmarshal(b, &ns); err == nil { // as stored before
		*d = Interval(ns)
		return nil
	}
	var v Duration
	err := v.UnmarshalJSON(b)
	*d = Interval(v)
	return err
}

// A Duration is a duration as a client writes it in JSON: a string with
// its unit, Go's ("90s", "4h30m") or Prometheus's days and weeks ("2d",
// "1w"). A bare number is refused: it has no unit.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`%s: want a duration as a string with its unit, such as "4h", "90s" or "2d"`, b)
	}
	v, err := duration.Parse(s)
	if err != nil {
		return fmt.Errorf(`%q: want a duration such as "4h", "90s" or "2d"`, s)
	}
	*d = Duration(v)
	return nil
}

// RepeatCheck is how often the evaluator looks for repeats that are due.
const RepeatCheck = 30 * time.Second

// MinRepeatInterval bounds a receiver's repeat_interval.
const MinRepeatInterval = time.Minute

// A Repeater is a StateStore that sends repeats: the evaluator hands it
// the firing alerts every RepeatCheck (on a replica, only the lease
// holder does).
type Repeater interface {
	Repeat(ctx context.Context, firing []Alert, now time.Time) error
}

// A Repeat is a firing alert's webhook due again to one receiver.
type Repeat struct {
	Receiver Receiver
	Alert    Alert
	N        int    // the first repeat is 1
	ID       string // its delivery's id
}

// DueRepeats are the repeats due now: for every active receiver with a
// repeat interval that takes alert.firing and the alert, and existed when
// it fired, the latest repeat whose time has come.
func DueRepeats(rcvs []Receiver, firing []Alert, now time.Time) []Repeat {
	var out []Repeat
	for _, r := range rcvs {
		if r.RepeatInterval <= 0 || r.Status != ReceiverActive || !r.Wants(EventFiring) {
			continue
		}
		for _, a := range firing {
			if !a.Repeats() || r.CreatedAt.After(a.StartedAt) || !r.Takes(MatchLabels(a)) {
				continue
			}
			n := int(now.Sub(a.notified()) / time.Duration(r.RepeatInterval))
			if n < 1 {
				continue
			}
			out = append(out, Repeat{Receiver: r, Alert: a, N: n, ID: RepeatID(a, r.ID, time.Duration(r.RepeatInterval), n)})
		}
	}
	return out
}

// Repeats reports whether a firing alert is paged again: not when it is
// acknowledged (someone is on it), nor silenced, nor while its firing is
// muted.
func (a Alert) Repeats() bool {
	return a.State == StateFiring && !a.StartedAt.IsZero() && a.AckedBy == "" && len(a.SilencedBy) == 0 && !a.Muted
}

// notified is when an alert's firing was sent: repeats count from then.
func (a Alert) notified() time.Time {
	if a.NotifiedAt.After(a.StartedAt) {
		return a.NotifiedAt
	}
	return a.StartedAt
}

// RepeatID is the delivery id of an episode's n-th repeat, every
// interval, to a receiver (a new interval numbers its repeats anew).
func RepeatID(a Alert, receiverID string, interval time.Duration, n int) string {
	h := sha256.Sum256([]byte(a.Fingerprint + "\x00repeat\x00" + strconv.FormatInt(a.StartedAt.UnixMicro(), 10) + "\x00" + receiverID +
		"\x00" + interval.String() + "\x00" + strconv.Itoa(n)))
	return "msg_" + base64.RawURLEncoding.EncodeToString(h[:16])
}

var _ Repeater = (*DB)(nil)

// Repeat queues the repeats that are due and not queued yet, each in a
// transaction that reads the alert's saved state again: a resolution
// saved meanwhile means no repeat, and one saved after waits behind it.
func (d *DB) Repeat(ctx context.Context, firing []Alert, now time.Time) error {
	rcvs, _, err := d.cached(ctx)
	if err != nil {
		return err
	}
	for _, rp := range DueRepeats(rcvs, firing, now) {
		if err := d.repeat(ctx, rp, now); err != nil {
			return fmt.Errorf("repeat webhook: %w", err)
		}
	}
	return nil
}

func (d *DB) repeat(ctx context.Context, rp Repeat, now time.Time) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Not queued before; and the receiver got the episode's firing (its
	// latest delivery of the alert is one) and has none of the alert's
	// waiting: the firing goes first, and a receiver that is down has
	// one page waiting, not one an interval.
	var queued, fired bool
	var open int
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = ?)`, rp.ID).Scan(&queued); err != nil || queued {
		return err
	}
	if err := d.queryRow(ctx, tx, sqlFired, rp.Receiver.ID, rp.Alert.Fingerprint).Scan(&fired); err != nil || !fired {
		return err
	}
	if err := d.queryRow(ctx, tx, sqlAlertOpen, rp.Receiver.ID, rp.Alert.Fingerprint).Scan(&open); err != nil || open > 0 {
		return err
	}
	var body string
	err = tx.QueryRowContext(ctx, `SELECT body FROM alerts WHERE fingerprint = ?`, rp.Alert.Fingerprint).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	var saved stored
	if err := json.Unmarshal([]byte(body), &saved); err != nil {
		return err
	}
	if !saved.Repeats() || !saved.StartedAt.Equal(rp.Alert.StartedAt) {
		return nil // resolved, acknowledged, silenced, or another episode, since
	}
	seq := d.seq.Add(1)
	payload, err := TransitionPayload(rp.Receiver.Format, Transition{Kind: StateFiring, Alert: saved.Alert}, d.DashboardURL, seq)
	if err != nil {
		return err
	}
	res, err := d.exec(ctx, tx, sqlInsertPayload, payload)
	if err != nil {
		return err
	}
	pid, _ := res.LastInsertId()
	if _, err := d.exec(ctx, tx, sqlInsertDelivery, seq, rp.ID, rp.Receiver.ID, EventFiring, pid, DeliveryQueued, ms(now), ms(now), ms(now), rp.Alert.Fingerprint, false); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	d.retryAt(now)
	return nil
}
