package collector

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vigil/stream"
)

// UpstreamOptions declare one agent — another vigil — that a hub follows.
type UpstreamOptions struct {
	URL    string            // the agent's base URL, http(s)://host:port
	Name   string            // how the hub names it: upstream/<Name>
	Labels map[string]string // put on its sources, their alerts and webhooks
	Token  string            // sent as Authorization: Bearer, for an agent with read tokens
	TLS    *tls.Config       // nil: the system's roots
}

// Reconnection backoff: a random wait up to the current step, which
// doubles from UpstreamMinBackoff to UpstreamMaxBackoff after each failed
// attempt and starts over once a connection delivers.
const (
	UpstreamMinBackoff = time.Second
	UpstreamMaxBackoff = 30 * time.Second
)

// upstreamTypes is what a hub asks an agent for: its samples and source
// states. The agent's alerts stay its own; the hub evaluates its rules
// over the whole fleet.
const upstreamTypes = stream.TypeSample + "," + stream.TypeSource

// An upstream follows one agent's event stream, resuming with
// Last-Event-ID, and hands what it gets to the fleet. As a Source
// ("upstream/<name>") it reports the connection: up, lag, events a second.
type upstream struct {
	opts   UpstreamOptions
	key    string // the URL: what its position is saved under
	name   string
	suffix string     // bodySuffix(name, opts.Labels)
	names  *nameCache // the agent's metric names; used by run's goroutine only
	// The stream being followed, for the fleet's idle check (Fleet.idle):
	// when something last came on it, by the fleet's clock, and what ends it.
	heard  atomic.Int64
	stream atomic.Pointer[context.CancelCauseFunc]
	fleet  *Fleet
	client *http.Client

	mu        sync.Mutex
	collect   func() // asks the scheduler for a sample now (Trigger)
	pending   bool   // one was wanted before collect was given
	connected bool
	since     time.Time // when connected became what it is
	lastErr   string
	refused   string    // why the hub drops some of what the agent sends
	refusedAt time.Time // forgotten a minute after
	seq       uint64    // the agent's id of the last event taken
	lastTS    time.Time // the agent's time of the last event taken
	events    uint64    // events taken, for the rate
	received  uint64    // events received
	taken     uint64    // events the hub took (not refused) since the last Collect
	prevCount uint64
	prevAt    time.Time
}

var (
	_ Source    = (*upstream)(nil)
	_ Labeled   = (*upstream)(nil)
	_ Scheduled = (*upstream)(nil)
	_ Triggered = (*upstream)(nil)
)

// UpstreamInterval is how often a hub samples each upstream's connection
// (upstream/<name>); a connection made or lost is sampled at once.
const UpstreamInterval = 5 * time.Second

// Schedule: an upstream is sampled every UpstreamInterval, not every
// interval: at a thousand agents, a sample a second of each connection
// was as many events as the agents' hosts.
func (u *upstream) Schedule() (interval, timeout time.Duration) { return UpstreamInterval, 0 }

// Trigger takes how to ask for a sample, as the connection is made or
// lost.
func (u *upstream) Trigger(collect func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.collect = collect
	if u.pending {
		u.pending = false
		collect()
	}
}

// changed asks for a sample of the connection now, or as soon as the
// scheduler says how. u.mu is held.
func (u *upstream) changed() {
	if u.collect == nil {
		u.pending = true
		return
	}
	u.collect()
}

func (u *upstream) Name() string { return "upstream/" + u.name }

// bodySuffix is what follows the metrics in a republished sample's body,
// up to the agent's id: the labels and the upstream's name.
func bodySuffix(name string, labels map[string]string) string {
	var b strings.Builder
	if len(labels) > 0 {
		l, _ := json.Marshal(labels)
		b.WriteString(`,"labels":`)
		b.Write(l)
	}
	n, _ := json.Marshal(name)
	b.WriteString(`,"upstream":{"name":`)
	b.Write(n)
	b.WriteString(`,"seq":`)
	return b.String()
}

// Labels are the upstream's labels.
func (u *upstream) Labels() map[string]string { return u.opts.Labels }

// Instant: an upstream's Collect reads its counters.
func (u *upstream) Instant() {}

