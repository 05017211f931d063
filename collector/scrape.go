package collector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Scrape defaults: the common conventions of Prometheus client libraries.
const (
	DefaultRequestsMetric = "http_requests_total"
	DefaultLatencyMetric  = "http_request_duration_seconds"
	DefaultErrorSelector  = `code=~"5.."` // also tried on a "status" label
	DefaultMaxScrapeBytes = 16 << 20
	DefaultMaxSeries      = 10_000 // per scrape; Prometheus calls it sample_limit
)

// ScrapeOptions say how to read a service's own metrics.
type ScrapeOptions struct {
	URLs     []string
	Requests string // counter of requests; its _total is not added
	Errors   string // a label selector picking the error series, e.g. code=~"5.."
	Latency  string // histogram base name: <name>_bucket with le or vmrange
	Timeout  time.Duration
	MaxBytes int64
	// MaxSeries is how many series one scrape may hold (DefaultMaxSeries
	// when 0); past it the scrape fails, and reads no further.
	MaxSeries int
	// FollowRedirects lets a scrape follow redirects (as Prometheus's
	// follow_redirects does); without it a redirect is a failure.
	FollowRedirects bool
}

// A Selector matches a series by one label: name=value, name!=value,
// name=~regex or name!~regex (regexes are anchored, as in PromQL).
type Selector struct {
	Labels []string // the label, or alternatives tried in order
	re     *regexp.Regexp
	negate bool
}

