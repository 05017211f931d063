package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"vigil/alerts"
	"vigil/cluster"
	"vigil/collector"
	"vigil/dashboard"
	"vigil/history"
	"vigil/stream"
)

// shutdownTimeout bounds a graceful stop, so SIGTERM ends vigil within 5 s.
const shutdownTimeout = 4 * time.Second

// app is a vigil built from a plan: every part, wired in the order the
// data flows, and everything that must be closed.
//
//	collector.Scheduler (sources) -> collector.Store (ring) -> history.DB (tiers) or history.Victoria, and stream.Hub
//	stream.Hub -> dashboard.Server (SSE, NDJSON, long polling, WebSocket)
//	with cluster.nats: stream.Hub -> cluster.Log (JetStream) -> stream.Hub of every replica, and collector.Mirror -> collector.Store
//	alerts.Evaluator (reads the ring) -> alerts.DB (states, outbox) -> alerts.Dispatcher -> alerts.Receivers
//	with cluster.nats: alerts.Evaluator (on the lease holder) -> cluster.Webhooks (work queue) and cluster.AlertStates
//	  (key-value) -> alerts.DB (journal); cluster.Webhooks on every replica -> alerts.Receivers (the receivers API)
type app struct {
	plan     plan
	env      env
	log      *slog.Logger
	closers  []func() error
	ids      stream.IDFile
	journal  *stream.Journal
	hub      *stream.Hub
	store    *collector.Store
	history  keeper           // nil with history off
	demo     *collector.Demo  // nil without --demo
	fleet    *collector.Fleet // nil unless this vigil is a hub
	shared   *cluster.Log     // nil unless this vigil is a replica on NATS
	js       jetstream.JetStream
	lease    *cluster.Lease // the alert lease, on a replica
	states   *cluster.AlertStates
	mirror   *collector.Mirror
	clashes  sync.Map // sources another replica publishes under this one's names, told once
	sampling sync.Map // the sources holderWork samples now, as the lease holder
	// positions are a hub replica's in NATS, with the upstreams' status
	// the follower saves; following says this replica follows them now.
	positions *cluster.Positions
	following atomic.Bool
	// leaderSources are a replica's services: sampled while it holds the
	// alert lease, so that one replica at a time probes them.
	leaderSources []collector.Source
	agents        cluster.Agents // that push into NATS, as read from the stream
	sched         *collector.Scheduler
	db            *alerts.DB
	eval          *alerts.Evaluator
	dispatch      *alerts.Dispatcher
	receivers     *alerts.Receivers
	webhooks      *cluster.Webhooks      // a replica's outbox, shared in NATS
	push          *alerts.PushKeys       // the VAPID keys web pushes are signed with
	sessionSecret atomic.Pointer[[]byte] // what sign-in sessions are signed with; nil until read
	web           *dashboard.Server
	set           *metrics.Set // vigil's own metrics
	srv           *http.Server
	ln            net.Listener
}

