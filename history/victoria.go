package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
)

// Victoria keeps the history in VictoriaMetrics instead of under --data:
// every sample is pushed to its Prometheus-text import
// (/api/v1/import/prometheus), and windows longer than the ring are read
// back from its query API (/api/v1/query_range, MetricsQL's rollup for
// each step's min, mean and max). It is what a fleet's hub should use:
// the storage, its retention and its cost are VictoriaMetrics', and
// Grafana can read the same series.
//
// Record never blocks: samples wait in a bounded queue, which Run sends in
// batches. While VictoriaMetrics is unreachable, the queue holds what it
// can and Run retries with backoff; when it is full, the oldest samples
// are dropped and counted (vigil_victoriametrics_samples_dropped_total).
//
// A series is named as Prometheus names it — "http.latency_p99_seconds"
// becomes http_latency_p99_seconds — with the source and the metric's
// labels as labels: http_latency_p99_seconds{source="service/checkout",
// instance="10.0.0.7:8080"}, plus any labels the configuration adds.
type Victoria struct {
	opts   VictoriaOptions
	base   *url.URL
	client *http.Client
	jitter func(time.Duration) time.Duration

	mu      sync.Mutex
	queue   []batchPart                  // oldest first
	head    uint64                       // the number of queue[0]: parts are numbered as queued
	queued  int                          // points in queue
	names   map[string]map[string]string // source → metric → the line's start: name{labels}
	wake    chan struct{}
	failing bool

	pushed, dropped, errs *metrics.Counter
}

// batchPart is one sample's lines.
type batchPart struct {
	lines  []byte
	points int
}

// VictoriaOptions configure a Victoria.
type VictoriaOptions struct {
	URL         string            // VictoriaMetrics' base URL; user:password@ in it for basic auth
	BearerToken string            // sent as Authorization: Bearer, if set
	Labels      map[string]string // on every series pushed, and in every query
	Interval    time.Duration     // vigil's sampling interval: the finest step
	// MaxQueue bounds the points waiting to be sent (DefaultMaxQueue).
	MaxQueue int
	// Flush is how often the queue is sent (DefaultFlush); a batch of
	// MaxBatch points is sent at once.
	Flush   time.Duration
	Timeout time.Duration // per request (DefaultTimeout)
	Logger  *slog.Logger
	Metrics *metrics.Set
}

// Defaults of VictoriaOptions.
const (
	DefaultMaxQueue = 1_000_000 // about 100 MB of lines: a 1,000-host hub's half a minute
	DefaultFlush    = time.Second
	DefaultTimeout  = 30 * time.Second
	MaxBatch        = 50_000 // points a request
	maxBackoff      = time.Minute
)

// Problems says what is wrong with the options: by the option's name in
// the configuration (url, labels, max_queue, flush, timeout).
func (o VictoriaOptions) Problems() map[string]string {
	bad := map[string]string{}
	base, err := url.Parse(o.URL)
	switch {
	case err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "":
		bad["url"] = "want http(s)://host:port, the base of VictoriaMetrics' API (user:password@ in it for basic auth)"
	case base.RawQuery != "" || base.Fragment != "":
		shown := *base
		shown.RawQuery, shown.Fragment = "", ""
		bad["url"] = fmt.Sprintf("%s with a query or a fragment: give the base of VictoriaMetrics' API, and a token in bearer_token", shown.Redacted())
	}
	var labels []string
	for _, k := range sortedKeys(o.Labels) {
		switch {
		case strings.HasPrefix(k, "__"):
			labels = append(labels, fmt.Sprintf("%q: names starting with __ are VictoriaMetrics' own", k))
		case k == "source":
			labels = append(labels, `"source": vigil sets it to each series' source`)
		case !validLabel(k):
			labels = append(labels, fmt.Sprintf("%q: want letters, digits and _, not a digit first", k))
		}
	}
	if len(labels) > 0 {
		bad["labels"] = strings.Join(labels, "; ")
	}
	if o.MaxQueue < 0 {
		bad["max_queue"] = fmt.Sprintf("%d: want a number of points, or 0 for %d", o.MaxQueue, DefaultMaxQueue)
	}
	if o.Flush < 0 || o.Flush > time.Minute {
		bad["flush"] = fmt.Sprintf("%s: want up to 1m, or 0 for %s", o.Flush, DefaultFlush)
	}
	if o.Timeout != 0 && (o.Timeout < 100*time.Millisecond || o.Timeout > 5*time.Minute) {
		bad["timeout"] = fmt.Sprintf("%s: want 100ms to 5m, or 0 for %s", o.Timeout, DefaultTimeout)
	}
	return bad
}

