package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"vigil/alerts"
	"vigil/cluster"
	"vigil/collector"
	"vigil/dashboard"
	"vigil/history"
	"vigil/internal/duration"
	"vigil/internal/yamlmsg"
	"vigil/stream"
)

// Config is vigil's whole configuration, read once at start from embedded
// defaults, then a YAML file (--config), then VIGIL_* environment
// variables, then flags; each overrides the one before.
type Config struct {
	Addr      string   `yaml:"addr"`      // listen address
	Data      string   `yaml:"data"`      // state directory
	Interval  Duration `yaml:"interval"`  // sampling interval
	Retention Duration `yaml:"retention"` // history kept per series
	Log       struct {
		Level  string `yaml:"level"`  // debug, info, warn, error
		Format string `yaml:"format"` // text or json
	} `yaml:"log"`
	TLS struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
	} `yaml:"tls"`
	Stream struct {
		Replay       int      `yaml:"replay"`        // events kept for resuming clients
		Queue        int      `yaml:"queue"`         // events a client may fall behind before it is dropped
		Heartbeat    Duration `yaml:"heartbeat"`     // comment sent to idle streams
		Retry        Duration `yaml:"retry"`         // reconnect delay hint; clients get up to twice this
		WriteTimeout Duration `yaml:"write_timeout"` // deadline per write to a client
	} `yaml:"stream"`
	Alerts struct {
		// Rules replace the default host rules when given; an empty list
		// turns alerting off.
		Rules *[]RuleConfig `yaml:"rules"`
		// Receivers get webhooks for alert transitions.
		Receivers []ReceiverConfig `yaml:"receivers"`
		// AllowNetworks are CIDRs webhook targets may be in although they
		// are loopback, private or link-local (a receiver on this machine).
		AllowNetworks []string `yaml:"allow_networks"`
		// DashboardURL is the base of links in webhook payloads; by default
		// http:// and the listen address.
		DashboardURL string `yaml:"dashboard_url"`
		// PushSubject tells the push services who sends vigil's web pushes
		// (VAPID's subject): a mailto: or https: address. Default: the
		// dashboard_url when it is https.
		PushSubject string `yaml:"push_subject"`
		// AgentDownFor is how long an upstream stays unreachable before
		// the AgentDown alert fires; 0s: no such alert.
		AgentDownFor Duration `yaml:"agent_down_for"`
	} `yaml:"alerts"`
	Server struct {
		// AllowedHosts are the names vigil answers to (in the Host
		// header) besides IP addresses and loopback names, against DNS
		// rebinding; "*.example.com" matches subdomains. On a loopback
		// address only loopback names are accepted without them;
		// elsewhere, when empty, any name is.
		AllowedHosts []string `yaml:"allowed_hosts"`
	} `yaml:"server"`
	Auth struct {
		// Tokens, once set, are required (Authorization: Bearer) for every
		// request that changes something.
		Tokens []string `yaml:"tokens"`
		// ReadTokens, once set, are required to read: the stream, the
		// pages and the read API (a write token reads too). A hub sends
		// one to its agents.
		ReadTokens []string `yaml:"read_tokens"`
	} `yaml:"auth"`
	// History keeps every series past the retention, rolled up into
	// tiers of steps (min, mean and max of each), under data.
	History struct {
		Enabled bool         `yaml:"enabled"`
		Tiers   []TierConfig `yaml:"tiers"` // finest first
		// VictoriaMetrics, when its url is set, keeps the history instead
		// of the tiers: every sample is pushed to it, and the charts read
		// from it.
		VictoriaMetrics VictoriaConfig `yaml:"victoriametrics"`
	} `yaml:"history"`
	// Upstreams are the agents — other vigils — this one follows, which
	// makes it a hub.
	Upstreams []UpstreamConfig `yaml:"upstreams"`
	// UpstreamsFile lists more upstreams in Prometheus' file_sd format;
	// it is read again when it changes.
	UpstreamsFile string `yaml:"upstreams_file"`
	// UpstreamDefaults apply to every upstream; an upstream's own
	// settings win.
	UpstreamDefaults UpstreamSettings `yaml:"upstream_defaults"`
	Demo             bool             `yaml:"demo"` // watch built-in demo services
	Cluster          ClusterConfig    `yaml:"cluster"`
	Services         []ServiceConfig  `yaml:"services"`
	Host             struct {
		Enabled           bool     `yaml:"enabled"`
		Name              string   `yaml:"name"`    // defaults to the hostname
		Timeout           Duration `yaml:"timeout"` // per collect; defaults to the interval
		FSTimeout         Duration `yaml:"fs_timeout"`
		ExcludeFSTypes    []string `yaml:"exclude_fs_types"`
		ExcludeMounts     []string `yaml:"exclude_mounts"`
		ExcludeInterfaces []string `yaml:"exclude_interfaces"`
	} `yaml:"host"`
}

