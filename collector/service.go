package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"vigil/stream"
)

// DefaultServiceWindow is the rolling window rates, error percentages and
// latency percentiles are computed over.
const DefaultServiceWindow = 30 * time.Second

// ServiceOptions declare one service: probed from outside, scraped for its
// own metrics, or both, on one or more instances.
type ServiceOptions struct {
	Name   string
	Probe  *ProbeOptions
	Scrape *ScrapeOptions
	Window time.Duration
	// Interval is how often the service is checked; zero leaves it to the
	// scheduler. Probe and scrape timeouts default to nine tenths of it.
	Interval time.Duration
	Now      func() time.Time
	// Client is used for scrapes (a copy, whose redirect policy is the
	// scrape's); nil uses a default with the scrape timeout.
	Client *http.Client
}

// Service is the source "service/<name>". Each collect probes and scrapes
// every instance at once and publishes, per instance and merged:
//
//	http.requests_per_sec, http.error_percent,
//	http.latency_{p50,p90,p99,p99_5,p99_9,max}_seconds   (over the window)
//	instances.up, instances.total
//	probe.{up,status_code,dns_seconds,connect_seconds,tls_seconds,ttfb_seconds,total_seconds,cert_expiry_days}{instance=HOST:PORT}
//	scrape.up{instance=HOST:PORT}
//
// With a scrape, the http.* metrics describe the service's real traffic
// (merged across instances by adding counters and histogram buckets);
// with only a probe, they describe the probes. Each sample also carries
// the collect's Traffic, for a hub to merge with other hosts'.
type Service struct {
	opts     ServiceOptions
	name     string
	probers  []*prober
	scrapers []*scraper

	mu          sync.Mutex
	probes      map[string][]probeResult  // per instance, within the window
	scrapes     map[string][]scrapeResult // per instance, within the window
	lastCollect time.Time
	traffic     Traffic // the last collect's, for a hub to merge
	hasTraffic  bool
}

var (
	_ Source        = (*Service)(nil)
	_ Scheduled     = (*Service)(nil)
	_ TrafficSource = (*Service)(nil)
)

// NewService validates the options and returns the source.
func NewService(opts ServiceOptions) (*Service, error) {
	if opts.Name == "" {
		return nil, errors.New("service: a name is required")
	}
	if opts.Probe == nil && opts.Scrape == nil {
		return nil, fmt.Errorf("service %s: needs a probe, a scrape or both", opts.Name)
	}
	if opts.Window <= 0 {
		opts.Window = DefaultServiceWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	defaultTimeout := DefaultProbeTimeout
	if opts.Interval > 0 {
		defaultTimeout = opts.Interval * 9 / 10
	}
	s := &Service{opts: opts, name: "service/" + opts.Name,
		probes: map[string][]probeResult{}, scrapes: map[string][]scrapeResult{}}
	if p := opts.Probe; p != nil {
		if len(p.URLs) == 0 {
			return nil, fmt.Errorf("service %s: probe needs at least one URL", opts.Name)
		}
		po := *p
		if po.Method == "" {
			po.Method = http.MethodGet
		}
		if po.Timeout <= 0 {
			po.Timeout = defaultTimeout
		}
		if po.MaxBytes <= 0 {
			po.MaxBytes = DefaultMaxProbeBytes
		}
		names := instanceNames(p.URLs)
		for i, u := range p.URLs {
			pr := newProber(u, po, opts.Now)
			pr.instance = names[i]
			s.probers = append(s.probers, pr)
		}
	}
	if sc := opts.Scrape; sc != nil {
		if len(sc.URLs) == 0 {
			return nil, fmt.Errorf("service %s: scrape needs at least one URL", opts.Name)
		}
		so := *sc
		so.Requests = cmp.Or(so.Requests, DefaultRequestsMetric)
		so.Latency = cmp.Or(so.Latency, DefaultLatencyMetric)
		so.Errors = cmp.Or(so.Errors, DefaultErrorSelector)
		so.Timeout = cmp.Or(max(so.Timeout, 0), defaultTimeout)
		so.MaxBytes = cmp.Or(max(so.MaxBytes, 0), DefaultMaxScrapeBytes)
		so.MaxSeries = cmp.Or(max(so.MaxSeries, 0), DefaultMaxSeries)
		sel, err := ParseSelector(so.Errors)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", opts.Name, err)
		}
		client := scrapeClient(opts.Client, so)
		names := instanceNames(sc.URLs)
		for i, u := range sc.URLs {
			s.scrapers = append(s.scrapers, &scraper{url: u, shown: stream.Clip(RedactURL(u), stream.MaxTextBytes), instance: names[i],
				opts: so, errSel: sel, client: client})
		}
	}
	return s, nil
}

// Name is "service/<name>".
func (s *Service) Name() string { return s.name }

// Schedule is the service's interval and how long one collect may take:
// the longest of its probe and scrape timeouts, and a little more.
func (s *Service) Schedule() (interval, timeout time.Duration) {
	for _, p := range s.probers {
		timeout = max(timeout, p.opts.Timeout)
	}
	for _, sc := range s.scrapers {
		timeout = max(timeout, sc.opts.Timeout)
	}
	return s.opts.Interval, timeout + 100*time.Millisecond
}

