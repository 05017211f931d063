package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// MaxID is the largest event id: ids are numbers in every event's JSON,
// and JavaScript reads numbers exactly only up to 2^53-1.
const MaxID = 1<<53 - 1

// epochHeadroom is how many ids a run must have before MaxID; a start any
// nearer begins a new epoch instead.
const epochHeadroom = 1 << 40

// NextRunID returns the first event id for a new run: after every id a
// previous run may have used (floor, as saved by the previous run) and not
// before now in microseconds, so ids increase across restarts even when the
// saved floor is stale after a crash. A floor too near MaxID starts a new
// epoch from now: ids go down once, and clients from before get a reset.
func NextRunID(floor uint64, now time.Time) uint64 {
	if floor < MaxID-epochHeadroom {
		return max(floor+1, epochStart(now))
	}
	return epochStart(now)
}

// epochStart is the first id of a new epoch: now in microseconds.
func epochStart(now time.Time) uint64 {
	us := uint64(max(1, now.UnixMicro()))
	if us > MaxID-epochHeadroom {
		return 1 // a clock centuries ahead
	}
	return us
}

// A Cursor is where a client stands in the stream: the id of the last event
// it received, as sent in Last-Event-ID.
type Cursor struct {
	LastID string // empty: a new client, which gets live events only
}

// Reasons a resuming client gets a reset instead of a replay.
const (
	ResetMalformed = "malformed id" // the id is not a number
	ResetOtherRun  = "id from another run"
	ResetTooOld    = "id older than the replay window"
	ResetUnknown   = "id newer than any event" // from another instance, or data was lost
)

// ParseID parses an event id: a decimal number without sign or spaces.
func ParseID(s string) (uint64, error) {
	if s == "" || len(s) > 20 || s[0] == '+' {
		return 0, fmt.Errorf("stream: bad event id %q", truncate(s, 32))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stream: bad event id %q", truncate(s, 32))
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// An IDFile keeps the newest event id on disk, so that the next run starts
// after it (NextRunID) even if this one is killed and the clock steps back.
type IDFile string

// Load reads the saved id; 0 when there is none.
func (f IDFile) Load() (uint64, error) {
	b, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", string(f), err)
	}
	return n, nil
}

// Save writes an id atomically: a crash leaves the old file or the new.
func (f IDFile) Save(id uint64) error {
	tmp := string(f) + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(id, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(f))
}

// SaveEvery is how often Keep saves the newest id.
const SaveEvery = 10 * time.Second

// Keep saves the hub's newest id every SaveEvery until ctx is done (save
// once more when nothing publishes any longer). A failed save (a full
// disk) is counted in vigil_store_errors_total{op="save_event_id"},
// logged once a minute, and tried again next time.
func (f IDFile) Keep(ctx context.Context, h *Hub, set *metrics.Set, log *slog.Logger) error {
	failed := set.GetOrCreateCounter(`vigil_store_errors_total{op="save_event_id"}`)
	var logged time.Time
	t := time.NewTicker(SaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := f.Save(h.LastID()); err != nil {
				failed.Inc()
				if now.Sub(logged) >= time.Minute {
					logged = now
					log.Warn("save event id; tried again every 10s, logged once a minute", "err", err)
				}
			}
		}
	}
}

// EpochStart is the id before the first of an epoch begun at now: now in
// microseconds, so that an epoch begun later numbers every event above an
// earlier one's (which would have had to number more than a million
// events a second to reach it).
func EpochStart(now time.Time) uint64 { return epochStart(now) }
