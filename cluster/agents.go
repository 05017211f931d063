package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"vigil/collector"
)

// DefaultAgentIdle is how long an agent that pushes may be silent before
// it counts as down: an agent sends its host's sample every interval.
const DefaultAgentIdle = 30 * time.Second

// Agents are the agents that push into the stream, as a replica reads
// them: each is a source upstream/<name>, as a hub's upstreams are, whose
// upstream.up says whether anything came from it within Idle — so the
// AgentDown rule tells a dead agent from a quiet one for them too. Only
// the replica that holds the alert lease samples these sources; every
// replica notes what it reads.
type Agents struct {
	Idle time.Duration // DefaultAgentIdle when zero
	Now  func() time.Time

	mu   sync.Mutex
	seen map[string]*agentSource // by agent name
}

// Saw notes an event from an agent, made at (or now, if at is later: a
// clock ahead does not keep an agent up).
func (a *Agents) Saw(name string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]*agentSource{}
	}
	s := a.seen[name]
	if s == nil {
		s = &agentSource{agents: a, name: name}
		a.seen[name] = s
	}
	if now := a.now(); at.After(now) {
		at = now
	}
	if at.After(s.last) {
		s.last = at
	}
}

// Sources are the agents seen so far, by name.
func (a *Agents) Sources() []collector.Source {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]collector.Source, 0, len(a.seen))
	for _, s := range a.seen {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y collector.Source) int { return strings.Compare(x.Name(), y.Name()) })
	return out
}

func (a *Agents) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// agentSource is upstream/<agent>.
type agentSource struct {
	agents *Agents
	name   string
	last   time.Time // guarded by agents.mu
}

func (s *agentSource) Name() string { return "upstream/" + s.name }

// Collect says whether the agent pushed within Idle, and since when it is
// silent.
func (s *agentSource) Collect(context.Context) (map[string]float64, error) {
	s.agents.mu.Lock()
	last := s.last
	s.agents.mu.Unlock()
	idle := s.agents.Idle
	if idle <= 0 {
		idle = DefaultAgentIdle
	}
	silent := s.agents.now().Sub(last)
	if silent <= idle {
		return map[string]float64{"upstream.up": 1, "upstream.lag_seconds": max(0, silent.Seconds())}, nil
	}
	return map[string]float64{"upstream.up": 0, "upstream.down_seconds": silent.Seconds()},
		fmt.Errorf("nothing pushed by agent %s since %s", s.name, last.UTC().Format(time.RFC3339))
}
