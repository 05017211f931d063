// Package tail is "vigil tail": it follows a vigil's event stream from a
// terminal, one line per event, and resumes with Last-Event-ID after a
// disconnect. It is a client of the HTTP surface in package dashboard and
// knows nothing else of vigil but the event JSON and how numbers are shown
// (package units).
package tail

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"vigil/stream"
	"vigil/units"
)

// Options configure Follow.
type Options struct {
	URL     string   // a vigil base URL, or its /events URL
	Sources []string // ?source= patterns
	Types   []string // ?type= event types
	From    string   // resume after this event id; "" starts now
	JSON    bool     // print each event's JSON as it came, one per line
	Color   bool     // ANSI colours
	Out     io.Writer
	Status  io.Writer // disconnects and reconnects; nil: not shown
	Client  *http.Client
	// MaxRetry caps the wait between reconnects (DefaultMaxRetry).
	MaxRetry time.Duration
	// Wait waits between reconnects; nil sleeps (tests pass their own).
	Wait func(ctx context.Context, d time.Duration) error
	// Jitter spreads reconnects: a random duration in [0, n); nil uses
	// math/rand.
	Jitter func(n time.Duration) time.Duration
}

// DefaultMaxRetry caps the wait between reconnects.
const DefaultMaxRetry = 30 * time.Second

// ErrRefused is wrapped when the server answers with an error that
// retrying will not fix (a bad filter, a wrong URL).
var ErrRefused = errors.New("refused")

// Follow follows a vigil event stream and writes one line per event until
// ctx is done. After a disconnect it reconnects with Last-Event-ID, so no
// event is missed or repeated while the server still holds them (a reset
// line says when it does not). It returns nil when ctx ends, or an error
// the server gave that a retry would not fix.
func Follow(ctx context.Context, o Options) error {
	u, err := tailURL(o)
	if err != nil {
		return err
	}
	if o.Client == nil {
		o.Client = &http.Client{} // no timeout: the stream is long
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = DefaultMaxRetry
	}
	if o.Wait == nil {
		o.Wait = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if o.Jitter == nil {
		o.Jitter = func(n time.Duration) time.Duration { return rand.N(max(n, 1)) }
	}
	p := &printer{o: o}
	last := o.From
	delay := time.Second
	for attempt := 0; ; attempt++ {
		got, err := p.follow(ctx, u, &last, attempt > 0)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		if got {
			delay = time.Second // it worked for a while: start over
		}
		wait := delay/2 + o.Jitter(delay/2+1)
		if o.Status != nil {
			why := "stream ended"
			if err != nil {
				why = err.Error()
			}
			resume := ""
			if last != "" {
				resume = ", to resume after event " + last
			}
			fmt.Fprintf(o.Status, "vigil tail: %s; reconnecting in %s%s\n", why, wait.Round(100*time.Millisecond), resume)
		}
		if o.Wait(ctx, wait) != nil {
			return nil
		}
		delay = min(delay*2, o.MaxRetry)
	}
}

// tailURL is the /events URL with the filter.
func tailURL(o Options) (string, error) {
	raw := o.URL
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad URL %q: want the address of a vigil server, such as http://localhost:8080", o.URL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/events"
	}
	q := u.Query()
	if len(o.Sources) > 0 {
		q.Set("source", strings.Join(o.Sources, ","))
	}
	if len(o.Types) > 0 {
		q.Set("type", strings.Join(o.Types, ","))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// follow reads one connection's events. got reports whether any arrived.
func (p *printer) follow(ctx context.Context, u string, last *string, again bool) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	resp, err := p.o.Client.Do(req)
	var badCert *tls.CertificateVerificationError
	if errors.As(err, &badCert) {
		// Trying again meets the same certificate.
		return false, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		msg := fmt.Sprintf("%s answered %s", u, resp.Status)
		if e.Error != "" {
			msg += ": " + e.Error
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return false, fmt.Errorf("%w: %s", ErrRefused, msg)
		}
		return false, errors.New(msg)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("%w: %s is not an event stream (Content-Type %q): is this a vigil server?", ErrRefused, u, ct)
	}
	if p.o.Status != nil && again {
		if *last == "" {
			fmt.Fprintln(p.o.Status, "vigil tail: connected again, from the newest event (none seen before)")
		} else {
			fmt.Fprintf(p.o.Status, "vigil tail: connected again, resuming after event %s\n", *last)
		}
	}
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 16 << 20}) {
		if err != nil {
			return got, err
		}
		got = true
		if ev.LastEventID != "" {
			*last = ev.LastEventID
		}
		if ev.Type == "" && ev.Data == "" {
			continue // the stream's retry hint, or a position: nothing to show
		}
		if err := p.print(ev.Type, []byte(ev.Data)); err != nil {
			return got, fmt.Errorf("%w: writing: %v", ErrRefused, err)
		}
	}
	return got, nil
}

// printer writes events as lines.
type printer struct {
	o   Options
	buf bytes.Buffer
}

// tailEvent is every field a line may show.
type tailEvent struct {
	Seq         uint64             `json:"seq"`
	Type        string             `json:"type"`
	TS          time.Time          `json:"ts"`
	Source      string             `json:"source"`
	Metrics     map[string]float64 `json:"metrics"`
	State       string             `json:"state"`
	Error       string             `json:"error"`
	Transition  string             `json:"transition"`
	Rule        string             `json:"rule"`
	Metric      string             `json:"metric"`
	Value       float64            `json:"value"`
	Threshold   float64            `json:"threshold"`
	Op          string             `json:"op"`
	Severity    string             `json:"severity"`
	AckedBy     string             `json:"acked_by"`
	Annotations map[string]string  `json:"annotations"`
	Reason      string             `json:"reason"`
	Events      []json.RawMessage  `json:"events"`
}

