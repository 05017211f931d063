package collector

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/stream"
)

// DefaultUpstreamIdle is how long an agent's stream may be silent before
// the hub takes it for dead: three of the longest heartbeat an agent may
// have (stream.heartbeat is 15 s at most).
const DefaultUpstreamIdle = 45 * time.Second

// FleetHub is what a Fleet needs of the hub: to publish, and to forget
// the sources of an agent it follows no more.
type FleetHub interface {
	Publisher
	Forget(keys ...string)
}

var _ FleetHub = (*stream.Hub)(nil)

// DefaultMaxDials is how many agents a hub connects to at once: after a
// hub restart, hundreds of agents are reached in turn, not all in the
// same instant.
const DefaultMaxDials = 16

// A Fleet is a hub's side of its agents: it follows every upstream's
// event stream and takes in what comes. An agent's host (and any other
// source but its services) appears under its own name with the
// upstream's labels, each sample and source event republished on this
// hub's stream and kept in the Store. Its services are merged with the
// same services of the other agents into one source each, service/<name>:
// requests and errors added, latency buckets merged, so percentiles are
// of the whole fleet's traffic, never averages of percentiles.
//
// Every upstream is also a source, upstream/<name>, that tells whether the
// hub can reach the agent and since when (see upstream.Collect). Where
// each upstream stands in its agent's stream is saved in Positions, so a
// hub that restarts resumes each agent after the last event it took.
type Fleet struct {
	Store     *Store
	Hub       FleetHub
	Scheduler *Scheduler // samples upstream/* and the merged services
	Upstreams []UpstreamOptions
	// File, when set, is a file of more upstreams in Prometheus' file_sd
	// format, read again when it changes (see FileTargets).
	File         string
	FileDefaults UpstreamOptions // token, TLS and labels of the file's upstreams
	FileInterval time.Duration   // how often the file is looked at; 5s when zero
	Positions    Positions       // nil: positions are not saved
	// Shared says the Fleet is a replica's, run by the lease holder: its
	// positions are the replicas' (a failed Load ends Run, to be run
	// again, rather than follow from now and save over them), and a
	// sample no newer than the Store's newest of its source is not taken
	// again (the holder resumes where the last stood, and had mirrored
	// what that one took).
	Shared      bool
	Window      time.Duration // of the merged services; DefaultServiceWindow when zero
	MaxDials    int           // DefaultMaxDials when zero
	IdleTimeout time.Duration // a stream silent this long is dead; DefaultUpstreamIdle when zero
	Now         func() time.Time
	Logger      *slog.Logger
	Metrics     *metrics.Set

	once     sync.Once
	start    time.Time // of clock
	dials    chan struct{}
	mu       sync.Mutex
	ups      map[string]*runningUpstream // by URL
	owners   map[string]string           // source name -> URL of the upstream that sends it
	services map[string]*fleetService
	saved    map[string]uint64 // positions loaded at the start
	posDirty bool
	pos      map[string]uint64
	clients  map[*tls.Config]*http.Client // upstreamClient's, by TLS settings
	ctx      context.Context
	wg       sync.WaitGroup

	fileErrors *metrics.Counter
	badFile    string // the upstreams file's content and error when it was last bad
	dropped    *metrics.Counter
}

type runningUpstream struct {
	u      *upstream
	cancel context.CancelFunc
	hosts  map[string]bool // the sources it sent, for removal
	// cut are its hosts marked failed because the agent is unreachable,
	// each up again with its next sample.
	cut map[string]bool
}

func (f *Fleet) init() {
	f.once.Do(func() {
		f.Window = cmp.Or(max(f.Window, 0), DefaultServiceWindow)
		f.MaxDials = cmp.Or(max(f.MaxDials, 0), DefaultMaxDials)
		f.FileInterval = cmp.Or(max(f.FileInterval, 0), 5*time.Second)
		f.IdleTimeout = cmp.Or(max(f.IdleTimeout, 0), DefaultUpstreamIdle)
		if f.Now == nil {
			f.Now = time.Now
		}
		f.start = time.Now()
		if f.Logger == nil {
			f.Logger = slog.New(slog.DiscardHandler)
		}
		if f.Metrics == nil {
			f.Metrics = metrics.NewSet()
		}
		f.dials = make(chan struct{}, f.MaxDials)
		f.ups = map[string]*runningUpstream{}
		f.owners = map[string]string{}
		f.services = map[string]*fleetService{}
		f.pos = map[string]uint64{}
		f.fileErrors = f.Metrics.GetOrCreateCounter(`vigil_upstreams_file_errors_total`)
		f.dropped = f.Metrics.GetOrCreateCounter(`vigil_upstream_events_dropped_total`)
	})
}