// Collect checks every instance concurrently and computes the service's
// metrics. Instances that fail are named in the error; the others still
// count.
func (s *Service) Collect(ctx context.Context) (map[string]float64, error) {
	now := s.opts.Now()
	var wg sync.WaitGroup
	probeRes := make([]probeResult, len(s.probers))
	scrapeRes := make([]scrapeResult, len(s.scrapers))
	scrapeErr := make([]error, len(s.scrapers))
	for i, p := range s.probers {
		wg.Add(1)
		go func() { defer wg.Done(); probeRes[i] = p.probe(ctx) }()
	}
	for i, sc := range s.scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, sc.opts.Timeout)
			defer cancel()
			scrapeRes[i], scrapeErr[i] = sc.scrape(sctx, now)
		}()
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]float64, 16+8*(len(s.probers)+len(s.scrapers)))
	cutoff := now.Add(-s.opts.Window)
	probeWindow, probesUp, errs := s.addProbes(m, probeRes, cutoff)
	scrapesUp, scrapeErrs := s.addScrapes(m, scrapeRes, scrapeErr, cutoff)
	errs = append(errs, scrapeErrs...)
	switch {
	case len(s.scrapers) > 0:
		m["instances.total"] = float64(len(s.scrapers))
		m["instances.up"] = float64(scrapesUp)
		s.traffic, s.hasTraffic = scrapedTraffic(scrapeRes, scrapeErr)
	case len(s.probers) > 0:
		m["instances.total"] = float64(len(s.probers))
		m["instances.up"] = float64(probesUp)
		s.probeTraffic(m, probeWindow)
		s.traffic, s.hasTraffic = probedTraffic(probeRes, now.Sub(s.lastCollect).Seconds()), !s.lastCollect.IsZero()
	}
	s.lastCollect = now
	if len(errs) > 0 {
		return m, fmt.Errorf("collect %s: %w", s.name, errors.Join(errs...))
	}
	return m, nil
}

// Traffic is what the last collect saw, as counts: a hub adds them up
// with the same service's on other hosts.
func (s *Service) Traffic() (Traffic, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traffic, s.hasTraffic
}

// scrapedTraffic adds up the increases this collect's scrapes saw.
func scrapedTraffic(res []scrapeResult, failed []error) (Traffic, bool) {
	var t Traffic
	h := Histogram{}
	for i, r := range res {
		if failed[i] != nil || r.dt <= 0 {
			continue
		}
		t.Requests += r.requests
		t.Errors += r.errors
		t.Seconds = max(t.Seconds, r.dt)
		h.Add(r.latency)
	}
	t.Latency = h.Buckets()
	return t, t.Seconds > 0
}

// probedTraffic counts this collect's probes as requests, failed ones as
// errors, their total times as latencies.
func probedTraffic(res []probeResult, seconds float64) Traffic {
	t := Traffic{Seconds: seconds}
	totals := make([]float64, 0, len(res))
	for _, r := range res {
		t.Requests++
		if !r.ok {
			t.Errors++
		}
		totals = append(totals, r.total)
	}
	t.Latency = observed(totals).Buckets()
	return t
}

// addProbes records this collect's probes in each instance's window and
// writes their per-instance metrics; it returns every probe in the
// windows, how many instances are up, and the failures.
func (s *Service) addProbes(m map[string]float64, res []probeResult, cutoff time.Time) (window []probeResult, up int, errs []error) {
	for i, p := range s.probers {
		r := res[i]
		w := append(s.probes[p.url], r)
		w = slices.DeleteFunc(w, func(x probeResult) bool { return !x.at.After(cutoff) })
		s.probes[p.url] = w
		window = append(window, w...)
		label := "{instance=" + p.instance + "}"
		m["probe.up"+label] = b2f(r.ok)
		if r.status != 0 {
			m["probe.status_code"+label] = float64(r.status)
		}
		for name, v := range map[string]float64{"dns_seconds": r.dns, "connect_seconds": r.connect, "tls_seconds": r.tls,
			"ttfb_seconds": r.ttfb, "total_seconds": r.total, "cert_expiry_days": r.certDays} {
			if !math.IsNaN(v) {
				m["probe."+name+label] = v
			}
		}
		if r.ok {
			up++
		} else {
			errs = append(errs, fmt.Errorf("probe %s: %w", p.shown, clipErr(r.err)))
		}
	}
	return window, up, errs
}

