// Command vigil is a live monitoring dashboard: it samples this host, keeps
// the recent history in memory and streams every sample to browsers and
// terminals as Server-Sent Events.
//
// This file holds flags, configuration and wiring only.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"

	"vigil/alerts"
	"vigil/collector"
	"vigil/dashboard"
	"vigil/stream"
	"vigil/tail"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, env{
		args:   os.Args[1:],
		getenv: os.Getenv,
		stdout: os.Stdout,
		stderr: os.Stderr,
		stop:   stop,
	})
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // --help: the usage went to stdout
		}
		fmt.Fprintln(os.Stderr, "vigil:", err)
		os.Exit(2)
	}
}

// env is what run needs from the process, so tests can run vigil in process.
type env struct {
	args           []string
	getenv         func(string) string
	stdout, stderr io.Writer
	stop           func()            // restores default signal handling once shutdown starts; may be nil
	listening      func(addr string) // called with the bound address; may be nil
}

const usage = `vigil — a live monitoring dashboard

Usage:
  vigil [flags]                     serve the dashboard, the event stream and the API
  vigil --demo                      ... with a few built-in demo services to watch
  vigil validate [--config FILE]    check a configuration and exit
  vigil tail [flags] [URL]          follow a vigil's event stream in the terminal
  vigil version                     print the version

Flags (each also read from VIGIL_<NAME>, for example VIGIL_ADDR):
`

func run(ctx context.Context, e env) error {
	args := e.args
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(e.stdout, "vigil", buildVersion())
		return nil
	case "serve", "validate":
	case "tail":
		return tail.Command(ctx, args, tail.Env{Stdout: e.stdout, Stderr: e.stderr,
			Usage: usageOut(args, e.stdout, e.stderr), Getenv: e.getenv, DefaultURL: "http://" + DefaultAddr})
	case "help":
		args = []string{"-h"}
	default:
		return fmt.Errorf("unknown command %q (want serve, validate, tail or version)", cmd)
	}
	cfg, err := configure(args, e.getenv, e.stdout, e.stderr)
	if err != nil {
		return err
	}
	if cmd == "validate" {
		fmt.Fprintln(e.stdout, "configuration ok")
		return nil
	}
	return serve(ctx, cfg, e)
}

// configure builds the configuration: defaults, then the file, then the
// environment, then flags.
func configure(args []string, getenv func(string) string, stdout, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("vigil", flag.ContinueOnError)
	fs.SetOutput(usageOut(args, stdout, stderr))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML configuration file")
	demo := fs.Bool("demo", false, "also start a few built-in demo services and watch them")
	var allowNets stringList
	fs.Var(&allowNets, "webhook-allow-net", "CIDR that webhook targets may be in although it is loopback, private or otherwise special-purpose (repeatable), e.g. 127.0.0.0/8")
	// Flags are parsed into strings and applied after the file, so that a
	// flag overrides the file while its default does not.
	type setting struct {
		name, help string
		apply      func(string) error
	}
	str := func(dst *string) func(string) error {
		return func(v string) error { *dst = v; return nil }
	}
	dur := func(dst *Duration) func(string) error {
		return func(v string) error {
			d, err := parseDuration(v)
			*dst = Duration(d)
			return err
		}
	}
	settings := []setting{
		{"addr", "listen address (default " + DefaultAddr + ")", str(&cfg.Addr)},
		{"data", "state directory (default " + DefaultData + ")", str(&cfg.Data)},
		{"interval", "sampling interval (default 1s)", dur(&cfg.Interval)},
		{"retention", "history kept per series (default 10m)", dur(&cfg.Retention)},
		{"tls-cert", "TLS certificate file; with --tls-key serves HTTPS and HTTP/2", str(&cfg.TLS.Cert)},
		{"tls-key", "TLS private key file", str(&cfg.TLS.Key)},
		{"log-level", "debug, info, warn or error (default info)", str(&cfg.Log.Level)},
		{"log-format", "text or json (default text)", str(&cfg.Log.Format)},
	}
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		values[s.name] = fs.String(s.name, "", s.help)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	setOnCLI := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { setOnCLI[f.Name] = true })

	path := *configPath
	if !setOnCLI["config"] {
		path = getenv("VIGIL_CONFIG")
	}
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	for _, s := range settings {
		v, from := *values[s.name], "--"+s.name
		if !setOnCLI[s.name] {
			from = "VIGIL_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
			if v = getenv(from); v == "" {
				continue
			}
		}
		if err := s.apply(v); err != nil {
			return cfg, &ConfigError{Msg: from + ": " + err.Error()}
		}
	}
	if setOnCLI["demo"] {
		cfg.Demo = *demo
	} else if v := getenv("VIGIL_DEMO"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, &ConfigError{Msg: "VIGIL_DEMO: want true or false, got " + strconv.Quote(v)}
		}
		cfg.Demo = b
	}
	if v := getenv("VIGIL_ALLOWED_HOSTS"); v != "" {
		cfg.Server.AllowedHosts = strings.Split(v, ",")
	}
	if v := getenv("VIGIL_AUTH_TOKENS"); v != "" {
		cfg.Auth.Tokens = strings.Split(v, ",")
	}
	if len(allowNets) > 0 {
		cfg.Alerts.AllowNetworks = append(cfg.Alerts.AllowNetworks, allowNets...)
	} else if v := getenv("VIGIL_WEBHOOK_ALLOW_NET"); v != "" {
		cfg.Alerts.AllowNetworks = append(cfg.Alerts.AllowNetworks, strings.Split(v, ",")...)
	}
	if err := validate(cfg, "", nil); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// usageOut is where a flag set writes its usage: stdout when help was