func (f *Fleet) now() time.Time { return f.Now() }

// clock is the time since the fleet started, on the monotonic clock: what
// the idle check goes by.
func (f *Fleet) clock() int64 { return int64(time.Since(f.start)) }

// idle ends the streams on which nothing came for IdleTimeout. One look
// at every stream a second, rather than a timer an upstream reset at every
// event: at a thousand agents the resets alone were 1.4% of a hub's CPU
// profile.
func (f *Fleet) idle() {
	now := f.clock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.ups {
		if end := r.u.stream.Load(); end != nil && now-r.u.heard.Load() >= int64(f.IdleTimeout) {
			(*end)(fmt.Errorf("nothing from the agent for %s, not even a heartbeat", f.IdleTimeout))
		}
	}
}

// Positions keep where a hub stands in each agent's stream: a
// PositionFile, or a replica's bucket in NATS (cluster.Positions) that the
// next replica to follow the agents reads.
type Positions interface {
	Load() (map[string]uint64, error)
	Save(pos map[string]uint64) error
}

// Run follows the upstreams, and those of the file as it changes, until
// ctx is done; then it saves where each stands and lets every upstream
// go (without saying its sources are gone: they are followed elsewhere, or
// again when Run runs again).
func (f *Fleet) Run(ctx context.Context) error {
	f.init()
	var saved map[string]uint64
	var err error
	if f.Positions != nil {
		saved, err = f.Positions.Load()
	}
	switch {
	case err != nil && f.Shared:
		return fmt.Errorf("upstream positions not read: %w", err)
	case err != nil:
		f.Logger.Warn("upstream positions not read; every agent is followed from now", "err", err)
	}
	f.mu.Lock()
	f.ctx, f.saved = ctx, saved
	f.mu.Unlock()
	f.apply(f.Upstreams, nil)
	var lastFile []byte
	if f.File != "" {
		lastFile = f.readFile(nil)
	}
	t := time.NewTicker(f.FileInterval)
	defer t.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	for {
		select {
		case <-ctx.Done():
			f.mu.Lock()
			f.ctx = nil
			f.mu.Unlock()
			f.wg.Wait()
			f.savePositions()
			f.letGo()
			return nil
		case <-t.C:
			if f.File != "" {
				lastFile = f.readFile(lastFile)
			}
		case <-second.C:
			f.savePositions()
			f.idle()
		}
	}
}

// readFile reads the file of upstreams and, if it changed and is good,
// follows what it lists now. A bad file keeps the upstreams as they were.
func (f *Fleet) readFile(last []byte) []byte {
	b, err := os.ReadFile(f.File)
	if err == nil && string(b) == string(last) {
		return last
	}
	var targets []UpstreamOptions
	if err == nil {
		targets, err = FileTargets(b, f.FileDefaults)
	}
	if err != nil {
		// Counted and logged once for each bad content (or failing read),
		// not each time it is looked at.
		if bad := string(b) + "\x00" + err.Error(); bad != f.badFile {
			f.badFile = bad
			f.fileErrors.Inc()
			f.Logger.Error("upstreams file: keeping the upstreams as they were", "file", f.File, "err", err)
		}
		return last
	}
	f.badFile = ""
	f.apply(f.Upstreams, targets)
	return b
}

// apply follows every upstream listed and stops following the others.
func (f *Fleet) apply(static, fromFile []UpstreamOptions) {
	want, names := f.distinct(append(slices.Clone(static), fromFile...))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx == nil {
		return
	}
	keep := map[string]bool{}
	for i, o := range want {
		keep[o.URL] = true
		if r := f.ups[o.URL]; r != nil && r.u.name == names[i] && equalLabels(r.u.opts.Labels, o.Labels) {
			continue
		}
		f.stopLocked(o.URL)
		f.startLocked(o, names[i])
	}
	for key := range f.ups {
		if !keep[key] {
			f.stopLocked(key)
		}
	}
}

