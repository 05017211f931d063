package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
)

// DefaultAlertsBucket holds the alerts' states, one key a fingerprint.
const DefaultAlertsBucket = "VIGIL_ALERTS"

// AlertStates is an alerts.StateStore whose states are in a key-value
// bucket every replica reads: the replica that holds the alert lease
// writes them, the others read them (and take over from them). Each
// replica also saves its transitions in its own store (local: the outbox
// of the webhooks it sends, the journal of transitions), after the bucket,
// so that a save NATS refuses is made again whole.
type AlertStates struct {
	// Webhooks, when set, queues each save's webhooks in the shared
	// outbox, once the states are written.
	Webhooks *Webhooks

	sending  sync.Mutex // held by the one publishing webhooks
	unsentMu sync.Mutex
	unsent   []alerts.Transition // webhooks NATS has not taken yet, oldest first

	kv    *watched // fingerprint → alerts.Alert; ack.<fingerprint> → alerts.AckRequest; silence.<id> → alerts.Silence
	local alerts.StateStore
	log   *slog.Logger
	// version counts the changes to the copy.
	version atomic.Uint64
}

var (
	_ alerts.Repeater     = (*AlertStates)(nil)
	_ alerts.Resumer      = (*AlertStates)(nil)
	_ alerts.StateStore   = (*AlertStates)(nil)
	_ alerts.AckQueue     = (*AlertStates)(nil)
	_ alerts.Versioned    = (*AlertStates)(nil)
	_ alerts.SilenceStore = (*AlertStates)(nil)
)

// ackPrefix starts the keys of acknowledgements made on a replica that
// does not hold the lease: "ack.<fingerprint>", until the holder applies
// them.
const ackPrefix = "ack."

// silencePrefix starts the keys of silences: "silence.<id>".
const silencePrefix = "silence."

// storedAlert is an alert as the bucket keeps it, with what its JSON
// leaves out.
type storedAlert struct {
	alerts.Alert
	ClearedAt time.Time `json:"cleared_at,omitzero"`
}