// ANSI colours.
const (
	cReset  = "\x1b[0m"
	cDim    = "\x1b[2m"
	cBold   = "\x1b[1m"
	cRed    = "\x1b[31m"
	cGreen  = "\x1b[32m"
	cYellow = "\x1b[33m"
	cBlue   = "\x1b[34m"
	cCyan   = "\x1b[36m"
)

func (p *printer) c(code, s string) string {
	if !p.o.Color || s == "" {
		return s
	}
	return code + s + cReset
}

func (p *printer) print(typ string, data []byte) error {
	p.buf.Reset()
	if p.o.JSON || !slices.Contains([]string{"sample", "source", "alert", "reset"}, typ) {
		p.buf.Write(data)
		p.buf.WriteByte('\n')
	} else {
		var ev tailEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil // not one of ours; nothing to show
		}
		if ev.Type == "" {
			ev.Type = typ
		}
		p.line(&ev)
	}
	_, err := p.o.Out.Write(p.buf.Bytes())
	return err
}

// readable replaces, in every text an event carries, the characters that
// would change how the line reads or what the terminal does (a
// right-to-left override, an escape sequence).
func (ev *tailEvent) readable() {
	for _, f := range []*string{&ev.Source, &ev.State, &ev.Error, &ev.Transition, &ev.Rule, &ev.Metric, &ev.Op,
		&ev.Severity, &ev.AckedBy, &ev.Reason} {
		*f = stream.Readable(*f)
	}
	for k, v := range ev.Annotations {
		ev.Annotations[k] = stream.Readable(v)
	}
	for k, v := range ev.Metrics {
		if r := stream.Readable(k); r != k {
			delete(ev.Metrics, k)
			ev.Metrics[r] = v
		}
	}
}

// headline metrics, shown first and in this order when a sample has them.
var headline = []string{
	"cpu.percent", "mem.used_percent", "load.1", "swap.used_percent",
	"http.requests_per_sec", "http.error_percent", "http.latency_p50_seconds", "http.latency_p99_seconds",
	"instances.up", "probe.up", "scrape.up",
}

// maxLineMetrics is how many metrics a sample line shows before "+N more".
const maxLineMetrics = 6

func (p *printer) line(ev *tailEvent) {
	ev.readable()
	b := &p.buf
	ts := ev.TS.Local().Format("15:04:05.000")
	fmt.Fprintf(b, "%s %s %s", p.c(cDim, ts), p.c(cBlue, fmt.Sprintf("%-6s", ev.Type)), p.c(cBold, fmt.Sprintf("%-20s", ev.Source)))
	switch ev.Type {
	case "sample":
		names := make([]string, 0, len(ev.Metrics))
		for m := range ev.Metrics {
			names = append(names, m)
		}
		// Headline metrics first, then the others; per-label series
		// (one per core, instance or mount) last.
		rank := func(m string) int {
			if i := slices.Index(headline, m); i >= 0 {
				return i
			}
			if strings.Contains(m, "{") {
				return len(headline) + 1
			}
			return len(headline)
		}
		slices.SortFunc(names, func(a, b string) int {
			if ra, rb := rank(a), rank(b); ra != rb {
				return ra - rb
			}
			return strings.Compare(a, b)
		})
		for i, m := range names {
			if i == maxLineMetrics {
				b.WriteString(p.c(cDim, fmt.Sprintf(" +%d more", len(names)-i)))
				break
			}
			fmt.Fprintf(b, " %s=%s", m, units.Format(m, ev.Metrics[m]))
		}
	case "source":
		col := cGreen
		if ev.State != "up" {
			col = cRed
		}
		b.WriteString(" " + p.c(col, ev.State))
		if ev.Error != "" {
			b.WriteString(": " + ev.Error)
		}
	case "alert":
		what := ev.Transition
		col := map[string]string{"firing": cRed, "pending": cYellow, "resolved": cGreen, "inactive": cGreen, "acknowledged": cCyan}[what]
		if col == "" {
			col = cDim
		}
		fmt.Fprintf(b, " %s %s %s", p.c(col+cBold, strings.ToUpper(what)), ev.Severity, p.c(cBold, ev.Rule))
		fmt.Fprintf(b, " %s=%s", ev.Metric, units.Format(ev.Metric, ev.Value))
		if ev.Op != "" {
			fmt.Fprintf(b, " (%s %s)", ev.Op, units.Format(ev.Metric, ev.Threshold))
		}
		if s := ev.Annotations["summary"]; s != "" {
			b.WriteString(" — " + s)
		}
		if ev.AckedBy != "" {
			b.WriteString(p.c(cCyan, " acknowledged by "+ev.AckedBy))
		}
	case "reset":
		fmt.Fprintf(b, "%s position lost (%s); current state follows (%d events)", p.c(cYellow, "stream reset:"), ev.Reason, len(ev.Events))
		b.WriteByte('\n')
		for _, raw := range ev.Events {
			var inner tailEvent
			if json.Unmarshal(raw, &inner) == nil {
				p.line(&inner)
			}
		}
		return
	}
	b.WriteByte('\n')
}