// NewVictoria checks the options and returns a Victoria; Run sends what
// Record queues.
func NewVictoria(opts VictoriaOptions) (*Victoria, error) {
	if bad := opts.Problems(); len(bad) > 0 {
		k := sortedKeys(bad)[0]
		return nil, fmt.Errorf("victoriametrics %s: %s", k, bad[k])
	}
	base, _ := url.Parse(strings.TrimSuffix(opts.URL, "/"))
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.Flush <= 0 {
		opts.Flush = DefaultFlush
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	v := &Victoria{opts: opts, base: base, client: &http.Client{Timeout: opts.Timeout},
		jitter: func(d time.Duration) time.Duration { return rand.N(d) },
		names:  map[string]map[string]string{}, wake: make(chan struct{}, 1),
		pushed:  opts.Metrics.NewCounter("vigil_victoriametrics_samples_pushed_total"),
		dropped: opts.Metrics.NewCounter("vigil_victoriametrics_samples_dropped_total"),
		errs:    opts.Metrics.NewCounter("vigil_victoriametrics_push_errors_total"),
	}
	opts.Metrics.NewGauge("vigil_victoriametrics_queue_samples", func() float64 {
		v.mu.Lock()
		defer v.mu.Unlock()
		return float64(v.queued)
	})
	return v, nil
}

// Tiers is one tier: every sample, at the sampling interval, kept as long
// as VictoriaMetrics keeps it.
func (v *Victoria) Tiers() []Tier {
	return []Tier{{Step: v.opts.Interval, Keep: MaxKeep}}
}

// ErrUnavailable is the error of a query the history's store could not
// answer (VictoriaMetrics unreachable, or failing): not the asker's fault.
var ErrUnavailable = errors.New("the history cannot be read")

// MaxKeep stands for "as long as the store keeps it".
const MaxKeep = 100 * 365 * 24 * time.Hour

// Record queues a sample's points; it never blocks on the network.
func (v *Victoria) Record(smp collector.Sample) {
	v.mu.Lock()
	defer v.mu.Unlock()
	byMetric := v.names[smp.Source]
	if byMetric == nil {
		byMetric = map[string]string{}
		v.names[smp.Source] = byMetric
	}
	var b []byte
	points := 0
	ts := smp.Time.UnixMilli()
	for metric, val := range smp.Metrics.All() {
		if math.IsNaN(val) || math.IsInf(val, 0) {
			continue
		}
		head, ok := byMetric[metric]
		if !ok {
			head = v.seriesName(smp.Source, metric)
			byMetric[metric] = head
		}
		b = append(b, head...)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, val, 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, '\n')
		points++
	}
	if points == 0 {
		return
	}
	v.queue = append(v.queue, batchPart{lines: b, points: points})
	v.queued += points
	for v.queued > v.opts.MaxQueue && len(v.queue) > 1 {
		v.dropped.Add(v.queue[0].points)
		v.removeHead(1)
	}
	if v.queued >= MaxBatch {
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// Run sends the queue every Flush (or as soon as a batch is full) until
// ctx ends, then tries once more to send what is left.
func (v *Victoria) Run(ctx context.Context) error {
	t := time.NewTicker(v.opts.Flush)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for v.send(last) > 0 {
			}
			return nil
		case <-t.C:
		case <-v.wake:
		}
		for {
			n := v.send(ctx)
			if n < 0 { // failed: wait before the next try
				backoff = min(maxBackoff, max(v.opts.Flush, 2*backoff))
				select {
				case <-ctx.Done():
				case <-time.After(backoff/2 + v.jitter(backoff/2+1)):
				}
				break
			}
			backoff = 0
			if n < MaxBatch {
				break
			}
		}
	}
}

// send posts up to MaxBatch points from the head of the queue: the points
// sent, or -1 if VictoriaMetrics did not take them (they stay queued).
func (v *Victoria) send(ctx context.Context) int {
	v.mu.Lock()
	var body bytes.Buffer
	first, n, parts := v.head, 0, 0
	for _, p := range v.queue {
		if n > 0 && n+p.points > MaxBatch {
			break
		}
		body.Write(p.lines)
		n += p.points
		parts++
	}
	v.mu.Unlock()
	if n == 0 {
		return 0
	}
	if err := v.post(ctx, "/api/v1/import/prometheus", &body); err != nil {
		v.errs.Inc()
		v.mu.Lock()
		wasOK := !v.failing
		v.failing = true
		v.mu.Unlock()
		if wasOK {
			v.opts.Logger.Warn("victoriametrics: cannot push; samples wait in the queue", "url", v.base.Redacted(), "err", err)
		}
		return -1
	}
	v.mu.Lock()
	// Record may have dropped some of the oldest meanwhile: take off what
	// was sent and is still queued.
	if sent := int(first + uint64(parts) - v.head); sent > 0 {
		v.removeHead(min(sent, len(v.queue)))
	}
	recovered := v.failing
	v.failing = false
	v.mu.Unlock()
	v.pushed.Add(n)
	if recovered {
		v.opts.Logger.Info("victoriametrics: pushing again", "url", v.base.Redacted())
	}
	return n
}