// TierConfig is one tier of the history: its step and how long it keeps
// them ("24h", "7d", "90d").
type TierConfig struct {
	Step Duration `yaml:"step"`
	Keep Duration `yaml:"keep"`
}

// ClusterConfig makes vigil one replica of several on NATS JetStream.
type ClusterConfig struct {
	Name     string   `yaml:"name"`      // this replica's name on what it publishes; the hostname by default
	Role     string   `yaml:"role"`      // replica (default) or agent: pushes its events into NATS, serves its own stream
	LeaseTTL Duration `yaml:"lease_ttl"` // the alert lease: a replica that dies is taken over from after this
	// AgentIdle: an agent that pushes and is silent this long is down.
	AgentIdle Duration   `yaml:"agent_idle"`
	NATS      NATSConfig `yaml:"nats"`
}

// NATSConfig is where the replicas meet: without urls, nothing changes.
type NATSConfig struct {
	URLs      []string        `yaml:"urls"`       // nats://host:4222, tls://…; several servers of one cluster
	CredsFile string          `yaml:"creds_file"` // a .creds file (JWT and NKey)
	Token     string          `yaml:"token"`
	TokenFile string          `yaml:"token_file"`
	User      string          `yaml:"user"`
	Password  string          `yaml:"password"`
	TLS       TLSClientConfig `yaml:"tls"`
	Stream    string          `yaml:"stream"`    // the JetStream stream of events
	Subject   string          `yaml:"subject"`   // its subjects: <subject>.<type>
	MaxAge    Duration        `yaml:"max_age"`   // events kept by age
	MaxBytes  int64           `yaml:"max_bytes"` // and by size
	Replicas  int             `yaml:"replicas"`  // copies of the stream in the NATS cluster: 1, 3 or 5
}

// VictoriaConfig is the VictoriaMetrics that keeps the history.
type VictoriaConfig struct {
	URL         string            `yaml:"url"`          // its base: http://127.0.0.1:8428; user:password@ for basic auth
	BearerToken string            `yaml:"bearer_token"` // or a token
	Labels      map[string]string `yaml:"labels"`       // added to every series, for example vigil: hub-fra
	MaxQueue    int               `yaml:"max_queue"`    // points held while it is unreachable
	Flush       Duration          `yaml:"flush"`        // how often the queue is sent
	Timeout     Duration          `yaml:"timeout"`      // per request
}

// UpstreamConfig is one agent a hub follows.
type UpstreamConfig struct {
	URL              string `yaml:"url"`  // http(s)://host:port, or host:port
	Name             string `yaml:"name"` // upstream/<name>; by default the URL's host
	UpstreamSettings `yaml:",inline"`
}

// UpstreamSettings are an upstream's access and labels; upstream_defaults
// has them for every upstream.
type UpstreamSettings struct {
	Labels    map[string]string `yaml:"labels"`
	Token     string            `yaml:"token"`      // the agent's read token
	TokenFile string            `yaml:"token_file"` // or a file that holds it
	TLS       TLSClientConfig   `yaml:"tls"`
}

// TLSClientConfig is how a hub checks an agent's certificate, and its own
// for an agent that asks for one.
type TLSClientConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// ServiceConfig declares one service to probe, scrape, or both.
type ServiceConfig struct {
	Name     string        `yaml:"name"`
	Interval Duration      `yaml:"interval"` // defaults to the global interval
	Window   Duration      `yaml:"window"`   // rolling window for rates and percentiles
	Probe    *ProbeConfig  `yaml:"probe"`
	Scrape   *ScrapeConfig `yaml:"scrape"`
}

