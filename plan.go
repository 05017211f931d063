package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"vigil/alerts"
	"vigil/collector"
	"vigil/history"
	"vigil/stream"
)

// A plan is a configuration checked and converted, in one pass, into what
// each part of vigil takes: nothing is converted twice, and what newApp
// gets cannot be wrong in a way a check could have seen.
type plan struct {
	addr, data          string
	interval, retention time.Duration
	logLevel            slog.Level
	logJSON             bool
	tlsCert, tlsKey     string

	replay, queue                  int
	heartbeat, retry, writeTimeout time.Duration
	tokens, allowedHosts           []string
	host                           *collector.HostOptions // nil: the host is not watched
	hostTimeout                    time.Duration
	services                       []collector.ServiceOptions
	demo                           bool
	rules                          []alerts.Rule
	receivers                      []alerts.ConfiguredReceiver
	allowNets                      []netip.Prefix
	dashboardURL                   string
	pushSubject                    string

	readTokens    []string
	upstreams     []collector.UpstreamOptions // followed: this vigil is a hub
	upstreamsFile string                      // more of them, read again when it changes
	fileDefaults  collector.UpstreamOptions   // token, TLS and labels of the file's
	agentDownFor  time.Duration

	history  []history.Tier           // nil: no history, or in VictoriaMetrics
	victoria *history.VictoriaOptions // the history in VictoriaMetrics; nil: not there
	cluster  *clusterPlan             // a replica on NATS JetStream; nil: alone
}

// origin says where the values being checked came from, so that a problem
// is reported where it can be fixed: a file's line, or the flag or
// environment variable that overrode it.
type origin struct {
	file     string
	root     *yaml.Node        // the file's YAML tree; nil without a file
	from     map[string]string // dotted key -> "--flag" or "VIGIL_…" that set it
	problems []*ConfigError    // values the file has of the wrong type
}

// planner gathers the problems of one configuration.
type planner struct {
	src  origin
	errs []*ConfigError
}

// bad reports a problem with the value at a dotted key
// ("services.0.probe.urls.1"), named as messages write it
// (services[0].probe.urls[1]), at its line or its flag.
func (pl *planner) bad(key, msg string) {
	for k := key; k != ""; k = parentKey(k) {
		if by := pl.src.from[k]; by != "" {
			if k != key { // an item of the list it set
				by += ": " + fieldPath(key)
			}
			pl.errs = append(pl.errs, &ConfigError{Msg: by + ": " + msg})
			return
		}
	}
	pl.errs = append(pl.errs, &ConfigError{File: pl.src.file, Line: lineOf(pl.src.root, key), Msg: fieldPath(key) + ": " + msg})
}

// parentKey is "a.b" for "a.b.c", "" for "a".
func parentKey(key string) string {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return ""
	}
	return key[:i]
}

// item reports the problems of a list item, each "field: what", or "what"
// for the item as a whole.
func (pl *planner) item(key string, problems []error) {
	for _, e := range problems {
		path, msg := key, e.Error()
		if field, rest, ok := strings.Cut(msg, ": "); ok && !strings.ContainsAny(field, " \"") {
			path, msg = key+"."+field, rest
		}
		pl.bad(path, msg)
	}
}

func (pl *planner) durRange(key string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		pl.bad(key, fmt.Sprintf("%s is outside %s to %s", d, fmtDur(lo), fmtDur(hi)))
	}
}

func (pl *planner) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		pl.bad(key, fmt.Sprintf("%d is outside %d to %d", n, lo, hi))
	}
}

// plan checks the configuration and converts it; the error joins every
// problem, in the order of their lines.
func (c Config) plan(src origin) (plan, error) {
	pl := &planner{src: src}
	p := plan{addr: c.Addr, data: c.Data, interval: c.Interval.D(), retention: c.Retention.D(), demo: c.Demo}
	pl.general(c, &p)
	pl.history(c, &p)
	pl.stream(c, &p)
	pl.access(c, &p)
	pl.host(c, &p)
	pl.services(c, &p)
	pl.fleet(c, &p)
	pl.cluster(c, &p)
	pl.rules(c, &p)
	pl.receivers(c, &p)
	// A value of the wrong type was left out of c: what the plan says of
	// its line is about the value that is not there.
	errs := src.problems
	for _, e := range pl.errs {
		if !slices.ContainsFunc(src.problems, func(pr *ConfigError) bool { return pr.File == e.File && pr.Line == e.Line }) {
			errs = append(errs, e)
		}
	}
	return p, sortedErrors(errs)
}