// newApp builds every part; nothing runs until run. On an error what was
// opened is closed.
func newApp(p plan, e env) (_ *app, err error) {
	a := &app{plan: p, env: e, log: newLogger(p, e.stderr)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := os.MkdirAll(p.data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if p.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(p.tlsCert, p.tlsKey); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	set := metrics.NewSet()
	a.set = set
	if err := a.buildStream(set); err != nil {
		return nil, err
	}
	if err := a.buildSources(set); err != nil {
		return nil, err
	}
	if err := a.buildAlerts(set); err != nil {
		return nil, err
	}
	if err := a.buildWeb(set); err != nil {
		return nil, err
	}
	return a, nil
}

func newLogger(p plan, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: p.logLevel}
	if p.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildStream opens the journal and builds the hub, its ids after every
// id a previous run used. An agent that pushes into NATS copies every
// event to the shared stream (cluster.Tee).
func (a *app) buildStream(set *metrics.Set) error {
	if a.replica() {
		return a.buildShared(set)
	}
	a.ids = stream.IDFile(filepath.Join(a.plan.data, "last-event-id"))
	floor, err := a.ids.Load()
	if err != nil {
		a.log.Warn("ignoring saved event id", "err", err)
	}
	first := stream.NextRunID(floor, time.Now())
	if a.journal, err = stream.OpenJournal(a.plan.data, first); err != nil {
		return err
	}
	a.closers = append(a.closers, a.journal.Close)
	var log stream.Log // nil: the hub's MemoryLog
	if a.plan.cluster != nil {
		if err := a.connect(set); err != nil {
			return err
		}
		log = &cluster.Tee{Log: stream.NewMemoryLog(first, a.plan.replay, nil), Shared: a.shared}
	}
	a.hub = stream.NewHub(stream.HubOptions{Replay: a.plan.replay, Queue: a.plan.queue, Heartbeat: a.plan.heartbeat,
		FirstID: first, Log: log, Metrics: set, History: a.journal, Logger: a.log})
	return nil
}

// replica says this vigil is one replica of several on NATS (not alone,
// nor an agent that only pushes into NATS).
func (a *app) replica() bool { return a.plan.cluster != nil && !a.plan.cluster.agent }

// connect connects to NATS and builds the shared log.
func (a *app) connect(set *metrics.Set) error {
	cp := a.plan.cluster
	conn := cp.conn
	conn.Logger = a.log
	nc, err := cluster.Connect(conn)
	if err != nil {
		return err
	}
	a.closers = append(a.closers, func() error {
		nc.FlushTimeout(time.Second) // what this vigil published last
		nc.Close()
		return nil
	})
	opts := cp.log
	opts.Window, opts.Logger, opts.Metrics = a.plan.replay, a.log, set
	if a.shared, err = cluster.NewLog(nc, opts); err != nil {
		return err
	}
	a.js = a.shared.JetStream()
	return nil
}

// buildShared builds the hub of a replica: its events in the JetStream
// stream every replica shares, numbered by it. The journal of this
// replica's transitions is its own, under --data/cluster.
func (a *app) buildShared(set *metrics.Set) error {
	if err := a.connect(set); err != nil {
		return err
	}
	dir := filepath.Join(a.plan.data, "cluster")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// Ids are the stream's, never given twice: nothing to drop.
	var err error
	if a.journal, err = stream.OpenJournal(dir, stream.MaxID); err != nil {
		return err
	}
	a.closers = append(a.closers, a.journal.Close)
	a.hub = stream.NewHub(stream.HubOptions{Replay: a.plan.replay, Queue: a.plan.queue, Heartbeat: a.plan.heartbeat,
		Log: a.shared, Metrics: set, History: a.journal, Logger: a.log})
	return nil
}

// took takes an event of the shared stream: another replica's samples go
// into the ring (this one's are there).
func (a *app) took(ev *stream.Event, from cluster.From) {
	if from.Replica == a.plan.cluster.log.Replica {
		return
	}
	if from.Agent {
		a.agents.Saw(from.Replica, ev.Time)
	}
	err := a.mirror.Take(ev, from.Stored)
	switch {
	case errors.Is(err, collector.ErrOwnSource):
		if _, told := a.clashes.LoadOrStore(ev.Source, true); !told {
			a.log.Warn("a sample of the shared stream not taken", "source", ev.Source, "replica", from.Replica, "err", err)
		}
	case err != nil:
		a.log.Debug("a sample of the shared stream not taken", "replica", from.Replica, "err", err)
	}
}

// buildSources builds the host, the services and the demo, and the
// scheduler that samples them into the ring and the hub.
func (a *app) buildSources(set *metrics.Set) error {
	a.store = collector.NewStore(a.plan.retention, a.plan.interval)
	a.mirror = &collector.Mirror{Store: a.store}
	var sources []collector.Source
	if a.plan.host != nil {
		h, err := collector.NewHost(*a.plan.host)
		if err != nil {
			return err
		}
		sources = append(sources, h)
	}
	services := a.plan.services
	if a.plan.demo {
		var err error
		if a.demo, err = collector.NewDemo(a.plan.interval); err != nil {
			return err
		}
		a.closers = append(a.closers, func() error { a.demo.Close(); return nil })
		services = append(services, a.demo.Services()...)
	}
	for _, opts := range services {
		svc, err := collector.NewService(opts)
		if err != nil {
			return err
		}
		if a.replica() {
			// Every replica has the same services; the lease holder
			// probes them (holderWork), the others mirror its samples.
			a.leaderSources = append(a.leaderSources, svc)
			continue
		}
		sources = append(sources, svc)
	}
	if err := a.buildHistory(set); err != nil {
		return err
	}
	for _, src := range sources {
		if a.mirror.Own == nil {
			a.mirror.Own = map[string]bool{}
		}
		a.mirror.Own[src.Name()] = true
	}
	a.mirror.Follows = a.follows
	a.sched = &collector.Scheduler{Store: a.store, Hub: a.hub, Sources: sources,
		Interval: a.plan.interval, Timeout: a.plan.hostTimeout, Metrics: set, Logger: a.log}
	if len(a.plan.upstreams) > 0 || a.plan.upstreamsFile != "" {
		a.fleet = &collector.Fleet{Store: a.store, Hub: a.hub, Scheduler: a.sched, Upstreams: a.plan.upstreams,
			File: a.plan.upstreamsFile, FileDefaults: a.plan.fileDefaults,
			Positions: collector.PositionFile(filepath.Join(a.plan.data, "upstreams.json")), Metrics: set, Logger: a.log}
		if a.replica() {
			a.fleet.Shared = true
			// The lease holder follows the upstreams (holderWork), from
			// where the last holder stood.
			a.positions = cluster.NewPositions(a.js, a.plan.cluster.log.Replicas)
			a.fleet.Positions = a.positions
		}
	}
	return nil
}

// keeper is where the history is kept: the tiers under --data
// (history.DB) or VictoriaMetrics (history.Victoria).
type keeper interface {
	dashboard.History
	collector.Recorder
	Run(ctx context.Context) error
}

// buildHistory opens the history, gives the ring its recent past from it,
// and has the ring record every sample into it.
func (a *app) buildHistory(set *metrics.Set) error {
	if a.plan.victoria != nil {
		opts := *a.plan.victoria
		opts.Logger, opts.Metrics = a.log, set
		v, err := history.NewVictoria(opts)
		if err != nil {
			return err
		}
		a.history = v
		a.store.RecordInto(v)
		return nil
	}
	if a.plan.history == nil {
		return nil
	}
	ctx := context.Background()
	h, err := history.Open(ctx, history.Options{Path: filepath.Join(a.plan.data, "history.db"), Tiers: a.plan.history, Logger: a.log, Metrics: set})
	if err != nil {
		return err
	}
	a.history = h
	a.closers = append(a.closers, h.Close)
	if err := h.Fill(ctx, a.store, time.Now().Add(-a.plan.retention)); err != nil {
		return err
	}
	a.store.RecordInto(h)
	return nil
}

// buildAlerts opens the store and builds the evaluator and the
// dispatcher, with the configured receivers saved.
func (a *app) buildAlerts(set *metrics.Set) error {
	var err error
	if a.db, err = alerts.Open(a.plan.data); err != nil {
		return err
	}
	a.closers = append(a.closers, a.db.Close)
	if n := len(a.plan.history); n > 0 { // the charts' marks as far back as their history
		a.db.JournalRetention = a.plan.history[n-1].Keep
	}
	client := alerts.NewClient(a.plan.allowNets, alerts.DefaultAttemptTimeout)
	a.push = &alerts.PushKeys{}
	if !a.replica() { // a replica reads the replicas' keys from NATS once it runs
		if v, err := alerts.LoadVAPID(a.plan.data); err != nil {
			a.log.Error("no web push: its keys cannot be read", "err", err)
		} else {
			v.Subject = a.pushSubject()
			a.push.Set(v)
		}
		secret, err := dashboard.LoadSessionSecret(a.plan.data)
		if err != nil {
			return err
		}
		a.sessionSecret.Store(&secret)
	}
	a.dispatch = &alerts.Dispatcher{DB: a.db, Client: client, Logger: a.log, Metrics: set, VAPID: a.push}
	a.receivers = &alerts.Receivers{Outbox: a.db, Wake: a.dispatch.Wake}
	if a.replica() {
		// The receivers and webhooks are in NATS, sent by whichever
		// replica is up; it saves the configured receivers there once it
		// has read them. (The local dispatcher still sends what vigil.db
		// held from before.)
		a.webhooks = cluster.NewWebhooks(a.js, cluster.WebhookOptions{Replicas: a.plan.cluster.log.Replicas,
			Sender: alerts.Sender{Client: client, VAPID: a.push}, Configured: a.plan.receivers, Logger: a.log, Metrics: set})
		a.receivers = &alerts.Receivers{Outbox: a.webhooks}
	} else if err := a.receivers.Configure(context.Background(), a.plan.receivers); err != nil {
		return err
	}
	a.eval = &alerts.Evaluator{Rules: a.plan.rules, Ring: a.store, Hub: a.hub, States: a.db, Silences: a.db, Interval: a.plan.interval,
		Logger: a.log, Metrics: set, Saved: a.dispatch.Wake}
	if a.replica() {
		// One replica at a time evaluates: the holder of the alert lease,
		// from the states in NATS; it reads them when it takes the lease.
		cp := a.plan.cluster
		lo := cp.lease
		lo.Logger = a.log
		a.lease = cluster.NewLease(a.js, lo)
		a.states = cluster.NewAlertStates(a.js, "", cp.log.Replicas, a.db.WithoutWebhooks(), a.log)
		a.states.Webhooks = a.webhooks
		a.webhooks.Holding = func() bool { held, _, _ := a.lease.Lead(); return held }
		a.eval.States, a.eval.Lead, a.eval.Acks, a.eval.Silences = a.states, a.lease.Lead, a.states, a.states
		return nil
	}
	return a.eval.Load(context.Background())
}

// pushSubject says who runs this vigil to the push services:
// alerts.push_subject, or the dashboard's address when it is https, or a
// mailto: of no one (which Apple's service refuses).
func (a *app) pushSubject() string {
	switch {
	case a.plan.pushSubject != "":
		return a.plan.pushSubject
	case strings.HasPrefix(a.plan.dashboardURL, "https://"):
		return a.plan.dashboardURL
	}
	return "vigil@localhost"
}

// buildWeb listens and builds the HTTP server.
func (a *app) buildWeb(set *metrics.Set) error {
	ln, err := net.Listen("tcp", a.plan.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a.ln = ln
	a.closers = append(a.closers, func() error { ln.Close(); return nil })
	loopback := false
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		loopback = ta.IP.IsLoopback()
	}
	if !loopback && len(a.plan.allowedHosts) == 0 {
		a.log.Warn("listening beyond this machine with any Host accepted; set server.allowed_hosts to the names vigil is reached by (DNS rebinding)")
	}
	a.db.DashboardURL = a.plan.dashboardURL
	if a.db.DashboardURL == "" {
		a.db.DashboardURL = a.url()
	}
	if a.webhooks != nil {
		a.webhooks.DashboardURL = a.db.DashboardURL
	}
	opts := dashboard.Options{Alerts: a.eval, Journal: a.db, Receivers: a.receivers, Silences: a.eval.Silences, PushKey: a.push.Public,
		SessionSecret: func() []byte {
			if p := a.sessionSecret.Load(); p != nil {
				return *p
			}
			return nil
		}, Tokens: a.plan.tokens, ReadTokens: a.plan.readTokens,
		Hub: a.hub, Store: a.store, Metrics: set, Logger: a.log, Version: buildVersion(), Demo: a.plan.demo,
		Interval: a.plan.interval, Heartbeat: a.plan.heartbeat, Retry: a.plan.retry, WriteTimeout: a.plan.writeTimeout,
		Loopback: loopback, AllowedHosts: a.plan.allowedHosts,
		Checks: []dashboard.Check{{Name: "alert store", Err: a.eval.Healthy}},
	}
	if a.shared != nil {
		opts.Checks = append(opts.Checks, dashboard.Check{Name: "nats", Err: a.shared.Err, Soft: true})
	}
	switch {
	case a.fleet != nil && a.positions != nil:
		opts.Fleet = replicaFleet{a}
	case a.fleet != nil: // a nil *Fleet in the interface would not be nil
		opts.Fleet = a.fleet
	}
	if a.history != nil {
		opts.History = a.history
	}
	a.web = dashboard.New(opts)
	a.srv = &http.Server{Handler: a.web, Protocols: dashboard.Protocols(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	// Streams end when the hub closes, so Shutdown does not wait on them.
	a.srv.RegisterOnShutdown(a.hub.Close)
	return nil
}

// url is where vigil is reached, by its listening address.
func (a *app) url() string {
	scheme := "http"
	if a.plan.tlsCert != "" {
		scheme = "https"
	}
	return scheme + "://" + a.ln.Addr().String()
}

// run runs every part, each on its own goroutine in one group, until ctx
// is done or a part fails; then it stops them in order: the web server
// (streams end as the hub closes), the collectors, the alerts and the
// dispatcher (attempts under way get a grace period), and last saves the
// newest event id and closes the stores.
func (a *app) run(ctx context.Context) error {
	defer a.close()
	if a.replica() { // ids are the shared stream's, known once it is read
		a.log.Info("vigil listening", "url", a.url(), "version", buildVersion(),
			"sources", len(a.sched.Sources), "replica", a.plan.cluster.log.Replica)
	} else {
		a.log.Info("vigil listening", "url", a.url(), "version", buildVersion(),
			"sources", len(a.sched.Sources), "first_event_id", a.hub.FirstID())
	}
	if a.env.listening != nil {
		a.env.listening(a.ln.Addr().String())
	}
	g, gctx := errgroup.WithContext(ctx)
	if a.demo != nil {
		g.Go(func() error { return a.demo.Run(gctx) })
	}
	g.Go(func() error { return a.sched.Run(gctx) })
	if a.history != nil {
		g.Go(func() error { return a.history.Run(gctx) })
	}
	if a.fleet != nil && !a.replica() { // a replica's fleet is the lease holder's work
		g.Go(func() error { return a.fleet.Run(gctx) })
	}
	g.Go(func() error { return a.hub.Run(gctx) })
	g.Go(func() error { return a.eval.Run(gctx) })
	g.Go(func() error { return a.dispatch.Run(gctx) })
	for _, rc := range a.plan.receivers { // MQTT receivers that take the samples too
		if rc.Type != alerts.TypeMQTT || !rc.Samples {
			continue
		}
		m := &alerts.MQTTSamples{Receiver: alerts.Receiver{ID: "cfg-" + rc.Name, Type: rc.Type, URL: rc.URL, Username: rc.Username, Secret: rc.Secret, CAFile: rc.CAFile},
			Hub: a.hub, Sender: alerts.Sender{Client: a.dispatch.Client}, Logger: a.log}
		if a.lease != nil {
			m.Leading = func() bool { held, _, _ := a.lease.Lead(); return held }
		}
		g.Go(func() error { return m.Run(gctx) })
	}
	switch {
	case a.replica():
		g.Go(func() error { return a.shared.Run(gctx, a.hub, a.took) })
		g.Go(func() error { return a.lease.Run(gctx) })
		g.Go(func() error { return a.states.Run(gctx) })
		g.Go(func() error { return a.webhooks.Run(gctx) })
		g.Go(func() error {
			cluster.SharedVAPID(gctx, a.js, a.plan.cluster.log.Replicas, a.pushSubject(), a.push, a.log)
			return nil
		})
		g.Go(func() error {
			cluster.SharedSessionSecret(gctx, a.js, a.plan.cluster.log.Replicas, func(b []byte) { a.sessionSecret.Store(&b) }, a.log)
			return nil
		})
		a.agents.Idle = a.plan.cluster.agentIdle
		g.Go(func() error { return a.holderWork(gctx) })
	case a.shared != nil: // an agent that pushes into NATS
		g.Go(func() error { return a.shared.Prepare(gctx) })
		fallthrough
	default:
		g.Go(func() error { return a.ids.Keep(gctx, a.hub, a.set, a.log) })
	}
	g.Go(func() error { a.ready(gctx); return nil })
	g.Go(func() error { return a.serve() })
	g.Go(func() error { <-gctx.Done(); a.shutdown(); return nil })
	err := g.Wait()
	if !a.replica() {
		if serr := a.ids.Save(a.hub.LastID()); serr != nil {
			a.log.Warn("save event id", "err", serr)
		}
	}
	return err
}

// follows says a source comes to this replica itself: from its fleet's
// upstreams, or a service it samples as the lease holder.
func (a *app) follows(source string) bool {
	if a.fleet != nil && a.fleet.Follows(source) {
		return true
	}
	_, sampled := a.sampling.Load(source)
	return sampled
}

// holderWork runs what only the replica that holds the alert lease runs,
// while it does (checked every interval): the services, the agents that
// push (upstream/<agent>, new ones added as they come), and a hub's
// upstreams, followed from where the last holder stood.
func (a *app) holderWork(ctx context.Context) error {
	t := time.NewTicker(a.plan.interval)
	defer t.Stop()
	var h holder
	defer h.stopFleet()
	for {
		held, _, _ := a.lease.Lead()
		a.holdSources(&h, held)
		if a.fleet != nil {
			a.holdFleet(ctx, &h, held)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// holder is what holderWork runs now.
type holder struct {
	sampling map[string]bool // the sources
	leading  bool
	stop     context.CancelFunc // the fleet's Run; nil when it does not run
	done     chan struct{}      // closed when that Run returned
}

func (h *holder) stopFleet() {
	if h.stop != nil {
		h.stop()
		<-h.done
		h.stop = nil
	}
}

// holdSources samples the services and the pushing agents while held.
func (a *app) holdSources(h *holder, held bool) {
	if h.sampling == nil {
		h.sampling = map[string]bool{}
	}
	want := map[string]collector.Source{}
	if held {
		for _, src := range append(slices.Clone(a.leaderSources), a.agents.Sources()...) {
			want[src.Name()] = src
		}
	}
	for name, src := range want {
		if !h.sampling[name] && a.sched.Add(src) {
			h.sampling[name] = true
			a.sampling.Store(name, true)
		}
	}
	for name := range h.sampling {
		if want[name] == nil {
			a.sched.Remove(name)
			delete(h.sampling, name)
			a.sampling.Delete(name)
		}
	}
	if held != h.leading {
		h.leading = held
		if held {
			a.log.Info("sampling the services and the pushing agents: this replica holds the alert lease", "services", len(a.leaderSources))
		} else {
			a.log.Info("not sampling the services: another replica holds the alert lease")
		}
	}
}

// holdFleet follows the upstreams while held, and lets them go when not.
func (a *app) holdFleet(ctx context.Context, h *holder, held bool) {
	if h.stop != nil {
		select {
		case <-h.done: // Run ended on its own (the positions could not be read): again
			h.stop = nil
		default:
		}
	}
	switch {
	case held && h.stop == nil:
		var fctx context.Context
		fctx, h.stop = context.WithCancel(ctx)
		h.done = make(chan struct{})
		done := h.done
		go func() {
			defer close(done)
			a.following.Store(true)
			defer a.following.Store(false)
			go a.shareStatus(fctx)
			if err := a.fleet.Run(fctx); err != nil {
				a.log.Warn("not following the upstreams yet; tried again", "err", err)
			}
		}()
		a.log.Info("following the upstreams: this replica holds the alert lease")
	case !held && h.stop != nil:
		h.stopFleet()
		a.log.Info("not following the upstreams: another replica holds the alert lease")
	}
}

// shareStatus saves the upstreams' status every 2 s while this replica
// follows them, for the other replicas' fleet view.
func (a *app) shareStatus(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.positions.SaveStatus(a.fleet.Status()); err != nil {
				a.log.Debug("sharing the upstreams' status", "err", err)
			}
		}
	}
}

// replicaFleet is a hub replica's fleet for its pages and API: its own
// while it follows the upstreams, else the status the follower shared.
type replicaFleet struct{ a *app }

func (f replicaFleet) Status() []collector.UpstreamStatus {
	if f.a.following.Load() {
		return f.a.fleet.Status()
	}
	return f.a.positions.Status()
}

// ready marks the server ready once every source has reported once, and a
// replica's shared stream has been reached.
func (a *app) ready(ctx context.Context) {
	var shared <-chan struct{}
	if a.replica() {
		shared = a.shared.Ready()
	}
	for _, ch := range []<-chan struct{}{a.sched.Ready(), shared} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
	a.web.SetReady(true)
}

func (a *app) serve() error {
	var err error
	if a.plan.tlsCert != "" {
		err = a.srv.ServeTLS(a.ln, a.plan.tlsCert, a.plan.tlsKey)
	} else {
		err = a.srv.Serve(a.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve: %w", err)
}

// shutdown stops the web server: /readyz fails at once, the hub closes
// (ending every stream), and requests under way get shutdownTimeout.
func (a *app) shutdown() {
	if a.env.stop != nil {
		a.env.stop() // a second signal kills at once
	}
	a.log.Info("shutting down", "streams", a.hub.Subscribers())
	a.web.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
	}
}

// close closes what newApp opened, last opened first.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
