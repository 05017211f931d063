package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"vigil/collector"
)

// DefaultFleetBucket keeps what replicas share of a hub's fleet.
const DefaultFleetBucket = "VIGIL_FLEET"

// Positions are where the replica that follows the upstreams stands in
// each agent's stream, in a key-value bucket: the replica that takes the
// lease after it resumes every agent there, and what it publishes again
// meanwhile carries the agent's ids, which the stream keeps once.
type Positions struct {
	b *bucket

	mu       sync.Mutex
	status   []collector.UpstreamStatus // read at statusAt
	statusAt time.Time
}

var _ collector.Positions = (*Positions)(nil)

const positionsKey = "upstream-positions"

// NewPositions returns the positions in the bucket, opened (and made if
// there is none) when first used.
func NewPositions(js jetstream.JetStream, replicas int) *Positions {
	return &Positions{b: newBucket(js, jetstream.KeyValueConfig{Bucket: DefaultFleetBucket, Description: "vigil's fleet, shared by the replicas", Replicas: replicas})}
}

// Load reads the positions; none if none were saved.
func (p *Positions) Load() (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := p.b.open(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, positionsKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upstream positions in NATS: %w", err)
	}
	var pos map[string]uint64
	if err := json.Unmarshal(e.Value(), &pos); err != nil {
		return nil, fmt.Errorf("upstream positions in NATS: %w", err)
	}
	return pos, nil
}

// Save writes the positions.
func (p *Positions) Save(pos map[string]uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // within a stop's 5 s
	defer cancel()
	kv, err := p.b.open(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, positionsKey, b); err != nil {
		return fmt.Errorf("upstream positions in NATS: %w", err)
	}
	return nil
}

const statusKey = "upstream-status"

// sharedStatus is the upstreams' status as the follower saved it.
type sharedStatus struct {
	At        time.Time                  `json:"at"`
	Upstreams []collector.UpstreamStatus `json:"upstreams"`
}

// staleStatus: a status not saved again within this is not shown as is.
const staleStatus = 6 * time.Second

// SaveStatus writes the upstreams' status as the replica that follows
// them sees it, for the others' fleet view and /api/v1/upstreams.
func (p *Positions) SaveStatus(st []collector.UpstreamStatus) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := p.b.open(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(sharedStatus{At: time.Now(), Upstreams: st})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, statusKey, b); err != nil {
		return fmt.Errorf("upstream status in NATS: %w", err)
	}
	return nil
}

// Status is the upstreams' status the following replica saved last; nil
// if none, or NATS cannot say. It is read at most once a second.
func (p *Positions) Status() []collector.UpstreamStatus {
	p.mu.Lock()
	if time.Since(p.statusAt) < time.Second {
		st := p.status
		p.mu.Unlock()
		return st
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var shared sharedStatus
	if kv, err := p.b.open(ctx); err == nil {
		if e, err := kv.Get(ctx, statusKey); err == nil {
			json.Unmarshal(e.Value(), &shared)
		}
	}
	st := shared.Upstreams
	if age := time.Since(shared.At); len(st) > 0 && age > staleStatus {
		// The replica that followed them stopped sharing (it died, or the
		// lease is moving): what it said is not known to hold any more.
		for i := range st {
			st[i].Connected = false
			st[i].Error = fmt.Sprintf("the replica that follows the upstreams has said nothing for %s (the lease is moving)", age.Round(time.Second))
		}
	}
	p.mu.Lock()
	p.status, p.statusAt = st, time.Now()
	p.mu.Unlock()
	return st
}
