package main

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"vigil/cluster"
	"vigil/collector"
)

// clusterPlan is this vigil as one replica of several on NATS JetStream.
type clusterPlan struct {
	agent     bool          // pushes its events into NATS, reads none
	agentIdle time.Duration // a pushing agent silent this long is down
	conn      cluster.ConnOptions
	log       cluster.LogOptions
	lease     cluster.LeaseOptions
}

// JetStream names: a stream's, and a subject's tokens.
var (
	streamNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	subjectRe    = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// cluster checks and converts cluster: with no NATS URL, nothing.
func (pl *planner) cluster(c Config, p *plan) {
	n := c.Cluster.NATS
	if len(n.URLs) == 0 {
		if c.Cluster.Role == "agent" {
			pl.bad("cluster.role", "an agent pushes into NATS: it needs cluster.nats.urls (or --nats)")
		}
		if c.Cluster.Name != "" {
			pl.bad("cluster.name", "names a replica on NATS: it needs cluster.nats.urls (or --nats); a vigil alone names its host with host.name")
		}
		return
	}
	cp := &clusterPlan{}
	ok := true
	bad := func(key, msg string) { pl.bad("cluster."+key, msg); ok = false }
	for i, raw := range n.URLs {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			bad("nats.urls."+strconv.Itoa(i), fmt.Sprintf("%q is not a URL", collector.RedactURL(raw)))
		case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
			bad("nats.urls."+strconv.Itoa(i), fmt.Sprintf("%q: want nats://, tls://, ws:// or wss:// and a host, as nats://127.0.0.1:4222", collector.RedactURL(raw)))
		case u.Hostname() == "":
			bad("nats.urls."+strconv.Itoa(i), fmt.Sprintf("%q has no host", collector.RedactURL(raw)))
		}
	}
	cp.conn.URLs = n.URLs
	ways := 0
	for _, set := range []bool{n.CredsFile != "", n.Token != "" || n.TokenFile != "", n.User != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		bad("nats", "give one of creds_file, token (or token_file), user and password")
	}
	if n.CredsFile != "" {
		if _, err := os.Stat(n.CredsFile); err != nil {
			bad("nats.creds_file", err.Error())
		}
		cp.conn.CredsFile = n.CredsFile
	}
	cp.conn.Token = n.Token
	if n.TokenFile != "" {
		if n.Token != "" {
			bad("nats.token_file", "give token or token_file, not both")
		}
		b, err := os.ReadFile(n.TokenFile)
		if err != nil {
			bad("nats.token_file", err.Error())
		}
		cp.conn.Token = strings.TrimSpace(string(b))
	}
	if n.User == "" && n.Password != "" {
		bad("nats.password", "a password needs a user")
	}
	cp.conn.User, cp.conn.Password = n.User, n.Password
	tlsCfg, err := n.TLS.config()
	if err != nil {
		bad("nats.tls", err.Error())
	}
	cp.conn.TLS = tlsCfg

	if !streamNameRe.MatchString(n.Stream) {
		bad("nats.stream", fmt.Sprintf("%q: a stream's name is 1 to 64 letters, digits, - and _", n.Stream))
	}
	if !subjectRe.MatchString(n.Subject) {
		bad("nats.subject", fmt.Sprintf("%q: want tokens of letters, digits, - and _ between dots, no wildcards", n.Subject))
	}
	pl.durRange("cluster.nats.max_age", n.MaxAge, time.Minute, 10*365*24*time.Hour)
	if n.MaxBytes < 1<<20 {
		bad("nats.max_bytes", fmt.Sprintf("%d is less than 1 MiB (1048576)", n.MaxBytes))
	}
	if n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5 {
		bad("nats.replicas", fmt.Sprintf("%d: want 1, 3 or 5 (JetStream keeps an odd number of copies)", n.Replicas))
	}
	name := c.Cluster.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	if err := collector.CheckLabel("name", name); err != nil || name == "" {
		bad("name", fmt.Sprintf("%q: a replica's name is a label value; set cluster.name", name))
	}
	cp.conn.Name = "vigil " + name
	// Replicas and agents on one stream must not publish one host under
	// one name: the host is named after the replica unless host.name says.
	if p.host != nil && p.host.Name == "" && c.Cluster.Name != "" {
		if strings.ContainsAny(c.Cluster.Name, "/ \t\n") {
			bad("name", fmt.Sprintf("%q names this vigil's host too (host.name is not set): it must not contain slashes or spaces", c.Cluster.Name))
		}
		p.host.Name = c.Cluster.Name
	}
	cp.log = cluster.LogOptions{Stream: n.Stream, Subject: n.Subject, MaxAge: n.MaxAge.D(), MaxBytes: n.MaxBytes,
		Replicas: n.Replicas, Replica: name}
	switch c.Cluster.Role {
	case "", "replica":
	case "agent":
		cp.agent = true
	default:
		bad("role", fmt.Sprintf("%q: want replica (one of several that serve the same stream) or agent (pushes its events into NATS)", c.Cluster.Role))
	}
	pl.durRange("cluster.lease_ttl", c.Cluster.LeaseTTL, 2*time.Second, 5*time.Minute)
	pl.durRange("cluster.agent_idle", c.Cluster.AgentIdle, time.Second, time.Hour)
	cp.agentIdle = c.Cluster.AgentIdle.D()
	cp.lease = cluster.LeaseOptions{Key: "alerts", Name: name, TTL: c.Cluster.LeaseTTL.D(), Replicas: n.Replicas}
	if ok {
		p.cluster = cp
	}
}
