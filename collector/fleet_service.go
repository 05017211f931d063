package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"vigil/stream"
)

// A fleetService is one service as the agents that run it see it, merged:
// the source service/<name> on a hub. Each agent's sample brings the
// counts of its last interval (Traffic); over the window the hub adds the
// requests and errors and merges the latency buckets of every host, so
// the fleet's p99 is the p99 of all the requests — which averaging the
// agents' p99s is not.
//
// Besides the merged http.* metrics it reports hosts.up and hosts.total
// (hosts whose sample is fresh and that have an instance up, of those
// that run the service), instances.up and instances.total added up, and
// per host, labelled {host=<upstream>}: the rate, error percentage, p99
// and instances up.
type fleetService struct {
	name   string
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostTraffic // by upstream name
}

var _ Source = (*fleetService)(nil)

type hostTraffic struct {
	window         []trafficAt
	seen           time.Time // when the last sample came (the hub's clock)
	every          float64   // the seconds the last sample covered: the agent's interval
	instancesUp    float64
	instancesTotal float64
	state, err     string // the agent's source state of the service
}

type trafficAt struct {
	at                        time.Time
	requests, errors, seconds float64
	latency                   Histogram
}

func (s *fleetService) Name() string { return s.name }

// take records one of an agent's events of the service.
func (s *fleetService) take(host string, ev agentEvent, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[host]
	if h == nil {
		h = &hostTraffic{}
		s.hosts[host] = h
	}
	switch ev.Type {
	case stream.TypeSource:
		h.state, h.err = ev.State, stream.Clip(ev.Error, stream.MaxTextBytes)
		return
	case stream.TypeSample:
	default:
		return
	}
	h.seen = now
	h.instancesUp, h.instancesTotal = ev.Metrics.Value("instances.up"), ev.Metrics.Value("instances.total")
	t := ev.Traffic
	if t == nil || !(t.Seconds > 0) || !(t.Requests >= 0) || !(t.Errors >= 0) || math.IsInf(t.Requests+t.Errors+t.Seconds, 0) {
		return
	}
	lat, err := HistogramOf(t.Latency)
	if err != nil {
		lat = nil // the counts still count
	}
	h.every = t.Seconds
	h.window = append(h.window, trafficAt{at: now, requests: t.Requests, errors: min(t.Errors, t.Requests), seconds: t.Seconds, latency: lat})
}

// forget drops a host the hub no longer follows; empty says no host is
// left.
func (s *fleetService) forget(host string) (empty bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hosts, host)
	return len(s.hosts) == 0
}

// fresh says whether a host's last sample is recent: within three of its
// intervals, and three seconds at least.
func (h *hostTraffic) fresh(now time.Time) bool {
	return now.Sub(h.seen).Seconds() <= max(3, 3*h.every)
}

// Instant: a merged service's Collect merges what its hosts sent.
func (s *fleetService) Instant() {}

// Collect merges the hosts' traffic over the window.
func (s *fleetService) Collect(context.Context) (map[string]float64, error) {
	now := s.now()
	cutoff := now.Add(-s.window)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]float64, 16+4*len(s.hosts))
	merged := Histogram{}
	var rate, reqs, errs, up, instUp, instTotal float64
	var problems []error
	names := make([]string, 0, len(s.hosts))
	for name := range s.hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h := s.hosts[name]
		h.window = slices.DeleteFunc(h.window, func(x trafficAt) bool { return !x.at.After(cutoff) })
		label := "{host=" + name + "}"
		var r, e, d float64
		hist := Histogram{}
		for _, x := range h.window {
			r, e, d = r+x.requests, e+x.errors, d+x.seconds
			hist.Add(x.latency)
		}
		fresh := h.fresh(now)
		isUp := fresh && h.instancesUp > 0
		m["up"+label] = b2f(isUp)
		if fresh {
			m["instances.up"+label] = h.instancesUp
			instUp += h.instancesUp
		}
		instTotal += h.instancesTotal
		if isUp {
			up++
		}
		switch {
		case !fresh:
			problems = append(problems, fmt.Errorf("host %s: no sample since %s", name, h.seen.UTC().Format(time.RFC3339)))
		case h.state == StateFailed:
			problems = append(problems, fmt.Errorf("host %s: %s", name, h.err))
		}
		if d <= 0 {
			continue
		}
		m["http.requests_per_sec"+label] = r / d
		if r > 0 {
			m["http.error_percent"+label] = 100 * e / r
		}
		if hist.Total() > 0 {
			m["http.latency_p99_seconds"+label] = hist.Quantile(0.99)
		}
		rate, reqs, errs = rate+r/d, reqs+r, errs+e
		merged.Add(hist)
	}
	m["hosts.total"], m["hosts.up"] = float64(len(s.hosts)), up
	m["instances.total"], m["instances.up"] = instTotal, instUp
	m["http.requests_per_sec"] = rate
	m["http.error_percent"] = 0
	if reqs > 0 {
		m["http.error_percent"] = 100 * errs / reqs
	}
	if merged.Total() > 0 {
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99_5", 0.995}, {"p99_9", 0.999}} {
			m["http.latency_"+q.name+"_seconds"] = merged.Quantile(q.q)
		}
		m["http.latency_max_seconds"] = merged.Max()
	}
	return m, errors.Join(problems...)
}