// addScrapes records this collect's scrapes in each instance's window and
// writes the traffic per instance and merged — counters added, histogram
// buckets merged, never percentiles averaged; it returns how many
// instances are up, and the failures.
func (s *Service) addScrapes(m map[string]float64, res []scrapeResult, failed []error, cutoff time.Time) (up int, errs []error) {
	merged := Histogram{}
	var reqs, errsN, dt float64
	for i, sc := range s.scrapers {
		label := "{instance=" + sc.instance + "}"
		if err := failed[i]; err != nil {
			errs = append(errs, fmt.Errorf("scrape %s: %w", sc.shown, clipErr(err)))
			m["scrape.up"+label] = 0
		} else {
			up++
			m["scrape.up"+label] = 1
			if res[i].dt > 0 {
				s.scrapes[sc.url] = append(s.scrapes[sc.url], res[i])
			}
		}
		w := slices.DeleteFunc(s.scrapes[sc.url], func(x scrapeResult) bool { return !x.at.After(cutoff) })
		s.scrapes[sc.url] = w
		h := Histogram{}
		var r, e, d float64
		for _, x := range w {
			r += x.requests
			e += x.errors
			d += x.dt
			h.Add(x.latency)
		}
		if d > 0 {
			putTraffic(m, label, r/d, e, r, h)
			reqs += r / d
			errsN += e
			dt = max(dt, d)
			merged.Add(h)
		}
	}
	if dt > 0 {
		total := 0.0
		for _, w := range s.scrapes {
			for _, x := range w {
				total += x.requests
			}
		}
		putTraffic(m, "", reqs, errsN, total, merged)
	}
	return up, errs
}

// putTraffic writes rate, error percentage and latency percentiles.
func putTraffic(m map[string]float64, label string, rate, errors, requests float64, h Histogram) {
	m["http.requests_per_sec"+label] = rate
	if requests > 0 {
		m["http.error_percent"+label] = 100 * errors / requests
	} else {
		m["http.error_percent"+label] = 0
	}
	if h.Total() > 0 {
		m["http.latency_p50_seconds"+label] = h.Quantile(0.50)
		m["http.latency_p90_seconds"+label] = h.Quantile(0.90)
		m["http.latency_p99_seconds"+label] = h.Quantile(0.99)
		m["http.latency_p99_5_seconds"+label] = h.Quantile(0.995)
		m["http.latency_p99_9_seconds"+label] = h.Quantile(0.999)
		m["http.latency_max_seconds"+label] = h.Max()
	}
}

// probeTraffic describes the probes themselves when there is no scrape:
// probes per second, the share that failed, and exact percentiles of their
// total time.
func (s *Service) probeTraffic(m map[string]float64, w []probeResult) {
	if len(w) == 0 {
		return
	}
	first, last := w[0].at, w[0].at
	failed := 0
	lat := make([]float64, 0, len(w))
	for _, r := range w {
		first, last = minTime(first, r.at), maxTime(last, r.at)
		if !r.ok {
			failed++
		}
		if !math.IsNaN(r.total) {
			lat = append(lat, r.total)
		}
	}
	span := last.Sub(first).Seconds()
	if span > 0 {
		m["http.requests_per_sec"] = float64(len(w)-len(s.probers)) / span
	}
	m["http.error_percent"] = 100 * float64(failed) / float64(len(w))
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) float64 { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
		m["http.latency_p50_seconds"] = q(0.5)
		m["http.latency_p90_seconds"] = q(0.9)
		m["http.latency_p99_seconds"] = q(0.99)
		m["http.latency_p99_5_seconds"] = q(0.995)
		m["http.latency_p99_9_seconds"] = q(0.999)
		m["http.latency_max_seconds"] = lat[len(lat)-1]
	}
}

// instanceNames names instances as Prometheus does, by host:port, unless
// two URLs share one; then by the whole URL. Names are shown (in metric
// names, on the page), so they come from the redacted URL, cut to
// stream.MaxTextBytes; URLs that still look alike (they differ only in a secret,
// or past the cut) are numbered: "… (1)", "… (2)".
func instanceNames(urls []string) []string {
	names := make([]string, len(urls))
	for i, raw := range urls {
		names[i] = stream.Clip(RedactURL(raw), stream.MaxTextBytes)
		if u, err := url.Parse(raw); err == nil && u.Host != "" {
			names[i] = stream.Clip(u.Host, stream.MaxTextBytes)
		}
	}
	for i, dup := range duplicates(names) {
		if dup {
			names[i] = stream.Clip(RedactURL(urls[i]), stream.MaxTextBytes)
		}
	}
	nth := map[string]int{}
	for i, dup := range duplicates(names) {
		if dup {
			nth[names[i]]++
			names[i] += fmt.Sprintf(" (%d)", nth[names[i]])
		}
	}
	return names
}

// duplicates says which names occur more than once.
func duplicates(names []string) []bool {
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	dup := make([]bool, len(names))
	for i, n := range names {
		dup[i] = count[n] > 1
	}
	return dup
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clippedError bounds an error's text while keeping it in the chain, so
// errors.Is and errors.As still see what caused it.
type clippedError struct{ err error }

func (e clippedError) Error() string { return stream.Clip(e.err.Error(), stream.MaxTextBytes) }
func (e clippedError) Unwrap() error { return e.err }

// clipErr bounds the text of an error that carries what a target said.
func clipErr(err error) error {
	if err == nil {
		return nil
	}
	return clippedError{err}
}