// asked for (it is the answer, and vigil exits 0), stderr with an error.
func usageOut(args []string, stdout, stderr io.Writer) io.Writer {
	for _, a := range args {
		switch a {
		case "--":
			return stderr
		case "-h", "-help", "--h", "--help":
			return stdout
		}
	}
	return stderr
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// shutdownTimeout bounds a graceful stop, so SIGTERM ends vigil within 5 s.
const shutdownTimeout = 4 * time.Second

func serve(ctx context.Context, cfg Config, e env) error {
	log := newLogger(cfg, e.stderr)
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	idFile := filepath.Join(cfg.Data, "last-event-id")
	floor, err := readLastID(idFile)
	if err != nil {
		log.Warn("ignoring saved event id", "err", err)
	}
	if cfg.TLS.Cert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}

	db, err := alerts.Open(cfg.Data)
	if err != nil {
		return err
	}
	defer db.Close()
	rules, err := cfg.rules()
	if err != nil {
		return err // validate has said so already
	}

	set := metrics.NewSet()
	first := stream.NextRunID(floor, time.Now())
	journal, err := stream.OpenJournal(cfg.Data, first)
	if err != nil {
		return err
	}
	defer journal.Close()
	hub := stream.NewHub(stream.HubOptions{
		Replay:    cfg.Stream.Replay,
		Queue:     cfg.Stream.Queue,
		Heartbeat: cfg.Stream.Heartbeat.D(),
		FirstID:   first,
		Metrics:   set,
		History:   journal,
		Logger:    log,
	})
	store := collector.NewStore(cfg.Retention.D(), cfg.Interval.D())
	var sources []collector.Source
	if cfg.Host.Enabled {
		h, err := collector.NewHost(collector.HostOptions{
			Name:              cfg.Host.Name,
			ExcludeFSTypes:    cfg.Host.ExcludeFSTypes,
			ExcludeMounts:     cfg.Host.ExcludeMounts,
			ExcludeInterfaces: cfg.Host.ExcludeInterfaces,
			FSTimeout:         cfg.Host.FSTimeout.D(),
		})
		if err != nil {
			return err
		}
		sources = append(sources, h)
	}
	for _, sc := range cfg.Services {
		opts, errs := sc.options(cfg.Interval.D())
		if len(errs) > 0 {
			return errors.Join(errs...) // validate has said so already
		}
		svc, err := collector.NewService(opts)
		if err != nil {
			return err
		}
		sources = append(sources, svc)
	}
	var demo *collector.Demo
	if cfg.Demo {
		if demo, err = collector.NewDemo(cfg.Interval.D()); err != nil {
			return err
		}
		defer demo.Close()
		demos := demo.Services()
		for _, opts := range demos {
			svc, err := collector.NewService(opts)
			if err != nil {
				return err
			}
			sources = append(sources, svc)
		}
		log.Info("demo services started", "services", len(demos))
	}
	sched := &collector.Scheduler{
		Store: store, Hub: hub, Sources: sources,
		Interval: cfg.Interval.D(), Timeout: cfg.Host.Timeout.D(),
		Metrics: set, Logger: log,
	}
	allow, _ := cfg.allowNets() // validated
	dispatcher := &alerts.Dispatcher{DB: db, Client: alerts.NewClient(allow, alerts.DefaultAttemptTimeout), Logger: log, Metrics: set}
	receivers := &alerts.Receivers{DB: db, Wake: dispatcher.Wake}
	if err := receivers.Configure(ctx, configuredReceivers(cfg.Alerts.Receivers)); err != nil {
		return err
	}
	eval := &alerts.Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Interval: cfg.Interval.D(), Logger: log, Metrics: set, Saved: dispatcher.Wake}
	if err := eval.Load(ctx); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	loopback := false
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		loopback = ta.IP.IsLoopback()
	}
	if !loopback && len(cfg.Server.AllowedHosts) == 0 {
		log.Warn("listening beyond this machine with any Host accepted; set server.allowed_hosts to the names vigil is reached by (DNS rebinding)")
	}
	web := dashboard.New(dashboard.Options{Alerts: eval, Receivers: receivers, Tokens: cfg.Auth.Tokens,
		Hub: hub, Store: store, Metrics: set, Logger: log, Version: buildVersion(), Demo: cfg.Demo,
		Interval: cfg.Interval.D(), Heartbeat: cfg.Stream.Heartbeat.D(), Retry: cfg.Stream.Retry.D(), WriteTimeout: cfg.Stream.WriteTimeout.D(),
		Loopback: loopback, AllowedHosts: cfg.Server.AllowedHosts,
		Checks: []dashboard.Check{{Name: "alert store", Err: eval.Healthy}},
	})
	srv := &http.Server{
		Handler:           web,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Streams end when the hub closes, so Shutdown does not wait on them.
	srv.RegisterOnShutdown(hub.Close)
	scheme := "http"
	if cfg.TLS.Cert != "" {
		scheme = "https"
	}
	log.Info("vigil listening", "url", scheme+"://"+ln.Addr().String(), "version", buildVersion(),
		"sources", len(sources), "first_event_id", hub.FirstID())
	if e.listening != nil {
		e.listening(ln.Addr().String())
	}
	db.DashboardURL = cfg.Alerts.DashboardURL
	if db.DashboardURL == "" {
		db.DashboardURL = scheme + "://" + ln.Addr().String()
	}

	g, gctx := errgroup.WithContext(ctx)
	if demo != nil {
		g.Go(func() error { return demo.Run(gctx) })
	}
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return hub.Run(gctx) })
	g.Go(func() error { return eval.Run(gctx) })
	g.Go(func() error { return dispatcher.Run(gctx) })
	g.Go(func() error {
		select {
		case <-sched.Ready():
			web.SetReady(true)
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error {
		// Save the newest id now and then, so the next run starts after it
		// even if this one is killed and the clock steps back.
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := writeLastID(idFile, hub.LastID()); err != nil {
					log.Warn("save event id", "err", err)
				}
			}
		}
	})
	g.Go(func() error {
		var err error
		if cfg.TLS.Cert != "" {
			err = srv.ServeTLS(ln, cfg.TLS.Cert, cfg.TLS.Key)
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		if e.stop != nil {
			e.stop() // a second signal kills at once
		}
		log.Info("shutting down")
		web.Shutdown()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		hub.Close()
		return nil
	})
	err = g.Wait()
	if werr := writeLastID(idFile, hub.LastID()); werr != nil {
		log.Warn("save event id", "err", werr)
	}
	return err
}

// readLastID reads the newest event id a previous run saved; 0 if none.
func readLastID(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// writeLastID saves an id atomically: a crash leaves the old file or the new.
func writeLastID(path string, id uint64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(id, 10)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
