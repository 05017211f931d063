package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A bucket is a key-value bucket opened, and made if there is none, when
// first needed: a replica starts while NATS is away. A bucket made before
// with other settings is used as it is. It is safe for concurrent use.
type bucket struct {
	js  jetstream.JetStream
	cfg jetstream.KeyValueConfig

	mu sync.Mutex
	kv jetstream.KeyValue
}

func newBucket(js jetstream.JetStream, cfg jetstream.KeyValueConfig) *bucket {
	cfg.History, cfg.Storage, cfg.Replicas = 1, jetstream.FileStorage, max(cfg.Replicas, 1)
	return &bucket{js: js, cfg: cfg}
}

// open returns the bucket, opening it the first time.
func (b *bucket) open(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, b.cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, b.cfg)
		if errors.Is(err, jetstream.ErrBucketExists) { // another replica made it first
			kv, err = b.js.KeyValue(ctx, b.cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", b.cfg.Bucket, err)
	}
	b.kv = kv
	return kv, nil
}

// opened returns the bucket if it is open, without trying to.
func (b *bucket) opened() (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv == nil {
		return nil, fmt.Errorf("key-value bucket %s: not open yet", b.cfg.Bucket)
	}
	return b.kv, nil
}

// Retry waits: from minRetry, doubled after each failure up to maxRetry.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 10 * time.Second
)

// retry runs try until it returns no error or ctx is done, waiting
// between tries with backoff and jitter; a try that made progress before
// it failed starts the backoff again. failed hears of each failure and
// the wait before the next try.
func retry(ctx context.Context, try func() (progress bool, err error), failed func(err error, wait time.Duration)) {
	wait := minRetry
	for {
		progress, err := try()
		if err == nil || ctx.Err() != nil {
			return
		}
		if progress {
			wait = minRetry
		}
		failed(err, wait)
		t := time.NewTimer(wait/2 + rand.N(wait/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxRetry)
	}
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
