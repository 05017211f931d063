package collector

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"vigil/stream"
)

// Probe defaults.
const (
	DefaultProbeTimeout  = 5 * time.Second
	DefaultMaxProbeBytes = 1 << 20
)

// ProbeOptions say how to check a service from outside.
type ProbeOptions struct {
	URLs         []string
	Method       string // GET when empty
	Timeout      time.Duration
	ExpectStatus []int          // any 2xx when empty
	BodyRegex    *regexp.Regexp // the body must match, when set
	JSONField    string         // dotted path into a JSON body that must exist
	JSONEquals   string         // ... and, when set, equal this (compared as text)
	MaxBytes     int64          // of the body read for the checks
	// Transport, when set, replaces the default one (tests; custom CAs).
	Transport *http.Transport
}

// probeResult is one check of one instance.
type probeResult struct {
	at                             time.Time
	ok                             bool
	err                            error // "reason: detail" when not ok
	status                         int
	dns, connect, tls, ttfb, total float64 // seconds; NaN when the step did not happen
	certDays                       float64 // days until the leaf certificate expires; NaN without TLS
}

type prober struct {
	url      string // as configured: may hold credentials
	shown    string // the URL redacted, for errors
	instance string
	opts     ProbeOptions
	client   *http.Client
	now      func() time.Time
}

// probeTransport is shared by every probe with default settings: without
// keep-alives a transport holds no connections, so one is enough.
var probeTransport = sync.OnceValue(func() *http.Transport { return probeClone(http.DefaultTransport.(*http.Transport)) })

// probeClone makes every probe measure a fresh connection (DNS, connect
// and TLS) and go straight to the target, not through a proxy.
func probeClone(t *http.Transport) *http.Transport {
	tr := t.Clone()
	tr.DisableKeepAlives = true
	tr.Proxy = nil
	return tr
}

func newProber(url string, opts ProbeOptions, now func() time.Time) *prober {
	tr := probeTransport()
	if opts.Transport != nil {
		tr = probeClone(opts.Transport)
	}
	return &prober{url: url, shown: stream.Clip(RedactURL(url), stream.MaxTextBytes), opts: opts, now: now, client: &http.Client{
		Transport: tr,
		// A redirect is an answer to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (p *prober) probe(ctx context.Context) probeResult {
	nan := math.NaN()
	r := probeResult{at: p.now(), dns: nan, connect: nan, tls: nan, ttfb: nan, certDays: nan}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	// The trace's callbacks may run after Do returns (a dial that goes on
	// after a timeout): they write under a lock, and the result takes a
	// copy of what they wrote (done) when it is returned.
	var mu sync.Mutex
	var dnsStart, connStart, tlsStart time.Time
	t := r // the timings the callbacks write
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	start := time.Now()
	trace := &httptrace.ClientTrace{
		DNSStart:          func(httptrace.DNSStartInfo) { set(func() { dnsStart = time.Now() }) },
		DNSDone:           func(httptrace.DNSDoneInfo) { set(func() { t.dns = time.Since(dnsStart).Seconds() }) },
		ConnectStart:      func(string, string) { set(func() { connStart = time.Now() }) },
		ConnectDone:       func(string, string, error) { set(func() { t.connect = time.Since(connStart).Seconds() }) },
		TLSHandshakeStart: func() { set(func() { tlsStart = time.Now() }) },
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			set(func() {
				t.tls = time.Since(tlsStart).Seconds()
				if err == nil && len(cs.PeerCertificates) > 0 {
					t.certDays = cs.PeerCertificates[0].NotAfter.Sub(r.at).Hours() / 24
				}
			})
		},
		GotFirstResponseByte: func() { set(func() { t.ttfb = time.Since(start).Seconds() }) },
	}
	done := func(r probeResult) probeResult {
		mu.Lock()
		defer mu.Unlock()
		r.dns, r.connect, r.tls, r.certDays, r.ttfb = t.dns, t.connect, t.tls, t.certDays, t.ttfb
		return r
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), p.opts.Method, p.url, nil)
	if err != nil {
		r.err = fmt.Errorf("%s: %w", ReasonNetwork, hideURL(err, p.url))
		return done(r)
	}
	req.Header.Set("User-Agent", "vigil-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		r.total = time.Since(start).Seconds()
		r.err = classify(hideURL(err, p.url))
		return done(r)
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.opts.MaxBytes))
	r.total = time.Since(start).Seconds()
	if err != nil {
		r.err = classify(err)
		return done(r)
	}
	if !p.statusOK(resp.StatusCode) {
		r.err = fmt.Errorf("%s: got %d", ReasonStatus, resp.StatusCode)
		return done(r)
	}
	if err := p.checkBody(body); err != nil {
		r.err = fmt.Errorf("%s: %v", ReasonBody, err)
		return done(r)
	}
	r.ok = true
	return done(r)
}

func (p *prober) statusOK(code int) bool {
	if len(p.opts.ExpectStatus) == 0 {
		return code >= 200 && code < 300
	}
	return slices.Contains(p.opts.ExpectStatus, code)
}

// checkBody says which check failed and what it wanted, never what the
// body said: that is the target's text, of any size and content.
func (p *prober) checkBody(body []byte) error {
	if p.opts.BodyRegex != nil && !p.opts.BodyRegex.Match(body) {
		return fmt.Errorf("does not match %s", p.opts.BodyRegex)
	}
	if p.opts.JSONField == "" {
		return nil
	}
	var v any
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&v); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.As(err, &syntax):
			return fmt.Errorf("not JSON (at byte %d)", syntax.Offset)
		case errors.Is(err, io.EOF):
			return errors.New("not JSON (empty)")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("not JSON (ends early; the check reads at most %d bytes)", p.opts.MaxBytes)
		}
		return errors.New("not JSON")
	}
	for _, part := range strings.Split(p.opts.JSONField, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("field %s missing", p.opts.JSONField)
		}
		if v, ok = m[part]; !ok {
			return fmt.Errorf("field %s missing", p.opts.JSONField)
		}
	}
	if p.opts.JSONEquals != "" && fmt.Sprint(v) != p.opts.JSONEquals {
		return fmt.Errorf("field %s: want %q, got %s", p.opts.JSONField, p.opts.JSONEquals, jsonKind(v))
	}
	return nil
}

// jsonKind names what a JSON value is without saying what it holds.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a different boolean"
	case float64:
		return "a different number"
	case string:
		return "a different string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a different value"
}