// ProbeConfig checks a service from outside.
type ProbeConfig struct {
	URL          string   `yaml:"url"`
	URLs         []string `yaml:"urls"`
	Method       string   `yaml:"method"`
	Timeout      Duration `yaml:"timeout"`
	ExpectStatus []int    `yaml:"expect_status"`
	BodyRegex    string   `yaml:"body_regex"`
	JSONField    string   `yaml:"json_field"`
	JSONEquals   string   `yaml:"json_equals"`
}

// ScrapeConfig reads a service's own metrics.
type ScrapeConfig struct {
	URL      string   `yaml:"url"`
	URLs     []string `yaml:"urls"`
	Requests string   `yaml:"requests"`
	Errors   string   `yaml:"errors"`
	Latency  string   `yaml:"latency"`
	Timeout  Duration `yaml:"timeout"`
	// FollowRedirects follows redirects; without it one is a failure.
	FollowRedirects bool `yaml:"follow_redirects"`
	// MaxSeries caps the series one scrape may hold; nil is
	// collector.DefaultMaxSeries.
	MaxSeries *int `yaml:"max_series"`
}

// ReceiverConfig is a receiver written in the config file: a webhook,
// or a service's (type slack, teams, discord, telegram, ntfy, pagerduty).
type ReceiverConfig struct {
	Name       string   `yaml:"name"`
	Type       string   `yaml:"type"` // webhook (default), slack, teams, discord, telegram, ntfy, pagerduty, email, mqtt
	URL        string   `yaml:"url"`
	Secret     string   `yaml:"secret"`      // a webhook's whsec_…; never logged or shown
	Token      string   `yaml:"token"`       // a Telegram bot's token, or an ntfy access token
	RoutingKey string   `yaml:"routing_key"` // a PagerDuty integration key
	ChatID     string   `yaml:"chat_id"`     // Telegram's chat id or @channel
	From       string   `yaml:"from"`        // email: the sender
	To         []string `yaml:"to"`          // email: the recipients
	Username   string   `yaml:"username"`    // email: the relay's user
	Password   string   `yaml:"password"`    // email: the relay's password
	RequireTLS *bool    `yaml:"require_tls"` // email: STARTTLS or no mail (default true)
	CAFile     string   `yaml:"ca_file"`     // email: certificates to trust for the relay
	Format     string   `yaml:"format"`      // a webhook's: standard (default) or alertmanager
	Template   string   `yaml:"template"`    // the body, instead of the type's own (Go text/template)
	Match      []string `yaml:"match"`       // the alerts it takes: severity="critical", team=~"ops|db"
	// RepeatInterval sends a firing alert's webhook again this often.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// GroupWait holds firing alerts this long, to send those that fired
	// together (of the same group_by labels) as one message.
	GroupWait Duration `yaml:"group_wait"`
	GroupBy   []string `yaml:"group_by"`
	// Samples, for an MQTT receiver, publishes every sample too, at QoS 0.
	Samples bool     `yaml:"samples"`
	Events  []string `yaml:"events"` // default alert.*
}

// receiver is rc as package alerts takes it; alerts validates it and
// saves it. Each type's credential is its Secret.
func (rc ReceiverConfig) receiver() alerts.ConfiguredReceiver {
	secret := rc.Secret
	switch rc.Type {
	case alerts.TypeTelegram, alerts.TypeNtfy:
		secret = rc.Token
	case alerts.TypePagerDuty:
		secret = rc.RoutingKey
	case alerts.TypeEmail, alerts.TypeMQTT:
		secret = rc.Password
	}
	return alerts.ConfiguredReceiver{Name: rc.Name, Type: rc.Type, URL: rc.URL, Secret: secret, ChatID: rc.ChatID, Format: rc.Format, Events: rc.Events,
		From: rc.From, To: rc.To, Username: rc.Username, NoTLS: rc.RequireTLS != nil && !*rc.RequireTLS, CAFile: rc.CAFile, Template: rc.Template, Match: rc.Match, RepeatInterval: time.Duration(rc.RepeatInterval),
		GroupWait: time.Duration(rc.GroupWait), GroupBy: rc.GroupBy, Samples: rc.Samples}
}