var selectorRe = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$`)

// ParseSelector parses a one-label selector such as code=~"5..".
func ParseSelector(s string) (Selector, error) {
	m := selectorRe.FindStringSubmatch(s)
	if m == nil {
		return Selector{}, fmt.Errorf("bad error selector %q: want label=\"value\", label!=\"value\", label=~\"regex\" or label!~\"regex\"", s)
	}
	pattern := m[3]
	if m[2] == "=" || m[2] == "!=" {
		pattern = regexp.QuoteMeta(pattern)
	}
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return Selector{}, fmt.Errorf("bad error selector %q: %v", s, err)
	}
	sel := Selector{Labels: []string{m[1]}, re: re, negate: m[2][0] == '!'}
	if s == DefaultErrorSelector {
		sel.Labels = []string{"code", "status"}
	}
	return sel, nil
}

// Match reports whether a series is selected. A series without the label
// is not.
func (s Selector) Match(smp PromSample) bool {
	for _, name := range s.Labels {
		if v := smp.Label(name); v != "" {
			return s.re.MatchString(v) != s.negate
		}
	}
	return false
}

// scraper reads one instance and turns its counters into increases since
// the previous scrape.
type scraper struct {
	url      string // as configured: may hold credentials
	shown    string // the URL redacted, for errors
	instance string
	opts     ScrapeOptions
	errSel   Selector
	client   *http.Client
	prev     map[string]float64 // counter series -> last value
	prevAt   time.Time
}

// scrapeResult is what one scrape adds to the rolling window.
type scrapeResult struct {
	at       time.Time
	dt       float64 // seconds the increases cover; 0 for the first scrape
	requests float64
	errors   float64
	latency  Histogram
}

func (s *scraper) scrape(ctx context.Context, now time.Time) (scrapeResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return scrapeResult{}, hideURL(err, s.url)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return scrapeResult{}, classify(hideURL(err, s.url))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		if !s.opts.FollowRedirects && resp.StatusCode/100 == 3 && resp.Header.Get("Location") != "" {
			return scrapeResult{}, fmt.Errorf("%s: %d (a redirect; follow_redirects: true follows it)", ReasonStatus, resp.StatusCode)
		}
		// The code, not resp.Status: the reason phrase is the target's
		// own text, of any length.
		return scrapeResult{}, fmt.Errorf("%s: %d", ReasonStatus, resp.StatusCode)
	}
	body := &limitedReader{r: resp.Body, n: s.opts.MaxBytes}
	samples, err := ParseExposition(body, s.opts.MaxSeries)
	if body.exceeded {
		return scrapeResult{}, fmt.Errorf("body: larger than %d bytes", s.opts.MaxBytes)
	}
	var limit *SeriesLimitError
	switch {
	case errors.Is(err, ErrExposition) || errors.As(err, &limit):
		return scrapeResult{}, fmt.Errorf("body: %w", err)
	case err != nil: // the target went away, or the timeout came, while it was read
		return scrapeResult{}, classify(fmt.Errorf("reading the body: %w", hideURL(err, s.url)))
	}
	return s.increases(samples, now)
}

// scrapeClient is the client a scrape uses: a copy of the one given, or
// one with the scrape timeout, that follows redirects only when told to.
func scrapeClient(base *http.Client, o ScrapeOptions) *http.Client {
	c := http.Client{Timeout: o.Timeout}
	if base != nil {
		c = *base
	}
	if !o.FollowRedirects {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &c
}

// increases compares a scrape with the previous one. Counters that went
// down were reset (the process restarted) and count from zero; series seen
// for the first time only set a baseline; series that vanished are
// forgotten — as rate() over a range does. The exception is a vmrange
// bucket: VictoriaMetrics shows a bucket only once something falls in it,
// so one that appears on a target scraped before counts from zero.
func (s *scraper) increases(samples []PromSample, now time.Time) (scrapeResult, error) {
	next := make(map[string]float64, len(s.prev))
	inc := func(key string, v float64, lazy bool) float64 {
		next[key] = v
		prev, ok := s.prev[key]
		switch {
		case s.prev == nil:
			return 0
		case !ok && lazy:
			return v
		case !ok:
			return 0
		case v < prev:
			return v
		}
		return v - prev
	}
	r := scrapeResult{at: now, latency: Histogram{}}
	bucketName := s.opts.Latency + "_bucket"
	countName := s.opts.Latency + "_count"
	var haveRequests, haveCount, haveBuckets bool
	var countInc float64
	le := map[float64]float64{}
	for _, smp := range samples {
		if smp.Value < 0 || smp.Value != smp.Value { // counters are never negative or NaN
			continue
		}
		switch smp.Name {
		case s.opts.Requests:
			haveRequests = true
			d := inc("r|"+seriesKey(smp.Labels), smp.Value, false)
			r.requests += d
			if s.errSel.Match(smp) {
				r.errors += d
			}
		case countName:
			haveCount = true
			countInc += inc("c|"+seriesKey(smp.Labels), smp.Value, false)
		case bucketName:
			if v := smp.Label("vmrange"); v != "" {
				lo, hi, ok := parseVMRange(v)
				if !ok {
					continue
				}
				haveBuckets = true
				d := inc("v|"+seriesKey(smp.Labels), smp.Value, true)
				b := r.latency[hi]
				b.Lo, b.Count = lo, b.Count+d
				r.latency[hi] = b
			} else if v := smp.Label("le"); v != "" {
				bound, err := parseValue(v)
				if err != nil || math.IsNaN(bound) { // the parser refuses NaN; a map key must equal itself
					continue
				}
				haveBuckets = true
				le[bound] += inc("b|"+seriesKey(smp.Labels), smp.Value, false)
			}
		}
	}
	if len(le) > 0 {
		r.latency.Add(histogramFromLE(le))
	}
	if !haveRequests && haveCount { // a histogram's count is a request count too
		haveRequests = true
		r.requests = countInc
	}
	if !haveRequests && !haveBuckets {
		return scrapeResult{}, fmt.Errorf("body: no series named %s or %s", s.opts.Requests, countName)
	}
	if s.prev != nil {
		r.dt = now.Sub(s.prevAt).Seconds()
	}
	s.prev, s.prevAt = next, now
	return r, nil
}

// limitedReader reads at most n bytes and says whether there was more.
type limitedReader struct {
	r        io.Reader
	n        int64
	exceeded bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if k, _ := l.r.Read(one[:]); k > 0 {
			l.exceeded = true
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// Failure reasons a probe or scrape reports first in its error.
const (
	ReasonTimeout = "timeout"
	ReasonRefused = "refused"
	ReasonDNS     = "dns"
	ReasonTLS     = "tls"
	ReasonStatus  = "status"
	ReasonBody    = "body"
	ReasonNetwork = "network"
)

// classify names the reason a request failed, as "reason: error".
func classify(err error) error {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	msg := err.Error()
	reason := ReasonNetwork
	switch {
	case errors.As(err, &dnsErr):
		reason = ReasonDNS
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		reason = ReasonTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = ReasonRefused
	case errors.As(err, &certErr) || errors.As(err, &recordErr) || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:"):
		reason = ReasonTLS
	}
	return fmt.Errorf("%s: %w", reason, err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