// Collect reports the connection: upstream.up, upstream.lag_seconds (from
// the agent's time of the newest event to now), upstream.events_per_sec,
// and while it is down upstream.down_seconds and an error that says since
// when and why.
func (u *upstream) Collect(context.Context) (map[string]float64, error) {
	now := u.fleet.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	m := map[string]float64{"upstream.up": b2f(u.connected)}
	if !u.prevAt.IsZero() {
		if dt := now.Sub(u.prevAt).Seconds(); dt > 0 {
			m["upstream.events_per_sec"] = float64(u.events-u.prevCount) / dt
		}
	}
	u.prevCount, u.prevAt = u.events, now
	if now.Sub(u.refusedAt) > time.Minute {
		u.refused = ""
	}
	if u.connected {
		if !u.lastTS.IsZero() {
			m["upstream.lag_seconds"] = max(0, now.Sub(u.lastTS).Seconds())
		}
		taken := u.taken
		u.taken = 0
		if u.refused != "" {
			if taken == 0 && u.received > 0 { // connected, but nothing it sends is taken: as good as down
				m["upstream.up"] = 0
			}
			return m, errors.New(u.refused)
		}
		return m, nil
	}
	m["upstream.down_seconds"] = now.Sub(u.since).Seconds()
	why := u.lastErr
	if why == "" {
		why = "not connected yet"
	}
	return m, fmt.Errorf("unreachable since %s: %s", u.since.UTC().Format(time.RFC3339), why)
}

// run follows the agent until ctx is done, reconnecting after every
// failure with a growing, random wait.
func (u *upstream) run(ctx context.Context) {
	step := UpstreamMinBackoff
	for {
		got, err := u.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		since, why := u.down(err)
		u.fleet.unreachable(u, since, why)
		if got {
			step = UpstreamMinBackoff
		}
		wait := time.Duration(rand.Int64N(int64(step))) + time.Millisecond
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		step = min(step*2, UpstreamMaxBackoff)
	}
}

// follow opens the agent's stream after the last event taken and takes
// events until the stream ends; got says whether any came. A stream on
// which nothing comes for the fleet's IdleTimeout — not even a heartbeat,
// which an agent sends every 15 s at most — is taken for dead (a host
// gone without closing the connection) and given up: the fleet looks for
// such streams (Fleet.idle), so that an event only notes the time.
func (u *upstream) follow(ctx context.Context) (got bool, err error) {
	if err := u.fleet.dialSlot(ctx); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u.heard.Store(u.fleet.clock())
	u.stream.Store(&cancel) // for the fleet's idle check
	defer u.stream.Store(nil)
	resp, err := u.open(ctx)
	u.fleet.dialDone()
	if err != nil {
		return false, cmp.Or(context.Cause(ctx), err)
	}
	defer resp.Body.Close()
	u.up()
	r := newEventReader(resp.Body, 16<<20)
	for {
		ev, err := r.next()
		if err == io.EOF {
			return got, errors.New("the stream ended")
		}
		if err != nil {
			return got, cmp.Or(context.Cause(ctx), err)
		}
		u.heard.Store(u.fleet.clock())
		got = true
		if len(ev.Type) == 0 && len(ev.Data) == 0 { // a position: nothing to take, somewhere to resume from
			if id, err := stream.ParseID(string(ev.ID)); err == nil {
				u.moveTo(id, time.Time{}, nil)
			}
			continue
		}
		if err := u.take(eventType(ev.Type), ev.Data); err != nil {
			return got, err
		}
	}
}

// eventType is an agent's event type as a string, without allocating one
// for the types a hub takes.
func eventType(b []byte) string {
	switch string(b) {
	case stream.TypeSample:
		return stream.TypeSample
	case stream.TypeSource:
		return stream.TypeSource
	case stream.TypeReset:
		return stream.TypeReset
	}
	return string(b)
}

// open requests the stream after the saved position.
func (u *upstream) open(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.eventsURL(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if u.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.opts.Token)
	}
	u.mu.Lock()
	if u.seq > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(u.seq, 10))
	}
	u.mu.Unlock()
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, hideURL(err, req.URL.String())
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		msg := resp.Status
		switch {
		case e.Error != "":
			msg += ": " + e.Error
		case resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("HTTP request to an HTTPS server")):
			msg += ": it speaks https; give an https:// URL (and tls settings)"
		}
		return nil, fmt.Errorf("the agent answered %s", stream.Clip(msg, stream.MaxTextBytes))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("not an event stream (Content-Type %q): is this a vigil?", stream.Clip(ct, 64))
	}
	return resp, nil
}

func (u *upstream) eventsURL() string {
	return strings.TrimSuffix(u.opts.URL, "/") + "/events?type=" + url.QueryEscape(upstreamTypes)
}

