package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease defaults.
const (
	DefaultLeaseBucket = "VIGIL_LEASES"
	DefaultLeaseTTL    = 10 * time.Second
)

// A Lease is held by one replica at a time: a key in a JetStream key-value
// bucket whose values live TTL after they are written. The holder writes
// it again every TTL/4, each write compare-and-set on the revision it
// wrote last; another replica takes it (create, which fails while the key
// exists) only once it has expired, TTL after the holder's last write.
//
// The holder counts itself the holder for only TTL/2 after it sent its
// last write that succeeded, on its own clock: a holder cut off from NATS
// stops well before the key expires and another may take it, whatever the
// two clocks say. Takeover after a holder dies takes TTL to TTL+TTL/4;
// after a holder stops (Run returns), it gives the key up and another
// takes it within TTL/4.
type Lease struct {
	b    *bucket
	kv   jetstream.KeyValue // opened by Run, its TTL checked
	key  string
	name string
	ttl  time.Duration
	log  *slog.Logger
	now  func() time.Time

	mu    sync.Mutex
	rev   uint64    // the revision this replica wrote last
	until time.Time // held while now is before it
	term  uint64    // counts the times it was taken
}

// LeaseOptions configure a Lease.
type LeaseOptions struct {
	Bucket   string        // DefaultLeaseBucket
	Key      string        // what the lease is for: "alerts"
	Name     string        // the replica's
	TTL      time.Duration // DefaultLeaseTTL
	Replicas int           // copies of the bucket in a NATS cluster
	Logger   *slog.Logger
	Now      func() time.Time
}

// NewLease returns a lease in the bucket, which Run opens (and makes if
// there is none).
func NewLease(js jetstream.JetStream, o LeaseOptions) *Lease {
	if o.Bucket == "" {
		o.Bucket = DefaultLeaseBucket
	}
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Lease{b: newBucket(js, jetstream.KeyValueConfig{Bucket: o.Bucket, Description: "vigil's leases", TTL: o.TTL, Replicas: o.Replicas}),
		key: o.Key, name: o.Name, ttl: o.TTL, log: o.Logger, now: o.Now}
}

// Held says whether this replica holds the lease now, and the term: a
// number that changes every time it takes the lease, so that a holder can
// tell it held it before and lost it meanwhile.
func (l *Lease) Held() (held bool, term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now().Before(l.until), l.term
}

// Lead is Held with the time the lease runs out if not written again:
// what alerts.Evaluator.Lead takes.
func (l *Lease) Lead() (held bool, term uint64, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now().Before(l.until), l.term, l.until
}

// Run opens the bucket, then takes and keeps the lease until ctx is done,
// and gives it up.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.ttl / 4)
	defer t.Stop()
	for {
		if l.kv == nil {
			l.open(ctx)
			t.Reset(l.ttl / 4)
		}
		if l.kv != nil {
			l.try(ctx, l.ttl/4)
		}
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-t.C:
		}
	}
}

// open opens the bucket and takes its TTL: the key expires after the
// bucket's, whatever this replica's configuration says, so a replica
// configured otherwise times its lease by the bucket's (and says so). A
// bucket without a TTL (made by hand) would keep a dead replica's lease
// for ever: it is refused.
func (l *Lease) open(ctx context.Context) {
	kv, err := l.b.open(ctx)
	if err == nil {
		var st jetstream.KeyValueStatus
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err = kv.Status(sctx)
		cancel()
		switch {
		case err != nil:
		case st.TTL() <= 0:
			err = fmt.Errorf("bucket %s keeps its keys for ever: a lease there would outlive a replica that died; delete the bucket (vigil makes it again with a TTL)", l.b.cfg.Bucket)
		case st.TTL() != l.ttl:
			l.log.Warn("the lease's bucket has another TTL than cluster.lease_ttl; the bucket's counts", "bucket", l.b.cfg.Bucket, "bucket_ttl", st.TTL(), "lease_ttl", l.ttl)
			l.mu.Lock()
			l.ttl = st.TTL()
			l.mu.Unlock()
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("opening the lease's bucket in NATS; tried again", "err", err)
		}
		return
	}
	l.kv = kv
}

// try writes the lease again if this replica wrote it last, or takes it
// if nobody holds it.
func (l *Lease) try(ctx context.Context, timeout time.Duration) {
	l.mu.Lock()
	rev, wasHeld := l.rev, l.now().Before(l.until)
	l.mu.Unlock()
	sent := l.now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	var next uint64
	if rev != 0 {
		next, err = l.kv.Update(wctx, l.key, []byte(l.name), rev)
	} else {
		next, err = l.kv.Create(wctx, l.key, []byte(l.name))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.rev = next
		l.until = sent.Add(l.ttl / 2)
		if !wasHeld {
			l.term++
			l.log.Info("took the lease", "lease", l.key, "replica", l.name, "ttl", l.ttl)
		}
	case rev == 0 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)):
		// Another replica holds it.
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		// The compare-and-set failed (ErrKeyRevisionMismatch from a
		// bucket kept in several copies): what this replica wrote expired,
		// and the key was taken or given up since. Lost.
		l.rev, l.until = 0, time.Time{}
		if wasHeld {
			l.log.Warn("lost the lease", "lease", l.key, "replica", l.name)
		}
	default:
		// NATS away or slow: the lease runs out on its own at until,
		// and the key expires TTL after its last write; after that it
		// is taken afresh, by this replica or another.
		if !l.now().Before(l.until) {
			l.rev = 0
			if wasHeld {
				l.log.Warn("lost the lease: it could not be written", "lease", l.key, "replica", l.name, "err", err)
			}
		}
	}
}

// release gives the lease up, if this replica holds it, so another takes
// it at its next try rather than after TTL.
func (l *Lease) release() {
	l.mu.Lock()
	rev := l.rev
	l.rev, l.until = 0, time.Time{}
	l.mu.Unlock()
	if rev == 0 || l.kv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil {
		l.log.Debug("giving the lease up", "lease", l.key, "err", err)
		return
	}
	l.log.Info("gave the lease up", "lease", l.key, "replica", l.name)
}