// distinct returns the upstreams with their names, leaving out, and
// logging, one whose URL or name an upstream before it has: the config's
// come before the file's, so an entry of the file does not take the place
// of one of the config (and its name, labels, token and TLS).
func (f *Fleet) distinct(ups []UpstreamOptions) ([]UpstreamOptions, []string) {
	names := UpstreamNames(ups)
	byURL, byName := map[string]string{}, map[string]string{}
	var keep []UpstreamOptions
	var kept []string
	for i, o := range ups {
		if first, ok := byURL[o.URL]; ok {
			f.Logger.Warn("an upstream listed twice is followed once, as first listed (upstreams before upstreams_file)", "url", RedactURL(o.URL), "as", first)
			continue
		}
		if other, ok := byName[names[i]]; ok {
			f.Logger.Error("two upstreams have one name: the second is not followed; give one of them another name", "name", names[i], "first", other, "second", RedactURL(o.URL))
			continue
		}
		byURL[o.URL], byName[names[i]] = names[i], RedactURL(o.URL)
		keep, kept = append(keep, o), append(kept, names[i])
	}
	return keep, kept
}

func (f *Fleet) startLocked(o UpstreamOptions, name string) {
	u := &upstream{opts: o, key: o.URL, name: name, suffix: bodySuffix(name, o.Labels), names: &nameCache{}, fleet: f, client: f.clientLocked(o), seq: f.saved[o.URL]}
	if seq, ok := f.saved[o.URL]; ok {
		f.pos[o.URL] = seq // saved again as it was, even if the agent sends nothing this run
	}
	u.since = f.now()
	ctx, cancel := context.WithCancel(f.ctx)
	f.ups[o.URL] = &runningUpstream{u: u, cancel: cancel, hosts: map[string]bool{}, cut: map[string]bool{}}
	f.Scheduler.Add(u)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		u.run(ctx)
	}()
	f.Logger.Info("following upstream", "upstream", name, "url", RedactURL(o.URL))
}

// stopLocked stops following an upstream and forgets the sources it sent.
func (f *Fleet) stopLocked(key string) {
	r := f.ups[key]
	if r == nil {
		return
	}
	r.cancel()
	delete(f.ups, key)
	f.Scheduler.Remove(r.u.Name())
	for _, src := range append(slices.Sorted(maps.Keys(r.hosts)), r.u.Name()) {
		delete(f.owners, src)
		f.goneLocked(src, r.u.name)
	}
	for name, s := range f.services {
		if s.forget(r.u.name) { // no host runs it any more
			delete(f.services, name)
			f.Scheduler.Remove(s.name)
			f.goneLocked(s.name, r.u.name)
		}
	}
	delete(f.pos, key)
	f.Logger.Info("no longer following upstream", "upstream", r.u.name)
}

// letGo stops sampling every upstream and merged service and forgets
// them, as Run ends: a Run after starts afresh from the saved positions.
// Their sources are not said to be gone.
func (f *Fleet) letGo() {
	f.mu.Lock()
	var names []string
	for _, r := range f.ups {
		r.cancel()
		names = append(names, r.u.Name())
	}
	for _, s := range f.services {
		names = append(names, s.name)
	}
	clear(f.ups)
	clear(f.owners)
	clear(f.services)
	clear(f.pos)
	f.posDirty = false
	f.mu.Unlock()
	for _, n := range names {
		f.Scheduler.Remove(n)
	}
}

// goneLocked forgets a source the hub has no more, and says so.
func (f *Fleet) goneLocked(src, upstream string) {
	f.Store.Remove(src)
	f.Hub.Forget(stream.TypeSample+"/"+src, stream.TypeSource+"/"+src)
	_, err := f.Hub.Publish(stream.Message{Type: stream.TypeSource, Source: src, Key: stream.TypeSource + "/" + src,
		Body: SourceState{State: StateGone, Upstream: &UpstreamRef{Name: upstream}}})
	if err != nil && !errors.Is(err, stream.ErrClosed) {
		f.Logger.Error("publish a source gone", "source", src, "err", err)
	}
}

