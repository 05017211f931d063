package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A watched bucket is a copy of a key-value bucket, in memory, kept by a
// watch: reads cost no round trip and answer the same on every replica
// once its watch has caught up. A replica's own writes are in its copy at
// once (put and remove), so it reads what it wrote; the watch never
// brings back an older revision of a key.
type watched struct {
	b       *bucket
	log     *slog.Logger
	what    string           // for logs: "receivers"
	changed func(key string) // after each change of a key, outside the lock; may be nil
	// decode, when set, reads each value once as it comes; a value it
	// cannot read is logged and skipped by each.
	decode func(key string, val []byte) (any, error)

	mu    sync.Mutex
	vals  map[string]entry
	ready chan struct{} // closed once the watch has every value
	once  sync.Once
}

type entry struct {
	val []byte // nil: deleted
	v   any    // decoded
	rev uint64
}

func newWatched(b *bucket, what string, log *slog.Logger) *watched {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &watched{b: b, what: what, log: log, vals: map[string]entry{}, ready: make(chan struct{})}
}

// run opens the bucket and keeps the copy until ctx is done.
func (w *watched) run(ctx context.Context) {
	retry(ctx, func() (bool, error) {
		kv, err := w.b.open(ctx)
		if err != nil {
			return false, err
		}
		return w.watch(ctx, kv)
	}, func(err error, wait time.Duration) {
		w.log.Warn("watching a bucket in NATS", "bucket", w.what, "err", err, "retry_in", wait)
	})
}

func (w *watched) watch(ctx context.Context, kv jetstream.KeyValue) (caught bool, err error) {
	wt, err := kv.WatchAll(ctx)
	if err != nil {
		return false, err
	}
	defer wt.Stop()
	initial := true
	seen := map[string]bool{} // keys the initial values had: the rest were deleted while the watch was away
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return !initial, ctx.Err()
		case e, ok = <-wt.Updates():
			if !ok {
				return !initial, errors.New("the watch ended")
			}
		}
		if e == nil {
			initial = false
			w.mu.Lock()
			var gone []string
			for k, v := range w.vals {
				if !seen[k] && v.val != nil {
					gone = append(gone, k)
					delete(w.vals, k)
				}
			}
			w.mu.Unlock()
			w.once.Do(func() { close(w.ready) })
			for _, k := range gone {
				w.notify(k)
			}
			continue
		}
		if initial {
			seen[e.Key()] = true
		}
		var val []byte
		if e.Operation() == jetstream.KeyValuePut {
			val = e.Value()
		}
		w.set(e.Key(), val, e.Revision())
	}
}

// set keeps a key's value (nil: deleted) at a revision, unless the copy
// has a newer one.
func (w *watched) set(key string, val []byte, rev uint64) {
	var v any
	if val != nil && w.decode != nil {
		var err error
		if v, err = w.decode(key, val); err != nil {
			w.log.Warn("a value in NATS vigil cannot read; skipped", "bucket", w.what, "key", key, "err", err)
		}
	}
	w.mu.Lock()
	if old, ok := w.vals[key]; ok && old.rev >= rev {
		w.mu.Unlock()
		return
	}
	w.vals[key] = entry{val: val, v: v, rev: rev}
	w.mu.Unlock()
	w.notify(key)
}

// each calls f with every key's decoded value and revision, under the
// copy's lock: f must not call the copy.
func (w *watched) each(f func(key string, v any, rev uint64)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range w.vals {
		if e.v != nil {
			f(k, e.v, e.rev)
		}
	}
}

// value returns a key's decoded value.
func (w *watched) value(key string) (any, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.vals[key]
	return e.v, ok && e.v != nil
}

func (w *watched) notify(key string) {
	if w.changed != nil {
		w.changed(key)
	}
}

// wait waits until the copy has every value, or ctx is done.
func (w *watched) wait(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// put writes a key to the bucket and to the copy.
func (w *watched) put(ctx context.Context, key string, val []byte) error {
	kv, err := w.b.open(ctx)
	if err != nil {
		return err
	}
	rev, err := kv.Put(ctx, key, val)
	if err != nil {
		return err
	}
	w.set(key, val, rev)
	return nil
}

// remove deletes a key from the bucket and from the copy.
func (w *watched) remove(ctx context.Context, key string) error {
	kv, err := w.b.open(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, key); err != nil {
		return err
	}
	// The delete marker's revision is not returned. It is above the
	// revision the copy had; any later write is above the marker.
	w.mu.Lock()
	rev := w.vals[key].rev + 1
	w.mu.Unlock()
	w.set(key, nil, rev)
	return nil
}

// forget drops a key from the copy, not from the bucket: one the bucket
// let age out.
func (w *watched) forget(key string) {
	w.mu.Lock()
	if e, ok := w.vals[key]; ok {
		w.vals[key] = entry{rev: e.rev}
	}
	w.mu.Unlock()
}

// update changes a key's value with change, on its newest revision: a
// write meanwhile makes it read the key again and change that, and a key
// that is gone is left gone.
func (w *watched) update(ctx context.Context, key string, change func([]byte) ([]byte, error)) error {
	kv, err := w.b.open(ctx)
	if err != nil {
		return err
	}
	for range 5 {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil
		}
		if err != nil {
			return err
		}
		val, err := change(e.Value())
		if err != nil {
			return err
		}
		rev, err := kv.Update(ctx, key, val, e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return err
		}
		w.set(key, val, rev)
		return nil
	}
	return errors.New("changed by others five times over")
}

// create writes a key that does not exist yet; one that does is left as
// it is.
func (w *watched) create(ctx context.Context, key string, val []byte) error {
	kv, err := w.b.open(ctx)
	if err != nil {
		return err
	}
	rev, err := kv.Create(ctx, key, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	if err != nil {
		return err
	}
	w.set(key, val, rev)
	return nil
}
