// Command vigil is a live monitoring dashboard: it samples this host and
// its services, keeps the recent history in memory, streams every sample to
// browsers and terminals, and sends alerts to webhooks.
//
// This file is the command line: flags and the environment over the file
// (config.go) make a checked plan (plan.go); newApp(plan) builds vigil and
// run(ctx) runs it (app.go) until a signal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

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

// defaultGOGC is the garbage collector's target unless GOGC is set. Most
// of vigil's heap is series kept for the retention, which hold no
// pointers and cost the collector next to nothing to mark; Go's default
// of 100 lets as much garbage again pile up beside them, which at a
// thousand agents is hundreds of megabytes (docs/BENCHMARKS.md, the fleet).
const defaultGOGC = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
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
  vigil [serve] [flags]             serve the dashboard, the event stream and the API
  vigil --demo                      ... with five built-in demo services to watch
  vigil validate [--config FILE]    check a configuration and exit
  vigil tail [flags] [URL]          follow a vigil's event stream in the terminal
  vigil version                     print the version

Flags (each also read from VIGIL_<NAME>, for example VIGIL_ADDR):
`

const validateUsage = `vigil validate — check a configuration and exit: 0 when it is good, 2 with
every problem at its line (or the flag or variable it came from)

Usage:
  vigil validate [--config FILE] [flags]

It reads the file, the VIGIL_* variables and the flags as vigil serve does.

Flags:
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
			Usage: e.stdout, Getenv: e.getenv, DefaultURL: "http://" + DefaultAddr})
	case "help":
		args = []string{"-h"}
	default:
		return fmt.Errorf("unknown command %q (want serve, validate, tail or version)", cmd)
	}
	p, err := configure(cmd, args, e.getenv, e.stdout)
	if err != nil {
		return err
	}
	if cmd == "validate" {
		fmt.Fprintln(e.stdout, "configuration ok")
		return nil
	}
	a, err := newApp(p, e)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// configure builds the plan: defaults, then the file, then the