// misplaced names the fields rc sets that its type does not take.
func (rc ReceiverConfig) misplaced() []string {
	typ := cmp.Or(rc.Type, alerts.TypeWebhook)
	var out []string
	email := []string{alerts.TypeEmail}
	mqttOrEmail := []string{alerts.TypeEmail, alerts.TypeMQTT}
	for field, set := range map[string]bool{"secret": rc.Secret != "", "token": rc.Token != "", "routing_key": rc.RoutingKey != "", "chat_id": rc.ChatID != "",
		"from": rc.From != "", "to": len(rc.To) > 0, "username": rc.Username != "", "password": rc.Password != "", "require_tls": rc.RequireTLS != nil, "ca_file": rc.CAFile != "",
		"samples": rc.Samples} {
		takes := map[string][]string{"secret": {alerts.TypeWebhook}, "token": {alerts.TypeTelegram, alerts.TypeNtfy},
			"routing_key": {alerts.TypePagerDuty}, "chat_id": {alerts.TypeTelegram},
			"from": email, "to": email, "username": mqttOrEmail, "password": mqttOrEmail, "require_tls": email, "ca_file": mqttOrEmail,
			"samples": {alerts.TypeMQTT}}[field]
		if set && !slices.Contains(takes, typ) {
			out = append(out, field)
		}
	}
	slices.Sort(out)
	return out
}