// NewAlertStates returns the states in the bucket, which Run opens (and
// makes if there is none) and watches.
func NewAlertStates(js jetstream.JetStream, bucket string, replicas int, local alerts.StateStore, log *slog.Logger) *AlertStates {
	if bucket == "" {
		bucket = DefaultAlertsBucket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &AlertStates{local: local, log: log}
	s.kv = newWatched(newBucket(js, jetstream.KeyValueConfig{Bucket: bucket, Description: "vigil's alert states", Replicas: replicas}), "alert states", log)
	s.kv.decode = func(key string, b []byte) (any, error) {
		if fp, ok := strings.CutPrefix(key, ackPrefix); ok {
			var r alerts.AckRequest
			err := json.Unmarshal(b, &r)
			r.Fingerprint = fp
			return r, err
		}
		if strings.HasPrefix(key, silencePrefix) {
			var sl alerts.Silence
			err := json.Unmarshal(b, &sl)
			return sl, err
		}
		var a storedAlert
		err := json.Unmarshal(b, &a)
		a.Alert.ClearedAt = a.ClearedAt
		return a.Alert, err
	}
	s.kv.changed = func(string) { s.version.Add(1) }
	return s
}

// Run opens the bucket and keeps a copy of it, watched, until ctx is done;
// webhooks NATS did not take are queued again every second.
func (s *AlertStates) Run(ctx context.Context) error {
	go every(ctx, time.Second, func() {
		s.unsentMu.Lock()
		waiting := len(s.unsent) > 0
		s.unsentMu.Unlock()
		if waiting {
			s.queue(ctx, nil)
		}
	})
	s.kv.run(ctx)
	return nil
}

// Version counts the changes to the states the watch saw
// (alerts.Versioned).
func (s *AlertStates) Version() uint64 { return s.version.Load() }

// LoadAlerts returns the states in the bucket, once the watch has them.
func (s *AlertStates) LoadAlerts(ctx context.Context) ([]alerts.Alert, error) {
	if err := s.kv.wait(ctx); err != nil {
		return nil, err
	}
	return s.alerts(), nil
}

func (s *AlertStates) alerts() []alerts.Alert {
	var out []alerts.Alert
	s.kv.each(func(_ string, v any, _ uint64) {
		if a, ok := v.(alerts.Alert); ok {
			out = append(out, a)
		}
	})
	return out
}

// SaveTransitions writes the new states to the bucket, then to the local
// store, then queues their webhooks in the shared outbox. Writing a state
// again is harmless, so a save that fails half way is made again whole,
// and nothing is queued for a state that is not saved. Webhooks that NATS
// does not take are kept and queued again every second (the save itself
// succeeded): each one's id is made from the alert's saved episode, so
// queuing it twice keeps it once; and a holder that dies before they are
// queued leaves them to the next, which queues the latest webhook of every
// alert when it takes the lease (Resume).
func (s *AlertStates) SaveTransitions(ctx context.Context, ts []alerts.Transition) error {
	if _, err := s.kv.b.opened(); err != nil {
		return fmt.Errorf("save alerts in NATS: %w", err)
	}
	for _, t := range ts {
		b, err := json.Marshal(storedAlert{Alert: t.Alert, ClearedAt: t.Alert.ClearedAt})
		if err != nil {
			return fmt.Errorf("save alerts in NATS: %w", err)
		}
		if err := s.kv.put(ctx, t.Alert.Fingerprint, b); err != nil {
			return fmt.Errorf("save alerts in NATS: %w", err)
		}
	}
	if s.local != nil {
		if err := s.local.SaveTransitions(ctx, ts); err != nil {
			return err
		}
	}
	if s.Webhooks != nil {
		var hooks []alerts.Transition
		for _, t := range ts {
			if w, ok := t.Webhook(); ok {
				hooks = append(hooks, w)
			}
		}
		s.queue(ctx, hooks)
	}
	return nil
}

// queue queues webhooks in the shared outbox, after those still waiting.
// One caller at a time publishes; another only adds its webhooks, for the
// one publishing or the next second's try. Those NATS does not take wait.
func (s *AlertStates) queue(ctx context.Context, ts []alerts.Transition) {
	s.unsentMu.Lock()
	s.unsent = append(s.unsent, ts...)
	s.unsentMu.Unlock()
	if !s.sending.TryLock() {
		return
	}
	defer s.sending.Unlock()
	s.unsentMu.Lock()
	now := time.Now()
	keep := s.unsent[:0]
	for _, t := range s.unsent {
		if now.Sub(transitionTime(t)) < webhookDuplicates {
			keep = append(keep, t)
			continue
		}
		s.log.Error("a webhook NATS did not take for an hour is given up", "fingerprint", t.Alert.Fingerprint, "kind", t.Kind)
	}
	s.unsent = keep
	batch := slices.Clone(s.unsent)
	s.unsentMu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Webhooks.Publish(ctx, batch); err != nil {
		s.log.Warn("queuing webhooks in NATS; tried again every second", "webhooks", len(batch), "err", err)
		return
	}
	s.unsentMu.Lock()
	s.unsent = slices.Delete(s.unsent, 0, len(batch)) // only this one removes, from the front
	s.unsentMu.Unlock()
}

// transitionTime is when a webhook's transition happened: its alert
// fired, or resolved, or (late) its silences ended.
func transitionTime(t alerts.Transition) time.Time {
	if t.Late {
		if !t.Alert.NotifiedAt.IsZero() {
			return t.Alert.NotifiedAt
		}
		return t.Alert.UpdatedAt
	}
	if t.Kind == alerts.StateResolved {
		return t.Alert.EndedAt
	}
	return t.Alert.StartedAt
}

// Resume queues again the latest webhook of every alert whose firing or
// resolution is within the outbox's duplicate window (alerts.Resumer):
// those the last holder queued are kept once, and those it saved and
// died before queuing are sent.
func (s *AlertStates) Resume(ctx context.Context) {
	if s.Webhooks == nil {
		return
	}
	now := time.Now()
	var ts []alerts.Transition
	for _, a := range s.alerts() {
		var t alerts.Transition
		switch {
		case a.State == alerts.StateFiring && !a.StartedAt.IsZero():
			// A firing sent late, when its silences ended, is dated then.
			t = alerts.Transition{Kind: alerts.StateFiring, Alert: a, Late: a.NotifiedAt.After(a.StartedAt)}
		case a.State == alerts.StateInactive && !a.StartedAt.IsZero() && !a.EndedAt.Before(a.StartedAt):
			t = alerts.Transition{Kind: alerts.StateResolved, Alert: a}
		default:
			continue
		}
		if w, ok := t.Webhook(); ok && now.Sub(transitionTime(w)) < webhookDuplicates {
			ts = append(ts, w)
		}
	}
	slices.SortFunc(ts, func(a, b alerts.Transition) int { return transitionTime(a).Compare(transitionTime(b)) })
	s.queue(ctx, ts)
}

// RequestAck asks the lease holder to acknowledge an alert.
func (s *AlertStates) RequestAck(ctx context.Context, r alerts.AckRequest) error {
	if _, err := s.kv.b.opened(); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.kv.put(ctx, ackPrefix+r.Fingerprint, b); err != nil {
		return fmt.Errorf("acknowledge through NATS: %w", err)
	}
	return nil
}

// PendingAcks are the acknowledgements waiting, oldest first.
func (s *AlertStates) PendingAcks() []alerts.AckRequest {
	var out []alerts.AckRequest
	s.kv.each(func(_ string, v any, rev uint64) {
		if r, ok := v.(alerts.AckRequest); ok {
			r.Revision = rev
			out = append(out, r)
		}
	})
	slices.SortFunc(out, func(a, b alerts.AckRequest) int { return a.At.Compare(b.At) })
	return out
}

// DoneAck removes an acknowledgement request the holder applied (or
// could not: the alert ended meanwhile), unless a newer one took its
// place; it is forgotten here at once, not when the watch says so.
func (s *AlertStates) DoneAck(ctx context.Context, r alerts.AckRequest) error {
	kv, err := s.kv.b.opened()
	if err != nil {
		return err
	}
	key := ackPrefix + r.Fingerprint
	err = kv.Delete(ctx, key, jetstream.LastRevision(r.Revision))
	if err == nil || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		s.kv.set(key, nil, r.Revision+1) // a newer request has a higher revision, and stays
		if err != nil {
			return nil // a newer request: the next interval applies it
		}
	}
	return err
}