// environment, then flags, checked and converted once. cmd is serve or
// validate; --help writes its usage to stdout.
func configure(cmd string, args []string, getenv func(string) string, stdout io.Writer) (plan, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("vigil", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is one error, returned; not the usage too
	fs.Usage = func() {
		if cmd == "validate" {
			fmt.Fprint(stdout, validateUsage)
		} else {
			fmt.Fprint(stdout, usage)
		}
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML configuration file")
	demo := fs.Bool("demo", false, "also start five built-in demo services and watch them")
	var allowNets, upstreams stringList
	fs.Var(&allowNets, "webhook-allow-net", "CIDR that webhook targets may be in although it is loopback, private or otherwise special-purpose (repeatable), e.g. 127.0.0.0/8")
	fs.Var(&upstreams, "upstream", "URL of an agent (another vigil) to follow, which makes this one a hub (repeatable), e.g. http://web-1:8080")
	settings := flagSettings(&cfg)
	values := make(map[string]*string, len(settings))
	for _, st := range settings {
		values[st.name] = fs.String(st.name, "", st.help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return plan{}, err
		}
		help := "vigil --help"
		if cmd == "validate" {
			help = "vigil validate --help"
		}
		return plan{}, fmt.Errorf("%w (%s lists the flags)", err, help)
	}
	if fs.NArg() > 0 {
		return plan{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	setOnCLI := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { setOnCLI[f.Name] = true })

	src := origin{from: map[string]string{}}
	src.file = *configPath
	if !setOnCLI["config"] {
		src.file = getenv("VIGIL_CONFIG")
	}
	if src.file != "" {
		root, problems, err := loadFile(src.file, &cfg)
		if err != nil {
			return plan{}, err
		}
		src.root, src.problems = root, problems
	}
	for _, st := range settings {
		v, from := *values[st.name], "--"+st.name
		if !setOnCLI[st.name] {
			from = "VIGIL_" + strings.ToUpper(strings.ReplaceAll(st.name, "-", "_"))
			if v = getenv(from); v == "" {
				continue
			}
		}
		if err := st.apply(v); err != nil {
			return plan{}, &ConfigError{Msg: from + ": " + err.Error()}
		}
		src.from[st.key] = from
	}
	if err := fromEnv(&cfg, src, setOnCLI["demo"], *demo, cliLists{allowNets, upstreams}, getenv); err != nil {
		return plan{}, err
	}
	return cfg.plan(src)
}

// A setting is a flag that sets one value of the file, with its
// environment variable. Flags are parsed into strings and applied after
// the file, so that a flag overrides the file while its default does not.
type setting struct {
	name, key, help string // key: where the value lands in the file's terms
	apply           func(string) error
}

func flagSettings(cfg *Config) []setting {
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
	return []setting{
		{"addr", "addr", "listen address (default " + DefaultAddr + ")", str(&cfg.Addr)},
		{"data", "data", "state directory (default " + DefaultData + ")", str(&cfg.Data)},
		{"interval", "interval", "sampling interval (default 1s)", dur(&cfg.Interval)},
		{"retention", "retention", "history kept per series (default 10m)", dur(&cfg.Retention)},
		{"tls-cert", "tls", "TLS certificate file; with --tls-key serves HTTPS and HTTP/2", str(&cfg.TLS.Cert)},
		{"tls-key", "tls", "TLS private key file", str(&cfg.TLS.Key)},
		{"log-level", "log.level", "debug, info, warn or error (default info)", str(&cfg.Log.Level)},
		{"log-format", "log.format", "text or json (default text)", str(&cfg.Log.Format)},
		{"nats", "cluster.nats.urls", "NATS server URLs, comma-separated, e.g. nats://127.0.0.1:4222: this vigil becomes a replica that shares its events through NATS JetStream", func(v string) error {
			cfg.Cluster.NATS.URLs = splitList(v)
			return nil
		}},
		{"cluster-name", "cluster.name", "this replica's name on the events it publishes (default the hostname)", str(&cfg.Cluster.Name)},
	}
}

// cliLists are the repeatable flags, which add to the file's lists.
type cliLists struct {
	allowNets, upstreams []string
}

// fromEnv applies the settings that have no flag, or whose flag adds to a
// list: VIGIL_DEMO, VIGIL_ALLOWED_HOSTS, VIGIL_AUTH_TOKENS,
// VIGIL_AUTH_READ_TOKENS, --webhook-allow-net / VIGIL_WEBHOOK_ALLOW_NET and
// --upstream / VIGIL_UPSTREAM.
func fromEnv(cfg *Config, src origin, demoOnCLI, demo bool, cli cliLists, getenv func(string) string) error {
	if demoOnCLI {
		cfg.Demo = demo
	} else if v := getenv("VIGIL_DEMO"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &ConfigError{Msg: "VIGIL_DEMO: want true or false, got " + strconv.Quote(v)}
		}
		cfg.Demo = b
	}
	if v := getenv("VIGIL_ALLOWED_HOSTS"); v != "" {
		cfg.Server.AllowedHosts = splitList(v)
		src.from["server.allowed_hosts"] = "VIGIL_ALLOWED_HOSTS"
	}
	if v := getenv("VIGIL_AUTH_TOKENS"); v != "" {
		cfg.Auth.Tokens = splitList(v)
		src.from["auth.tokens"] = "VIGIL_AUTH_TOKENS"
	}
	if v := getenv("VIGIL_AUTH_READ_TOKENS"); v != "" {
		cfg.Auth.ReadTokens = splitList(v)
		src.from["auth.read_tokens"] = "VIGIL_AUTH_READ_TOKENS"
	}
	// Networks and upstreams add to the file's: each says where it came
	// from.
	allowNets, from := cli.allowNets, "--webhook-allow-net"
	if len(allowNets) == 0 {
		allowNets, from = splitList(getenv("VIGIL_WEBHOOK_ALLOW_NET")), "VIGIL_WEBHOOK_ALLOW_NET"
	}
	for _, n := range allowNets {
		src.from["alerts.allow_networks."+strconv.Itoa(len(cfg.Alerts.AllowNetworks))] = from
		cfg.Alerts.AllowNetworks = append(cfg.Alerts.AllowNetworks, n)
	}
	ups, from := cli.upstreams, "--upstream"
	if len(ups) == 0 {
		ups, from = splitList(getenv("VIGIL_UPSTREAM")), "VIGIL_UPSTREAM"
	}
	for _, u := range ups {
		src.from["upstreams."+strconv.Itoa(len(cfg.Upstreams))] = from
		cfg.Upstreams = append(cfg.Upstreams, UpstreamConfig{URL: u})
	}
	return nil
}

// splitList reads a comma-separated variable: "a, b" is a and b.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