// RuleConfig is an alert rule as written in the config file.
type RuleConfig struct {
	Name          string            `yaml:"name"`
	Source        string            `yaml:"source"`
	Metric        string            `yaml:"metric"`
	Op            string            `yaml:"op"`
	Threshold     *float64          `yaml:"threshold"`
	Clear         *float64          `yaml:"clear"`
	For           Duration          `yaml:"for"`
	KeepFiringFor Duration          `yaml:"keep_firing_for"`
	Aggregate     string            `yaml:"aggregate"`
	Window        Duration          `yaml:"window"`
	NoData        Duration          `yaml:"no_data"`
	Severity      string            `yaml:"severity"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func (rc RuleConfig) rule() (alerts.Rule, error) {
	r := alerts.Rule{Name: rc.Name, Source: rc.Source, Metric: rc.Metric, Op: rc.Op, Clear: rc.Clear,
		For: rc.For.D(), KeepFiringFor: rc.KeepFiringFor.D(), Aggregate: rc.Aggregate, Window: rc.Window.D(),
		NoData: rc.NoData.D(), Severity: rc.Severity, Labels: rc.Labels, Annotations: rc.Annotations}
	if rc.Threshold == nil {
		return r, errors.New("threshold: required")
	}
	r.Threshold = *rc.Threshold
	return r, r.Validate()
}

var serviceNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// options turns a service's configuration into collector options, or
// says what is wrong with it: each problem "field: what".
func (sc ServiceConfig) options(interval time.Duration) (collector.ServiceOptions, []error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	o := collector.ServiceOptions{Name: sc.Name, Interval: sc.Interval.D(), Window: sc.Window.D()}
	if o.Interval == 0 {
		o.Interval = interval
	}
	if !serviceNameRe.MatchString(sc.Name) {
		bad("name: %q must be 1 to 63 letters, digits, '.', '_' or '-'", sc.Name)
	}
	if o.Interval < MinInterval || o.Interval > MaxInterval {
		bad("interval: %s is outside %s to %s", o.Interval, fmtDur(MinInterval), fmtDur(MaxInterval))
	}
	if w := sc.Window.D(); w != 0 && (w < 2*o.Interval || w > MaxServiceWindow) {
		bad("window: %s is outside %s (two intervals) to %s", w, 2*o.Interval, fmtDur(MaxServiceWindow))
	}
	if sc.Probe == nil && sc.Scrape == nil {
		bad("needs a probe, a scrape or both")
	}
	if sc.Probe != nil {
		o.Probe = sc.Probe.options(o.Interval, bad)
	}
	if sc.Scrape != nil {
		o.Scrape = sc.Scrape.options(o.Interval, bad)
	}
	return o, errs
}

// problem reports what is wrong with a field: "field: what".
type problem func(format string, a ...any)

func (pc ProbeConfig) options(interval time.Duration, bad problem) *collector.ProbeOptions {
	po := &collector.ProbeOptions{URLs: targets("probe", pc.URL, pc.URLs, bad), Method: strings.ToUpper(pc.Method), Timeout: pc.Timeout.D(),
		ExpectStatus: pc.ExpectStatus, JSONField: pc.JSONField, JSONEquals: pc.JSONEquals}
	checkTimeout("probe", pc.Timeout, interval, bad)
	if pc.BodyRegex != "" {
		re, err := regexp.Compile(pc.BodyRegex)
		if err != nil {
			bad("probe.body_regex: %v", err)
		}
		po.BodyRegex = re
	}
	for i, c := range pc.ExpectStatus {
		if c < 100 || c > 599 {
			bad("probe.expect_status.%d: %d is not an HTTP status", i, c)
		}
	}
	if po.Method != "" && po.Method != "GET" && po.Method != "HEAD" && po.Method != "POST" {
		bad("probe.method: %q: want GET, HEAD or POST", pc.Method)
	}
	if pc.JSONEquals != "" && pc.JSONField == "" {
		bad("probe.json_equals: needs json_field")
	}
	return po
}

// maxSeriesLimit bounds scrape.max_series.
const maxSeriesLimit = 1_000_000

func (sc ScrapeConfig) options(interval time.Duration, bad problem) *collector.ScrapeOptions {
	so := &collector.ScrapeOptions{URLs: targets("scrape", sc.URL, sc.URLs, bad), Requests: sc.Requests, Errors: sc.Errors,
		Latency: sc.Latency, Timeout: sc.Timeout.D(), FollowRedirects: sc.FollowRedirects}
	checkTimeout("scrape", sc.Timeout, interval, bad)
	if n := sc.MaxSeries; n != nil {
		if *n < 1 || *n > maxSeriesLimit {
			bad("scrape.max_series: %d is not between 1 and %d", *n, maxSeriesLimit)
		}
		so.MaxSeries = *n
	}
	if sc.Errors != "" {
		if _, err := collector.ParseSelector(sc.Errors); err != nil {
			bad("scrape.errors: %v", err)
		}
	}
	return so
}

// targets are a probe's or a scrape's URLs: url, then urls.
func targets(what, one string, many []string, bad problem) []string {
	if one == "" && len(many) == 0 {
		bad("%s: needs url or urls", what)
	}
	check := func(field, u string) {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("%s: %q is not an http:// or https:// URL", field, collector.RedactURL(u))
		}
	}
	if one != "" {
		check(what+".url", one)
	}
	for i, u := range many {
		check(what+".urls."+strconv.Itoa(i), u)
	}
	if one != "" {
		return append([]string{one}, many...)
	}
	return many
}

func checkTimeout(what string, d Duration, interval time.Duration, bad problem) {
	if d.D() > interval {
		bad("%s.timeout: %s is longer than the interval %s", what, d, interval)
	}
}

// Bounds of numeric options; vigil validate refuses values outside them.
const (
	MinInterval        = 100 * time.Millisecond
	MaxInterval        = time.Hour
	MaxPointsPerSeries = 1_000_000 // retention / interval
	MaxQueue           = 16384     // stream.queue: a subscriber's queue is allocated when it connects
	MaxReplay          = 1_000_000 // stream.replay
	MaxServiceWindow   = time.Hour // a service's window: what it keeps per instance grows with it
)

// fmtDur writes a bound as it would be written in the file: 1h, not 1h0m0s.
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// Defaults.
const (
	DefaultAddr      = "127.0.0.1:8080"
	DefaultData      = "./vigil-data"
	DefaultRetention = 10 * time.Minute
)

func defaultConfig() Config {
	var c Config
	c.Addr = DefaultAddr
	c.Data = DefaultData
	c.Interval = Duration(collector.DefaultInterval)
	c.Retention = Duration(DefaultRetention)
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Stream.Replay = stream.DefaultReplay
	c.Stream.Queue = stream.DefaultQueue
	c.Stream.Heartbeat = Duration(stream.DefaultHeartbeat)
	c.Stream.Retry = Duration(dashboard.DefaultRetry)
	c.Stream.WriteTimeout = Duration(dashboard.DefaultWriteTimeout)
	c.Alerts.AgentDownFor = Duration(alerts.DefaultAgentDownFor)
	c.Cluster.NATS.Stream = cluster.DefaultStream
	c.Cluster.NATS.Subject = cluster.DefaultSubject
	c.Cluster.NATS.MaxAge = Duration(cluster.DefaultMaxAge)
	c.Cluster.NATS.MaxBytes = cluster.DefaultMaxBytes
	c.Cluster.NATS.Replicas = 1
	c.Cluster.LeaseTTL = Duration(cluster.DefaultLeaseTTL)
	c.Cluster.Role = "replica"
	c.Cluster.AgentIdle = Duration(cluster.DefaultAgentIdle)
	c.History.Enabled = true
	for _, t := range history.DefaultTiers {
		c.History.Tiers = append(c.History.Tiers, TierConfig{Step: Duration(t.Step), Keep: Duration(t.Keep)})
	}
	c.Host.Enabled = true
	c.Host.FSTimeout = Duration(collector.DefaultFSTimeout)
	c.Host.ExcludeFSTypes = collector.DefaultExcludeFSTypes
	c.Host.ExcludeMounts = collector.DefaultExcludeMounts
	c.Host.ExcludeInterfaces = collector.DefaultExcludeInterfaces
	return c
}

// Duration is a time.Duration written as "1s", "500ms" or "10m".
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on and report every problem
	// in the file, not just the first.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as 1s or 5m", n.Line)}}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := duration.Parse(s) // days and weeks too, as Prometheus writes them: 7d, 1w, 1d12h
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("bad duration %q: give a unit, such as %ss", s, s)
		}
		return 0, fmt.Errorf("bad duration %q: want a number and a unit such as 500ms, 1s, 5m or 7d", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	return v, nil
}

// A ConfigError is one problem in a config, with where it is.
type ConfigError struct {
	File string // "" for flags and environment
	Line int    // 0 when unknown
	Msg  string
}

func (e *ConfigError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	}
	return e.Msg
}

// loadFile reads a YAML config over cfg and returns its tree, which the
// plan uses to point at lines. A file that cannot be read or parsed is an
// error; values of the wrong type are problems, each with its file and
// line, and the rest of the file is still read so that the plan can report
// every other problem beside them.
func loadFile(path string, cfg *Config) (*yaml.Node, []*ConfigError, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, &ConfigError{File: path, Msg: fmt.Sprintf("read: %v", errors.Unwrap(err))}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, sortedErrors(yamlErrors(path, err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(cfg)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF): // EOF: an empty file
		return &root, nil, nil
	case errors.As(err, &te):
		return &root, yamlErrors(path, err), nil
	}
	return nil, nil, sortedErrors(yamlErrors(path, err))
}

// yamlErrors turns yaml.v3's messages into "file:line: what".
func yamlErrors(path string, err error) []*ConfigError {
	var errs []*ConfigError
	for _, p := range yamlmsg.Problems(err) {
		ce := &ConfigError{File: path, Line: p.Line, Msg: p.Msg}
		if p.Parser {
			ce.Line++ // counted from 0
		}
		shape, known := map[string]string{"seq": "list", "map": "mapping"}[p.Tag]
		switch {
		case p.Kind == yamlmsg.UnknownKey:
			ce.Msg = "unknown key " + strconv.Quote(p.Key)
		case p.Kind == yamlmsg.BadValue:
			ce.Msg = fmt.Sprintf("bad value %q: want %s", p.Value, yamlKind(p.GoType))
		case p.Kind == yamlmsg.BadShape && known:
			ce.Msg = fmt.Sprintf("a %s here: want %s", shape, yamlKind(p.GoType))
		}
		errs = append(errs, ce)
	}
	return errs
}

func yamlKind(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	switch {
	case goType == "main.Config":
		return "the settings as a mapping (addr: …, services: …)"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "string":
		return "a string"
	}
	return "a mapping"
}

// sortedErrors joins config errors in the order of their lines.
func sortedErrors(errs []*ConfigError) error {
	slices.SortStableFunc(errs, func(a, b *ConfigError) int { return a.Line - b.Line })
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// fieldPath writes a dotted key as messages name it: services.0.probe
// is services[0].probe.
func fieldPath(key string) string {
	var b strings.Builder
	for i, part := range strings.Split(key, ".") {
		if _, err := strconv.Atoi(part); err == nil && i > 0 {
			b.WriteString("[" + part + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// lineOf finds the line of a dotted key in a YAML tree, or 0.
func lineOf(root *yaml.Node, key string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range strings.Split(key, ".") {
		if n.Kind == yaml.SequenceNode {
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}
