package main

import (
	"crypto/tls"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"

	"vigil/alerts"
	"vigil/collector"
	"vigil/stream"
)

// fleet checks and converts what makes this vigil a hub: the upstreams,
// the file of more of them, the defaults they share; and who may read.
func (pl *planner) fleet(c Config, p *plan) {
	for i, tok := range c.Auth.ReadTokens {
		if len(tok) < 16 || len(tok) > 4096 {
			pl.bad("auth.read_tokens."+strconv.Itoa(i), "a token must be 16 to 4096 characters")
		}
	}
	p.readTokens = c.Auth.ReadTokens
	pl.durRange("alerts.agent_down_for", c.Alerts.AgentDownFor, 0, alerts.MaxFor)
	p.agentDownFor = c.Alerts.AgentDownFor.D()

	defaults, ok := pl.upstreamSettings("upstream_defaults", c.UpstreamDefaults)
	p.fileDefaults = defaults
	urls, names := map[string]bool{}, map[string]bool{}
	for i, uc := range c.Upstreams {
		key := "upstreams." + strconv.Itoa(i)
		// Its own settings are checked here; what it takes from
		// upstream_defaults was checked (and reported) once, above.
		o, good := pl.upstreamSettings(key, uc.UpstreamSettings)
		o = inherit(o, uc.UpstreamSettings, defaults)
		u, err := collector.TargetURL(uc.URL, "http")
		switch {
		case uc.URL == "":
			pl.bad(key+".url", "required")
		case err != nil:
			pl.bad(key+".url", err.Error())
		case urls[u]:
			pl.bad(key+".url", fmt.Sprintf("%s is followed twice", collector.RedactURL(u)))
		}
		urls[u] = true
		n := uc.Name
		if n != "" && (strings.ContainsAny(n, "/ \t\n") || stream.Readable(n) != n || len(n) > stream.MaxTextBytes) {
			pl.bad(key+".name", fmt.Sprintf("%q must not contain slashes, spaces, control or bidirectional formatting characters", stream.Clip(n, 64)))
		}
		if err == nil { // the name it goes by: its own, or its URL's host:port
			n = collector.UpstreamNames([]collector.UpstreamOptions{{URL: u, Name: n}})[0]
		}
		if names[n] {
			pl.bad(key+".name", fmt.Sprintf("%q names two upstreams (an upstream without a name goes by its URL's host:port)", n))
		}
		names[n] = true
		o.URL, o.Name = u, uc.Name
		if good && ok && err == nil {
			p.upstreams = append(p.upstreams, o)
		}
	}
	if f := c.UpstreamsFile; f != "" {
		b, err := os.ReadFile(f)
		if err == nil {
			_, err = collector.FileTargets(b, defaults)
		}
		if err != nil {
			pl.bad("upstreams_file", fmt.Sprintf("%s: %v", f, err))
		}
		p.upstreamsFile = f
	}
}

// inherit is an upstream's options with what its settings s leave unset
// taken from the defaults d: the token and TLS as a whole, labels merged
// (its own win).
func inherit(o collector.UpstreamOptions, s UpstreamSettings, d collector.UpstreamOptions) collector.UpstreamOptions {
	if s.Token == "" && s.TokenFile == "" {
		o.Token = d.Token
	}
	if s.TLS == (TLSClientConfig{}) {
		o.TLS = d.TLS
	}
	labels := maps.Clone(d.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, s.Labels)
	o.Labels = labels
	return o
}

// upstreamSettings checks and converts an upstream's labels, token and
// TLS; ok is false when something is wrong (and reported).
func (pl *planner) upstreamSettings(key string, s UpstreamSettings) (o collector.UpstreamOptions, ok bool) {
	ok = true
	bad := func(k, msg string) { pl.bad(key+"."+k, msg); ok = false }
	for name, v := range s.Labels {
		if err := collector.CheckLabel(name, v); err != nil {
			bad("labels", err.Error())
		}
	}
	o.Labels = s.Labels
	o.Token = s.Token
	if s.TokenFile != "" {
		if s.Token != "" {
			bad("token_file", "give token or token_file, not both")
		}
		b, err := os.ReadFile(s.TokenFile)
		if err != nil {
			bad("token_file", err.Error())
		}
		o.Token = strings.TrimSpace(string(b))
	}
	if o.Token != "" && (len(o.Token) < 16 || len(o.Token) > 4096) {
		bad("token", "a token must be 16 to 4096 characters")
	}
	cfg, err := s.TLS.config()
	if err != nil {
		bad("tls", err.Error())
	}
	o.TLS = cfg
	return o, ok
}

// config builds the TLS configuration; nil when nothing is set (the
// system's roots).
func (t TLSClientConfig) config() (*tls.Config, error) {
	if t == (TLSClientConfig{}) {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := alerts.CAPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %v", err)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("cert_file and key_file must be given together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