// agentEvent is every field of an agent's event the hub reads.
type agentEvent struct {
	Seq        uint64            `json:"seq"`
	Type       string            `json:"type"`
	TS         time.Time         `json:"ts"`
	Source     string            `json:"source"`
	RawMetrics json.RawMessage   `json:"metrics"` // as sent: a host's is republished as it is
	Metrics    Metrics           `json:"-"`
	compact    bool              // RawMetrics has no whitespace
	checked    bool              // every metric's name is one a hub takes (metricName), seen so by the agent's nameCache
	Traffic    *Traffic          `json:"traffic"`
	Labels     map[string]string `json:"labels"` // a hub's republished sample's (a replica mirrors it)
	SourceState
	Reason string            `json:"reason"`
	Events []json.RawMessage `json:"events"`
}

// decodeAgentEvent reads an agent's event, its metrics both as sent and
// as Metrics.
func decodeAgentEvent(data []byte, names *nameCache) (agentEvent, error) {
	if ev, ok := fastSample(data, names); ok {
		ev.checked = names.checked()
		return ev, nil
	}
	var ev agentEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, err
	}
	if len(ev.RawMetrics) > 0 {
		m, compact, err := parseMetrics(ev.RawMetrics, names)
		if err != nil {
			return ev, err
		}
		ev.Metrics, ev.compact, ev.checked = m, compact, names.checked()
	}
	return ev, nil
}

// take hands one event to the fleet, once: an event at or before the last
// one taken (a replay overlapping what came before) is passed over.
func (u *upstream) take(typ string, data []byte) error {
	ev, err := decodeAgentEvent(data, u.names)
	if err != nil {
		return fmt.Errorf("a %s event that is not JSON: %v", stream.Clip(typ, 32), err)
	}
	u.mu.Lock()
	last := u.seq
	u.mu.Unlock()
	if ev.Seq <= last && typ != stream.TypeReset {
		return nil
	}
	taken := true
	switch typ {
	case stream.TypeReset:
		u.fleet.gap(u, last, ev)
	case stream.TypeSample, stream.TypeSource:
		if taken, err = u.fleet.take(u, ev); err != nil {
			return err // the hub closed: not past this event
		}
	}
	u.moveTo(ev.Seq, ev.TS, &taken)
	return nil
}

// appendSampleBody appends the body of an agent's host sample as the hub
// republishes it: the metrics as the agent sent them (compacted: valid
// JSON, one line), the upstream's labels, and where it came from. Building
// it by hand spares re-encoding forty metrics a sample, most of a hub's
// work.
func (u *upstream) appendSampleBody(b []byte, ev agentEvent) json.RawMessage {
	b = append(b, `{"metrics":`...)
	if ev.compact {
		b = append(b, ev.RawMetrics...)
	} else {
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, ev.RawMetrics); err != nil {
			return nil // cannot happen: it was decoded already
		}
		b = buf.Bytes()
	}
	b = append(b, u.suffix...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	return append(b, "}}"...)
}

// bodies are the buffers of the samples a hub republishes: Publish copies
// a body into its event and keeps nothing of it, so a kilobyte a sample is
// not left to the collector (a fifth of what a hub of 1,000 agents
// allocated).
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// moveTo records the agent's position after an event — taken says
// whether the hub took it — or after a heartbeat's position (nil).
func (u *upstream) moveTo(id uint64, ts time.Time, taken *bool) {
	u.mu.Lock()
	if id > u.seq || !ts.IsZero() {
		u.seq = id
	}
	if !ts.IsZero() {
		u.lastTS = ts
		u.events++
	}
	if taken != nil {
		u.received++
		if *taken {
			u.taken++
		}
	}
	seq := u.seq
	u.mu.Unlock()
	// Not under u.mu: the fleet's lock is taken before an upstream's
	// (own, stopLocked waiting for a Collect), never after.
	u.fleet.moved(u.key, seq)
}

func (u *upstream) up() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.connected {
		u.connected, u.since, u.lastErr = true, u.fleet.now(), ""
		u.changed()
	}
}

// down records that the stream ended, and returns since when the agent
// is unreachable and why.
func (u *upstream) down(err error) (since time.Time, why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.connected || u.since.IsZero() {
		u.connected, u.since = false, u.fleet.now()
		u.changed()
	}
	if err != nil {
		u.lastErr = stream.Clip(strings.ReplaceAll(err.Error(), "\n", "; "), stream.MaxTextBytes)
	}
	return u.since, u.lastErr
}

// refuse records why some of the agent's events are dropped.
func (u *upstream) refuse(why string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.refused != why {
		u.changed() // say so now, not at the next interval
	}
	u.refused, u.refusedAt = why, u.fleet.now()
}