// Silences are the silences in the bucket, once the watch has read it
// (alerts.SilenceStore): every replica answers the same.
func (s *AlertStates) Silences(ctx context.Context) ([]alerts.Silence, error) {
	if err := waitRead(ctx, s.kv); err != nil {
		return nil, err
	}
	var out []alerts.Silence
	s.kv.each(func(_ string, v any, _ uint64) {
		if sl, ok := v.(alerts.Silence); ok {
			out = append(out, sl)
		}
	})
	return out, nil
}

// PutSilence saves a silence in the bucket, and removes those past their
// retention.
func (s *AlertStates) PutSilence(ctx context.Context, sl alerts.Silence) error {
	b, err := json.Marshal(sl)
	if err != nil {
		return err
	}
	if err := s.kv.put(ctx, silencePrefix+sl.ID, b); err != nil {
		return fmt.Errorf("%w: save silence in NATS: %w", alerts.ErrStore, err)
	}
	list, _ := s.Silences(ctx)
	var old []string
	for id := range alerts.Forget(list, sl.UpdatedAt) {
		old = append(old, silencePrefix+id)
	}
	for _, key := range old {
		if err := s.kv.remove(ctx, key); err != nil {
			s.log.Warn("removing a silence past its retention; removed with the next one saved", "key", key, "err", err)
		}
	}
	return nil
}

// Repeat queues the repeats of firing alerts that are due, in the shared
// outbox (alerts.Repeater).
func (s *AlertStates) Repeat(ctx context.Context, firing []alerts.Alert, now time.Time) error {
	if s.Webhooks == nil {
		return nil
	}
	return s.Webhooks.Repeat(ctx, firing, now, func(a alerts.Alert) bool {
		kv, err := s.kv.b.opened()
		if err != nil {
			return false
		}
		e, err := kv.Get(ctx, a.Fingerprint)
		if err != nil {
			return false
		}
		var saved storedAlert
		return json.Unmarshal(e.Value(), &saved) == nil && saved.Repeats() && saved.StartedAt.Equal(a.StartedAt)
	})
}