// history checks the tiers: each where it is written, then the list.
func (pl *planner) history(c Config, p *plan) {
	if !c.History.Enabled {
		return
	}
	if vm := c.History.VictoriaMetrics; vm.URL != "" {
		opts := history.VictoriaOptions{URL: vm.URL, BearerToken: vm.BearerToken, Labels: vm.Labels, MaxQueue: vm.MaxQueue,
			Flush: vm.Flush.D(), Timeout: vm.Timeout.D(), Interval: c.Interval.D()}
		for key, msg := range opts.Problems() {
			pl.bad("history.victoriametrics."+key, msg)
		}
		p.victoria = &opts
		return
	}
	tiers := make([]history.Tier, len(c.History.Tiers))
	for i, t := range c.History.Tiers {
		tiers[i] = history.Tier{Step: t.Step.D(), Keep: t.Keep.D()}
	}
	for _, err := range history.CheckTiers(tiers) {
		pl.bad("history.tiers", err.Error())
	}
	if len(tiers) > 0 && tiers[0].Step < c.Interval.D() {
		pl.bad("history.tiers.0.step", fmt.Sprintf("%s is shorter than the interval %s: a step would hold no sample", tiers[0].Step, c.Interval))
	}
	p.history = tiers
}

func (pl *planner) general(c Config, p *plan) {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		pl.bad("addr", fmt.Sprintf("%q is not host:port (for example 127.0.0.1:8080 or :8080)", c.Addr))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		pl.bad("addr", fmt.Sprintf("%q: the port must be a number from 0 to 65535", c.Addr))
	}
	if c.Data == "" {
		pl.bad("data", "must not be empty")
	}
	pl.durRange("interval", c.Interval, MinInterval, MaxInterval)
	if c.Retention.D() < c.Interval.D() {
		pl.bad("retention", fmt.Sprintf("%s is shorter than the interval %s", c.Retention, c.Interval))
	} else if c.Interval.D() > 0 && c.Retention.D()/c.Interval.D() > MaxPointsPerSeries {
		pl.bad("retention", fmt.Sprintf("%s at %s is more than a million points per series", c.Retention, c.Interval))
	}
	if err := p.logLevel.UnmarshalText([]byte(c.Log.Level)); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		pl.bad("log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		pl.bad("log.format", fmt.Sprintf("%q is not text or json", c.Log.Format))
	}
	p.logJSON = c.Log.Format == "json"
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		pl.bad("tls", "cert and key must be given together")
	}
	p.tlsCert, p.tlsKey = c.TLS.Cert, c.TLS.Key
}

func (pl *planner) stream(c Config, p *plan) {
	s := c.Stream
	if s.Queue < 1 {
		pl.bad("stream.queue", "must be at least 1")
	} else {
		pl.intRange("stream.queue", s.Queue, 1, MaxQueue)
	}
	switch {
	case s.Queue < 1 || s.Queue > MaxQueue:
		pl.intRange("stream.replay", s.Replay, 1, MaxReplay) // its own range; its tie to the queue waits for a queue that fits
	case s.Replay < s.Queue:
		pl.bad("stream.replay", fmt.Sprintf("%d is smaller than stream.queue %d; a dropped client could not resume", s.Replay, s.Queue))
	default:
		pl.intRange("stream.replay", s.Replay, s.Queue, MaxReplay)
	}
	if s.Heartbeat.D() < time.Second || s.Heartbeat.D() > 15*time.Second {
		pl.bad("stream.heartbeat", fmt.Sprintf("%s is outside 1s to 15s; proxies close streams idle longer", s.Heartbeat))
	}
	pl.durRange("stream.retry", s.Retry, 100*time.Millisecond, time.Minute)
	pl.durRange("stream.write_timeout", s.WriteTimeout, time.Second, 5*time.Minute)
	p.replay, p.queue = s.Replay, s.Queue
	p.heartbeat, p.retry, p.writeTimeout = s.Heartbeat.D(), s.Retry.D(), s.WriteTimeout.D()
}

// allowedHostRe is a DNS name, a "*." pattern or "*".
var allowedHostRe = regexp.MustCompile(`^(\*|(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?)$`)

// access checks who may reach vigil and what webhooks may reach.
func (pl *planner) access(c Config, p *plan) {
	for i, h := range c.Server.AllowedHosts {
		if !allowedHostRe.MatchString(h) {
			pl.bad("server.allowed_hosts."+strconv.Itoa(i), fmt.Sprintf("%q is not a host name, *.domain or *", h))
		}
	}
	for i, tok := range c.Auth.Tokens {
		if len(tok) < 16 || len(tok) > 4096 {
			pl.bad("auth.tokens."+strconv.Itoa(i), "a token must be 16 to 4096 characters")
		}
	}
	p.allowedHosts, p.tokens = c.Server.AllowedHosts, c.Auth.Tokens
	for i, n := range c.Alerts.AllowNetworks {
		prefix, err := netip.ParsePrefix(n)
		if err != nil {
			pl.bad("alerts.allow_networks."+strconv.Itoa(i), fmt.Sprintf("%q is not a CIDR such as 127.0.0.0/8 or ::1/128", n))
			continue
		}
		p.allowNets = append(p.allowNets, prefix.Masked())
	}
	if u := c.Alerts.DashboardURL; u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Host == "" {
			pl.bad("alerts.dashboard_url", fmt.Sprintf("%q is not a URL", u))
		}
	}
	p.dashboardURL = c.Alerts.DashboardURL
	if s := c.Alerts.PushSubject; s != "" && !strings.HasPrefix(s, "mailto:") && !strings.HasPrefix(s, "https://") {
		pl.bad("alerts.push_subject", fmt.Sprintf("%q: want a mailto: or https: address, such as mailto:ops@example.com", s))
	}
	p.pushSubject = c.Alerts.PushSubject
}