// removeHead takes k parts off the head of the queue; v.mu is held.
func (v *Victoria) removeHead(k int) {
	for i := range k {
		v.queued -= v.queue[i].points
		v.queue[i] = batchPart{}
	}
	v.queue = v.queue[k:]
	v.head += uint64(k)
}

func (v *Victoria) post(ctx context.Context, path string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.base.String()+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	return v.do(req, nil)
}

// do sends a request and reads a JSON answer into out (if not nil).
func (v *Victoria) do(req *http.Request, out any) error {
	if v.opts.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+v.opts.BearerToken)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// seriesName is a series' name and labels, as its lines start. A metric's
// label named as one vigil sets (source, or a configured one) is kept as
// exported_<name>, as Prometheus keeps a scraped label a target's would
// hide.
func (v *Victoria) seriesName(source, metric string) string {
	name, labels := promName(metric)
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(`{source="`)
	b.WriteString(escapeLabel(source))
	b.WriteByte('"')
	for _, kv := range labels {
		k := kv[0]
		if _, ours := v.opts.Labels[k]; ours || k == "source" || strings.HasPrefix(k, "__") {
			k = "exported_" + strings.Trim(k, "_")
		}
		b.WriteString("," + k + `="` + escapeLabel(kv[1]) + `"`)
	}
	for _, k := range sortedKeys(v.opts.Labels) {
		b.WriteString("," + k + `="` + escapeLabel(v.opts.Labels[k]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// promName is a vigil metric's Prometheus name and labels:
// "fs.used_percent{mount=/}" → fs_used_percent, [[mount /]].
func promName(metric string) (string, [][2]string) {
	name, rest, hasLabels := strings.Cut(metric, "{")
	var labels [][2]string
	if hasLabels {
		for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			k, val, _ := strings.Cut(kv, "=")
			labels = append(labels, [2]string{sanitize(k), val})
		}
	}
	return sanitize(name), labels
}

// sanitize makes a Prometheus name: letters, digits and _, anything else
// made _, and _ before a digit that would come first.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

func validLabel(s string) bool { return s != "" && sanitize(s) == s }

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// Query reads a source's metrics from VictoriaMetrics over [from, to], at
// step (0: the finest that gives at most MaxPoints, and never finer than
// the sampling interval): each step's min, mean and max, from MetricsQL's
// rollup over the step. A point at t is the step that ends at t; its Agg
// is the step's start.
func (v *Victoria) Query(ctx context.Context, source string, metricNames []string, from, to time.Time, step time.Duration) (Result, error) {
	if !to.After(from) {
		return Result{}, fmt.Errorf("from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	step = max(step, v.opts.Interval, (to.Sub(from)+MaxPoints-1)/MaxPoints)
	step = step.Round(time.Second)
	if step < time.Second {
		step = time.Second
	}
	res := Result{Step: step, Series: map[string][]Agg{}}
	for _, metric := range metricNames {
		aggs, err := v.rollup(ctx, source, metric, from, to, step)
		if err != nil {
			return Result{}, fmt.Errorf("%w: victoriametrics: %v", ErrUnavailable, err)
		}
		res.Series[metric] = aggs
	}
	return res, nil
}

type queryAnswer struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"` // [unix seconds, "value"]
		} `json:"result"`
	} `json:"data"`
}

func (v *Victoria) rollup(ctx context.Context, source, metric string, from, to time.Time, step time.Duration) ([]Agg, error) {
	sel := v.seriesName(source, metric)
	secs := strconv.FormatInt(int64(step/time.Second), 10)
	q := url.Values{
		"query": {"rollup(" + sel + "[" + secs + "s])"},
		"start": {strconv.FormatInt(from.Add(step).Unix(), 10)}, // the first step that ends in range
		"end":   {strconv.FormatInt(to.Unix(), 10)},
		"step":  {secs + "s"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.base.String()+"/api/v1/query_range", strings.NewReader(q.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var ans queryAnswer
	if err := v.do(req, &ans); err != nil {
		return nil, err
	}
	if ans.Status != "success" {
		return nil, errors.New(ans.Error)
	}
	byTime := map[int64]*Agg{}
	var order []int64
	for _, r := range ans.Data.Result {
		for _, pair := range r.Values {
			sec, _ := pair[0].(float64)
			s, _ := pair[1].(string)
			val, err := strconv.ParseFloat(s, 64)
			if err != nil {
				continue
			}
			t := int64(sec)
			a := byTime[t]
			if a == nil {
				a = &Agg{T: time.Unix(t, 0).Add(-step), Count: 1}
				byTime[t] = a
				order = append(order, t)
			}
			switch r.Metric["rollup"] {
			case "min":
				a.Min = val
			case "max":
				a.Max = val
			case "avg":
				a.Sum = val
			}
		}
	}
	slices.Sort(order)
	out := make([]Agg, len(order))
	for i, t := range order {
		out[i] = *byTime[t]
	}
	return out, nil
}
