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
	// outbox, before the states are written.
	Webhooks *Webhooks

	b     *bucket
	local alerts.StateStore
	log   *slog.Logger

	mu    sync.Mutex
	byFP  map[string]alerts.Alert      // the bucket, as watched
	acks  map[string]alerts.AckRequest // acknowledgements waiting for the lease holder, by fingerprint
	ready chan struct{}                // closed once the watch has every value
	once  sync.Once
	// version counts the changes to byFP the watch made.
	version atomic.Uint64
}

var (
	_ alerts.StateStore = (*AlertStates)(nil)
	_ alerts.AckQueue   = (*AlertStates)(nil)
	_ alerts.Versioned  = (*AlertStates)(nil)
)

// ackPrefix starts the keys of acknowledgements made on a replica that
// does not hold the lease: "ack.<fingerprint>", until the holder applies
// them.
const ackPrefix = "ack."

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
	return &AlertStates{b: newBucket(js, jetstream.KeyValueConfig{Bucket: bucket, Description: "vigil's alert states", Replicas: replicas}),
		local: local, log: log, byFP: map[string]alerts.Alert{}, acks: map[string]alerts.AckRequest{}, ready: make(chan struct{})}
}

// Run opens the bucket and keeps a copy of it, watched, until ctx is done.
func (s *AlertStates) Run(ctx context.Context) error {
	retry(ctx, func() (bool, error) {
		kv, err := s.b.open(ctx)
		if err != nil {
			return false, err
		}
		return s.watch(ctx, kv)
	}, func(err error, wait time.Duration) {
		s.log.Warn("watching the alert states in NATS", "err", err, "retry_in", wait)
	})
	return nil
}

// watch keeps the copy until the watch ends; caught says it had every
// value before it did.
func (s *AlertStates) watch(ctx context.Context, kv jetstream.KeyValue) (caught bool, err error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return false, err
	}
	defer w.Stop()
	fresh := map[string]alerts.Alert{}
	initial := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return !initial, ctx.Err()
		case e, ok = <-w.Updates():
			if !ok {
				return !initial, errors.New("the watch ended")
			}
		}
		if e == nil { // every value there was is in: from here on, updates
			s.mu.Lock()
			s.byFP = fresh
			s.mu.Unlock()
			s.version.Add(1)
			initial = false
			s.once.Do(func() { close(s.ready) })
			continue
		}
		if fp, ok := strings.CutPrefix(e.Key(), ackPrefix); ok {
			s.takeAck(fp, e)
			continue
		}
		target := fresh
		if !initial {
			s.mu.Lock()
			target = s.byFP
		}
		switch e.Operation() {
		case jetstream.KeyValuePut:
			var a storedAlert
			if err := json.Unmarshal(e.Value(), &a); err != nil {
				s.log.Warn("an alert state in NATS vigil cannot read", "key", e.Key(), "err", err)
			} else {
				a.Alert.ClearedAt = a.ClearedAt
				target[e.Key()] = a.Alert
			}
		default:
			delete(target, e.Key())
		}
		if !initial {
			s.mu.Unlock()
			s.version.Add(1)
		}
	}
}

// Version counts the changes to the states the watch saw
// (alerts.Versioned).
func (s *AlertStates) Version() uint64 { return s.version.Load() }

// LoadAlerts returns the states in the bucket, once the watch has them.
func (s *AlertStates) LoadAlerts(ctx context.Context) ([]alerts.Alert, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]alerts.Alert, 0, len(s.byFP))
	for _, a := range s.byFP {
		out = append(out, a)
	}
	return out, nil
}

// SaveTransitions queues the webhooks in the shared outbox, then writes
// the new states to the bucket, then to the local store. Queuing a
// webhook or writing a state again is harmless (a webhook's id is made
// from its transition), so a save that fails half way is made again
// whole; and a holder that dies after the webhooks and before the states
// leaves the same transitions to the next holder, whose webhooks are the
// same ones.
func (s *AlertStates) SaveTransitions(ctx context.Context, ts []alerts.Transition) error {
	kv, err := s.b.opened()
	if err != nil {
		return fmt.Errorf("save alerts in NATS: %w", err)
	}
	if s.Webhooks != nil {
		if err := s.Webhooks.Publish(ctx, ts); err != nil {
			return err
		}
	}
	for _, t := range ts {
		b, err := json.Marshal(storedAlert{Alert: t.Alert, ClearedAt: t.Alert.ClearedAt})
		if err != nil {
			return fmt.Errorf("save alerts in NATS: %w", err)
		}
		if _, err := kv.Put(ctx, t.Alert.Fingerprint, b); err != nil {
			return fmt.Errorf("save alerts in NATS: %w", err)
		}
	}
	if s.local == nil {
		return nil
	}
	return s.local.SaveTransitions(ctx, ts)
}

// takeAck notes an acknowledgement request, or its removal.
func (s *AlertStates) takeAck(fp string, e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.acks, fp)
		return
	}
	var r alerts.AckRequest
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		s.log.Warn("an acknowledgement in NATS vigil cannot read", "key", e.Key(), "err", err)
		return
	}
	r.Fingerprint, r.Revision = fp, e.Revision()
	s.acks[fp] = r
}

// RequestAck asks the lease holder to acknowledge an alert.
func (s *AlertStates) RequestAck(ctx context.Context, r alerts.AckRequest) error {
	kv, err := s.b.opened()
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, ackPrefix+r.Fingerprint, b); err != nil {
		return fmt.Errorf("acknowledge through NATS: %w", err)
	}
	return nil
}

// PendingAcks are the acknowledgements waiting, oldest first.
func (s *AlertStates) PendingAcks() []alerts.AckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]alerts.AckRequest, 0, len(s.acks))
	for _, r := range s.acks {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b alerts.AckRequest) int { return a.At.Compare(b.At) })
	return out
}

// DoneAck removes an acknowledgement request the holder applied (or
// could not: the alert ended meanwhile), unless a newer one took its
// place; it is forgotten here at once, not when the watch says so.
func (s *AlertStates) DoneAck(ctx context.Context, r alerts.AckRequest) error {
	kv, err := s.b.opened()
	if err != nil {
		return err
	}
	err = kv.Delete(ctx, ackPrefix+r.Fingerprint, jetstream.LastRevision(r.Revision))
	if err == nil || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		s.mu.Lock()
		if cur, ok := s.acks[r.Fingerprint]; ok && cur.Revision == r.Revision {
			delete(s.acks, r.Fingerprint)
		}
		s.mu.Unlock()
		if err != nil {
			return nil // a newer request: the next interval applies it
		}
	}
	return err
}
