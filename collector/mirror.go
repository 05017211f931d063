package collector

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"vigil/stream"
)

// A Mirror puts the samples other replicas published to a shared log
// (cluster.nats) into this replica's Store, so that its rings, pages,
// charts and history hold every source of the cluster, not only those it
// samples itself. A replica's own samples are in its Store already.
type Mirror struct {
	Store *Store
	// Own are the sources this replica samples itself: another's sample
	// of the same name would interleave with its own in one series, so
	// it is refused (ErrOwnSource), and the name should be changed on
	// one of them (host.name, cluster.name).
	Own map[string]bool
	// Follows, when set, says a source comes to this replica from its
	// own upstreams (Fleet.Follows), or from the services it samples as
	// the lease holder: refused from another replica too.
	Follows func(source string) bool

	mu    sync.Mutex
	names map[string]*nameCache // by source: its last sample's names
}

// ErrOwnSource: another replica publishes a source this one samples.
var ErrOwnSource = errors.New("another replica publishes a source of this replica's own name; name one of them otherwise (host.name, or cluster.name)")

// ErrFollowedSource: another replica publishes a source this one samples
// or follows now as the lease holder (a takeover's overlap): not a clash.
var ErrFollowedSource = errors.New("a source this replica samples or follows itself")

// Take puts a sample event into the Store; other events it leaves.
// stored is when the shared log stored it (zero: now): the source was
// heard from then, not when this replica read it, which after a restart
// or a lost connection is a backlog's read, maybe minutes later — the
// rules of a replica that then takes the alert lease must not take a
// source silent since for a live one (Store.AppendArrived).
func (m *Mirror) Take(ev *stream.Event, stored time.Time) error {
	if ev.Type != stream.TypeSample || ev.Source == "" {
		return nil
	}
	if m.Own[ev.Source] {
		return ErrOwnSource
	}
	if m.Follows != nil && m.Follows(ev.Source) {
		return ErrFollowedSource
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names == nil {
		m.names = map[string]*nameCache{}
	}
	names := m.names[ev.Source]
	if names == nil {
		names = &nameCache{}
		m.names[ev.Source] = names
	}
	aev, err := decodeAgentEvent(ev.JSON(), names)
	if err != nil {
		return fmt.Errorf("mirror %s: %w", ev.Source, err)
	}
	if aev.RawMetrics == nil {
		return nil
	}
	m.Store.AppendArrived(Sample{Source: ev.Source, Time: ev.Time, Metrics: aev.Metrics, Labels: aev.Labels}, stored)
	return nil
}