// dialSlot waits for a turn to connect; dialDone gives it back.
func (f *Fleet) dialSlot(ctx context.Context) error {
	select {
	case f.dials <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Fleet) dialDone() { <-f.dials }

// Bounds on what an agent may send, so that no agent — broken or hostile
// — can fill the hub's memory or put unreadable text on its page.
const (
	MaxUpstreamMetrics = 10_000 // per sample, as a scrape's max_series
	maxNameBytes       = 256    // a source's or a metric's name
)

// acceptable says why an agent's event is refused, or "" when it is not.
func acceptable(ev agentEvent) string {
	if len(ev.Source) > maxNameBytes || stream.Readable(ev.Source) != ev.Source || !strings.Contains(ev.Source, "/") {
		return fmt.Sprintf("a source named %q: a name is kind/name, readable, at most %d bytes", stream.Clip(stream.Readable(ev.Source), 64), maxNameBytes)
	}
	if ev.Metrics.Len() > MaxUpstreamMetrics {
		return fmt.Sprintf("%s: %d metrics in a sample, more than %d", ev.Source, ev.Metrics.Len(), MaxUpstreamMetrics)
	}
	if ev.checked {
		return ""
	}
	for _, name := range ev.Metrics.Names().List() {
		if !metricName(name) {
			return fmt.Sprintf("%s: a metric named %q: at most %d bytes of readable text", ev.Source, stream.Clip(stream.Readable(name), 64), maxNameBytes)
		}
	}
	return ""
}

// metricName says whether a hub takes name for a metric's.
func metricName(name string) bool {
	return len(name) <= maxNameBytes && stream.Readable(name) == name
}

// take takes one sample or source event of an agent; one it cannot
// take is dropped, counted, and said in the upstream's error. err is
// stream.ErrClosed when the hub closed before the sample was published:
// the upstream stands where it stood, and the next run takes it again.
func (f *Fleet) take(u *upstream, ev agentEvent) (taken bool, err error) {
	if why := acceptable(ev); why != "" {
		f.dropped.Inc()
		u.refuse("dropped " + why)
		return false, nil
	}
	if svc, ok := strings.CutPrefix(ev.Source, "service/"); ok {
		if f.current(u) {
			f.service(svc).take(u.name, ev, f.now())
		}
		return true, nil
	}
	owned, cut := f.own(u, ev.Source)
	if !owned {
		return false, nil
	}
	switch ev.Type {
	case stream.TypeSample:
		if ev.RawMetrics == nil {
			return false, nil
		}
		if f.Shared {
			if last, ok := f.Store.Latest(ev.Source); ok && !ev.TS.After(last.Time) {
				return true, nil // taken before, by the replica that held the lease
			}
		}
		if cut {
			f.setState(u, ev.Source, SourceState{State: StateUp}, f.now())
		}
		f.Store.Append(Sample{Source: ev.Source, Time: ev.TS, Metrics: ev.Metrics, Labels: u.opts.Labels})
		// The ID is the agent's event: replicas that follow one agent, or
		// one that resumes where another stood, put it on a shared
		// stream once.
		body := bodies.Get().(*[]byte)
		*body = u.appendSampleBody((*body)[:0], ev)
		_, err = f.Hub.Publish(stream.Message{Type: stream.TypeSample, Source: ev.Source, Time: ev.TS,
			Key: stream.TypeSample + "/" + ev.Source, Body: json.RawMessage(*body), ID: u.name + "-" + strconv.FormatUint(ev.Seq, 10)})
		bodies.Put(body)
	case stream.TypeSource: // the agent's word on its host, cut off or not
		f.setState(u, ev.Source, SourceState{State: ev.State, Error: stream.Clip(ev.Error, maxErrorBytes), Partial: ev.Partial,
			Upstream: &UpstreamRef{Name: u.name, Seq: ev.Seq}}, ev.TS)
	}
	if errors.Is(err, stream.ErrClosed) {
		return false, err
	}
	if err != nil {
		f.Logger.Error("republish an agent's event", "upstream", u.name, "source", ev.Source, "err", err)
	}
	return true, nil
}

// unreachable marks the hosts of an agent the hub lost as failed, saying
// since when and why, so that no host page shows an agent's host as up
// with values that no longer move. A host's next sample marks it up again
// (own says it was cut, take marks it).
func (f *Fleet) unreachable(u *upstream, since time.Time, why string) {
	f.mu.Lock()
	r := f.ups[u.key]
	var hosts []string
	if r != nil && r.u == u {
		for h := range r.hosts {
			if !r.cut[h] {
				r.cut[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	f.mu.Unlock()
	slices.Sort(hosts)
	msg := stream.Clip(fmt.Sprintf("its agent (upstream %s) is unreachable since %s: %s", u.name, since.UTC().Format(time.RFC3339), why), maxErrorBytes)
	for _, h := range hosts {
		f.setState(u, h, SourceState{State: StateFailed, Error: msg}, since)
	}
}

// setState records and publishes a host's state as the hub sees it.
func (f *Fleet) setState(u *upstream, host string, st SourceState, at time.Time) {
	if st.Upstream == nil {
		st.Upstream = &UpstreamRef{Name: u.name}
	}
	f.Store.SetStatus(host, st.State, st.Error, at)
	_, err := f.Hub.Publish(stream.Message{Type: stream.TypeSource, Source: host, Time: at, Key: stream.TypeSource + "/" + host, Body: st})
	if err != nil && !errors.Is(err, stream.ErrClosed) {
		f.Logger.Error("publish a host's state", "upstream", u.name, "source", host, "err", err)
	}
}

// current says whether the hub still follows the upstream.
func (f *Fleet) current(u *upstream) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.ups[u.key]
	return r != nil && r.u == u
}

// own says whether the upstream may send a source: the first upstream to
// send a name has it; another agent with the same name is refused (its
// events are dropped, counted and logged) until one of them is renamed.
// cut says the source was marked failed with its agent (unreachable),
// which it is no longer.
// Follows says whether a source comes to this hub from one of its
// upstreams (an agent's host, an upstream/<name>, a merged service).
func (f *Fleet) Follows(source string) bool {
	f.init()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.owners[source]; ok {
		return true
	}
	if name, ok := strings.CutPrefix(source, "service/"); ok {
		_, ok = f.services[name]
		return ok
	}
	if name, ok := strings.CutPrefix(source, "upstream/"); ok {
		for _, r := range f.ups {
			if r.u.name == name {
				return true
			}
		}
	}
	return false
}

func (f *Fleet) own(u *upstream, source string) (owned, cut bool) {
	if source == "" || strings.HasPrefix(source, "upstream/") {
		f.dropped.Inc()
		return false, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.ups[u.key]
	if r == nil || r.u != u {
		return false, false // stopped meanwhile
	}
	owner, ok := f.owners[source]
	switch {
	case !ok && f.Scheduler.Has(source):
		f.dropped.Inc()
		u.refuse(fmt.Sprintf("%s is this hub's own: give the agent, or the hub, another host.name", source))
		return false, false
	case !ok:
		f.owners[source] = u.key
		r.hosts[source] = true
		return true, false
	case owner == u.key:
		cut = r.cut[source]
		delete(r.cut, source) // its agent is back: what it sends next says how it is
		return true, cut
	}
	f.dropped.Inc()
	if other := f.ups[owner]; other != nil {
		u.refuse(fmt.Sprintf("%s comes from upstream %s already: give one of the two another host.name", source, other.u.name))
	}
	return false, false
}

// gap marks, on the hub's stream, that an agent could not say what came
// after the hub's position: the events in between are lost to the hub.
// The agent's snapshot's source states are taken in.
func (f *Fleet) gap(u *upstream, after uint64, reset agentEvent) {
	_, err := f.Hub.Publish(stream.Message{Type: stream.TypeSource, Source: u.Name(), Time: reset.TS,
		Body: SourceState{State: StateUp, Gap: &Gap{Reason: reset.Reason, After: after, Resumed: reset.Seq},
			Upstream: &UpstreamRef{Name: u.name, Seq: reset.Seq}}})
	if err != nil && !errors.Is(err, stream.ErrClosed) {
		f.Logger.Error("publish a gap", "upstream", u.name, "err", err)
	}
	f.Logger.Warn("gap in an upstream's events", "upstream", u.name, "after", after, "reason", reset.Reason)
	for _, raw := range reset.Events {
		var ev agentEvent
		if json.Unmarshal(raw, &ev) == nil && ev.Type == stream.TypeSource {
			f.take(u, ev) // a state: the gap's snapshot, taken again with the next reset
		}
	}
}

// moved records an upstream's position, saved within a second.
func (f *Fleet) moved(key string, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ups[key]; ok && f.pos[key] != seq {
		f.pos[key], f.posDirty = seq, true
	}
}

func (f *Fleet) savePositions() {
	f.mu.Lock()
	if !f.posDirty {
		f.mu.Unlock()
		return
	}
	pos := make(map[string]uint64, len(f.pos))
	for k, v := range f.pos {
		pos[k] = v
	}
	f.posDirty = false
	f.mu.Unlock()
	if f.Positions == nil {
		return
	}
	if err := f.Positions.Save(pos); err != nil {
		f.Logger.Warn("save upstream positions", "err", err)
		f.mu.Lock()
		f.posDirty = true
		f.mu.Unlock()
	}
}

// service returns the merged source of a service, starting it the first
// time an agent sends it.
func (f *Fleet) service(name string) *fleetService {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.services[name]
	if s == nil {
		s = &fleetService{name: "service/" + name, window: f.Window, hosts: map[string]*hostTraffic{}, now: f.Now}
		f.services[name] = s
		f.Scheduler.Add(s)
	}
	return s
}

// A Gap says that a hub lost some of an agent's events: the agent could
// not replay what came after After (Reason says why); its stream resumed
// at Resumed.
type Gap struct {
	Reason  string `json:"reason"`
	After   uint64 `json:"after"`
	Resumed uint64 `json:"resumed"`
}

// UpstreamNames names upstreams as the hub shows them: the configured
// name, or the URL's host and port (and path, if any), as Prometheus
// names an instance. A name never changes as other upstreams come and go.
func UpstreamNames(ups []UpstreamOptions) []string {
	names := make([]string, len(ups))
	for i, o := range ups {
		names[i] = o.Name
		if names[i] != "" {
			continue
		}
		u, err := url.Parse(o.URL)
		if err != nil || u.Host == "" {
			names[i] = RedactURL(o.URL)
			continue
		}
		names[i] = u.Host + strings.TrimSuffix(u.EscapedPath(), "/")
	}
	return names
}

// clientLocked is the client of an upstream: one for every upstream with
// the same TLS settings (the upstreams file's share their defaults'), so a
// hub of a thousand agents has a few transports, not a thousand with
// their HTTP/2 set-up each. A transport pools connections by address,
// so upstreams share nothing through it but the settings.
func (f *Fleet) clientLocked(o UpstreamOptions) *http.Client {
	if c := f.clients[o.TLS]; c != nil {
		return c
	}
	if f.clients == nil || len(f.clients) >= maxClients { // settings given anew at each reload
		f.clients = map[*tls.Config]*http.Client{}
	}
	c := upstreamClient(o)
	f.clients[o.TLS] = c
	return c
}

// maxClients bounds the clients a Fleet keeps for upstreams to come.
const maxClients = 64

// upstreamClient is a client for upstreams: no overall timeout (the
// stream is long), but one for connecting and for the answer's headers,
// and a small write buffer (a hub writes one GET a connection).
func upstreamClient(o UpstreamOptions) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = o.TLS
	tr.ResponseHeaderTimeout = 10 * time.Second
	tr.MaxIdleConnsPerHost = 1
	tr.WriteBufferSize = 1 << 10
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("an upstream's /events does not redirect")
	}}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// UpstreamStatus is what a hub knows of one of its agents.
type UpstreamStatus struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"` // redacted
	Labels    map[string]string `json:"labels,omitempty"`
	Connected bool              `json:"connected"`
	Since     time.Time         `json:"since"`           // when it connected, or became unreachable
	Error     string            `json:"error,omitempty"` // why it is unreachable, or what the hub refuses
	Position  uint64            `json:"position"`        // the agent's id of the last event taken
	Hosts     []string          `json:"hosts"`           // the sources it sends but its services
}

// Status lists the upstreams followed, by name.
func (f *Fleet) Status() []UpstreamStatus {
	f.init()
	f.mu.Lock()
	ups := make([]*runningUpstream, 0, len(f.ups))
	for _, r := range f.ups {
		ups = append(ups, r)
	}
	hosts := make([][]string, len(ups))
	for i, r := range ups {
		if hosts[i] = slices.Sorted(maps.Keys(r.hosts)); hosts[i] == nil {
			hosts[i] = []string{} // [] in JSON, not null
		}
	}
	f.mu.Unlock()
	out := make([]UpstreamStatus, len(ups))
	for i, r := range ups {
		u := r.u
		u.mu.Lock()
		out[i] = UpstreamStatus{Name: u.name, URL: RedactURL(u.opts.URL), Labels: u.opts.Labels, Connected: u.connected,
			Since: u.since, Error: cmp.Or(u.refused, u.lastErr), Position: u.seq, Hosts: hosts[i]}
		if out[i].Connected && u.refused == "" {
			out[i].Error = ""
		}
		u.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b UpstreamStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