func (pl *planner) host(c Config, p *plan) {
	h := c.Host
	if h.Timeout.D() > c.Interval.D() {
		pl.bad("host.timeout", fmt.Sprintf("%s is longer than the interval %s", h.Timeout, c.Interval))
	}
	pl.durRange("host.fs_timeout", h.FSTimeout, time.Millisecond, time.Minute)
	if strings.ContainsAny(h.Name, "/ \t\n") || stream.Readable(h.Name) != h.Name {
		pl.bad("host.name", fmt.Sprintf("%q must not contain slashes, spaces, control or bidirectional formatting characters", h.Name))
	}
	p.hostTimeout = h.Timeout.D()
	if h.Enabled {
		p.host = &collector.HostOptions{Name: h.Name, ExcludeFSTypes: h.ExcludeFSTypes, ExcludeMounts: h.ExcludeMounts,
			ExcludeInterfaces: h.ExcludeInterfaces, FSTimeout: h.FSTimeout.D()}
	}
}

func (pl *planner) services(c Config, p *plan) {
	seen := map[string]bool{}
	for i, sc := range c.Services {
		key := "services." + strconv.Itoa(i)
		if seen[sc.Name] {
			pl.bad(key+".name", fmt.Sprintf("%q is declared twice", sc.Name))
		}
		seen[sc.Name] = true
		o, problems := sc.options(c.Interval.D())
		pl.item(key, problems)
		p.services = append(p.services, o)
	}
}

// rules are the configured rules, or the host defaults without any (and,
// with the demo, a rule its incidents fire).
func (pl *planner) rules(c Config, p *plan) {
	if c.Alerts.Rules == nil {
		p.rules = alerts.DefaultRules()
		if c.Demo {
			p.rules = append(p.rules, demoRule())
		}
		pl.agentDown(p, false)
		for i := range p.rules {
			if err := p.rules[i].Validate(); err != nil {
				pl.bad("alerts.rules", fmt.Sprintf("default rule %s: %v", p.rules[i].Name, err))
			}
		}
		return
	}
	names := map[string]bool{}
	for i, rc := range *c.Alerts.Rules {
		key := "alerts.rules." + strconv.Itoa(i)
		if names[rc.Name] {
			pl.bad(key+".name", fmt.Sprintf("rule %q is declared twice", rc.Name))
		}
		names[rc.Name] = true
		if rc.Window.D() > c.Retention.D() {
			pl.bad(key+".window", fmt.Sprintf("%s is longer than the retention %s: the ring holds no more", rc.Window, c.Retention))
		}
		r, err := rc.rule()
		if err != nil {
			pl.item(key, unjoin(err))
		}
		p.rules = append(p.rules, r)
	}
	pl.agentDown(p, names["AgentDown"] || len(*c.Alerts.Rules) == 0) // [] turns alerting off
}

// agentDown adds the AgentDown rule to a hub's rules, unless turned off
// or written out in the file.
func (pl *planner) agentDown(p *plan, declared bool) {
	replica := p.cluster != nil && !p.cluster.agent // agents may push into its stream
	if declared || p.agentDownFor <= 0 || (len(p.upstreams) == 0 && p.upstreamsFile == "" && !replica) {
		return
	}
	r := alerts.AgentDownRule(p.agentDownFor)
	if r.Validate() == nil { // a bad agent_down_for is reported where it is read
		p.rules = append(p.rules, r)
	}
}

func (pl *planner) receivers(c Config, p *plan) {
	names := map[string]bool{}
	for i, rc := range c.Alerts.Receivers {
		key := "alerts.receivers." + strconv.Itoa(i)
		if names[rc.Name] {
			pl.bad(key+".name", fmt.Sprintf("receiver %q is declared twice", rc.Name))
		}
		names[rc.Name] = true
		r := rc.receiver()
		pl.item(key, r.Validate())
		for _, field := range rc.misplaced() {
			pl.bad(key+"."+field, fmt.Sprintf("a receiver of type %s does not take %s", cmp.Or(rc.Type, alerts.TypeWebhook), field))
		}
		p.receivers = append(p.receivers, r)
	}
}

// demoRule watches the demo services' errors, which their incidents
// raise to 15% and more for a minute or so.
func demoRule() alerts.Rule {
	clear := 8.0
	return alerts.Rule{Name: "DemoServiceErrors", Source: "service/*", Metric: "http.error_percent", Op: ">", Threshold: 10,
		Clear: &clear, For: 15 * time.Second, Severity: "warning", Labels: map[string]string{"demo": "true"},
		Annotations: map[string]string{"summary": `{{.Source}} errors at {{printf "%.1f" .Value}}% (over {{.Threshold}}%)`}}
}
