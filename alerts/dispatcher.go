package alerts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/stream"
)

// Dispatcher defaults.
const (
	DefaultAttemptTimeout = 10 * time.Second
	DefaultPerReceiver    = 2   // concurrent attempts to one receiver
	DefaultGlobal         = 256 // concurrent attempts in all: enough that 2 per dead receiver cannot starve the rest
	DefaultMaxAttempts    = 20  // 14 to 21 hours with the backoff below
	BackoffBase           = 5 * time.Second
	BackoffMax            = 2 * time.Hour
	MaxResponseBytes      = 64 << 10
	DefaultShutdownGrace  = time.Second      // attempts under way when vigil stops get this long to finish
	breakerFailures       = 5                // consecutive failures that open a receiver's breaker
	breakerOpen           = 30 * time.Second // how long an open breaker skips the receiver
)

// Dispatcher sends queued deliveries: Standard Webhooks headers and
// signature, a timeout per attempt, retries with exponential backoff and
// jitter for 5xx, 429 (honouring Retry-After), timeouts and network
// errors; 410 Gone disables the receiver; other answers are permanent
// failures, redirects included (they are not followed). A concurrency
// limit and a circuit breaker per receiver, and a global cap, keep dead or
// slow receivers from delaying the others.
type Dispatcher struct {
	DB          *DB
	Client      *http.Client // NewClient; its timeout is the attempt timeout
	Now         func() time.Time
	Logger      *slog.Logger
	Metrics     *metrics.Set // nil: a private set
	PerReceiver int
	Global      int
	MaxAttempts int
	// ShutdownGrace is how long attempts under way may go on once Run's
	// context is done (DefaultShutdownGrace); then they are cut short and
	// sent again after the restart.
	ShutdownGrace time.Duration
	// Jitter returns a fraction in [0, 1); nil is random.
	Jitter func() float64
	// VAPID signs pushes to browsers; none: webpush receivers get none.
	VAPID *PushKeys

	mu       sync.Mutex
	inflight map[string]int // per receiver
	total    int
	breakers map[string]*breaker
	wake     chan struct{}
	once     sync.Once

	attempts   map[string]*metrics.Counter // by outcome
	deliveries map[string]*metrics.Counter // by final outcome
}

type breaker struct {
	failures  int
	openUntil time.Time
}

func (d *Dispatcher) init() {
	d.once.Do(func() {
		if d.Now == nil {
			d.Now = time.Now
		}
		if d.Logger == nil {
			d.Logger = slog.New(slog.DiscardHandler)
		}
		d.PerReceiver = cmp.Or(max(d.PerReceiver, 0), DefaultPerReceiver)
		d.Global = cmp.Or(max(d.Global, 0), DefaultGlobal)
		d.MaxAttempts = cmp.Or(max(d.MaxAttempts, 0), DefaultMaxAttempts)
		d.ShutdownGrace = cmp.Or(max(d.ShutdownGrace, 0), DefaultShutdownGrace)
		if d.Jitter == nil {
			d.Jitter = rand.Float64
		}
		if d.Metrics == nil {
			d.Metrics = metrics.NewSet()
		}
		d.attempts, d.deliveries = map[string]*metrics.Counter{}, map[string]*metrics.Counter{}
		for _, o := range []string{DeliveryDelivered, "retry", DeliveryDead} {
			d.attempts[o] = d.Metrics.GetOrCreateCounter(`vigil_webhook_attempts_total{outcome="` + o + `"}`)
		}
		for _, o := range []string{DeliveryDelivered, DeliveryDead} {
			d.deliveries[o] = d.Metrics.GetOrCreateCounter(`vigil_webhook_deliveries_total{outcome="` + o + `"}`)
		}
		d.inflight = map[string]int{}
		d.breakers = map[string]*breaker{}
		d.wake = make(chan struct{}, 1)
	})
}

// Wake makes the dispatcher look for due deliveries now.
func (d *Dispatcher) Wake() {
	d.init()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run sends deliveries until ctx is done. Deliveries left in flight by a
// previous run (a crash, or attempts cut short by a stop) are sent again
// first. When ctx is done, attempts under way get ShutdownGrace to finish;
// the rest are cut short, recorded as nothing, and stay in flight for the
// next run to send again.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.init()
	if err := d.DB.requeueInFlight(ctx, d.Now()); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: no failure
		}
		return err
	}
	attempts, cutShort := context.WithCancel(context.WithoutCancel(ctx))
	defer cutShort()
	var wg sync.WaitGroup
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	d.prune(ctx)
	for {
		d.start(ctx, attempts, &wg)
		select {
		case <-ctx.Done():
			grace := time.AfterFunc(d.ShutdownGrace, cutShort)
			wg.Wait()
			grace.Stop()
			return nil
		case <-t.C:
		case <-d.wake:
		case <-prune.C:
			d.prune(ctx)
		}
	}
}

func (d *Dispatcher) prune(ctx context.Context) {
	n, e, err := d.DB.prune(ctx, d.Now())
	switch {
	case err != nil && !errors.Is(err, context.Canceled):
		d.Logger.Error("webhook outbox", "err", err)
	case n+e > 0:
		d.Logger.Info("webhook outbox pruned", "deliveries", n, "events", e)
	}
}

// start claims what is due and starts an attempt for each, under
// attempts, a context that outlives ctx for a grace period.
func (d *Dispatcher) start(ctx, attempts context.Context, wg *sync.WaitGroup) {
	now := d.Now()
	d.mu.Lock()
	free := d.Global - d.total
	d.mu.Unlock()
	if free <= 0 {
		return
	}
	// How many more attempts each receiver may have running: none while
	// its breaker is open. One lock for all of them.
	rooms := func(rcvs []Receiver, out []int) {
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, s := range rcvs {
			if b := d.breakers[s.ID]; b != nil && now.Before(b.openUntil) {
				out[i] = 0
				continue
			}
			out[i] = d.PerReceiver - d.inflight[s.ID]
		}
	}
	claims, err := d.DB.due(ctx, now, free, rooms)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.Logger.Error("webhook outbox", "err", err)
		}
		return
	}
	for _, c := range claims {
		d.mu.Lock()
		d.inflight[c.ReceiverID]++
		d.total++
		d.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.attempt(attempts, c)
			d.mu.Lock()
			d.inflight[c.ReceiverID]--
			d.total--
			d.mu.Unlock()
			d.Wake()
		}()
	}
}

// An Outcome is what one attempt came to.
type Outcome struct {
	Retry      bool          // worth another attempt: a 5xx, a 429, a timeout, a network error
	RetryAfter time.Duration // from a 429's Retry-After
	Gone       bool          // 410: disable the receiver
	Verified   bool          // the receiver echoed its challenge: make it active
	Err        string        // "" when delivered
}

func (d *Dispatcher) attempt(ctx context.Context, c claim) {
	start := d.Now()
	a := Attempt{At: start}
	var o Outcome
	if c.rcv.Status == ReceiverDisabled || c.rcv.URL == "" {
		o = Outcome{Err: "receiver disabled or deleted"}
	} else {
		a.Status, o = d.send(ctx, c)
	}
	if ctx.Err() != nil {
		// Cut short by a stop: not the receiver's doing. It stays in
		// flight in the outbox and the next run sends it again.
		d.Logger.Info("webhook attempt cut short by shutdown; it is sent again after the restart", "delivery", c.ID, "receiver", c.ReceiverID)
		return
	}
	a.DurationMS = d.Now().Sub(start).Milliseconds()
	a.Error = o.Err
	now := d.Now()
	state, next := DeliveryDelivered, time.Time{}
	switch {
	case o.Err == "":
	case o.Retry && c.attempts+1 < d.MaxAttempts:
		state, next = DeliveryQueued, now.Add(Backoff(c.attempts+1, o.RetryAfter, d.Jitter()))
	default:
		state = DeliveryDead
	}
	d.trip(c.ReceiverID, o.Err == "" || !o.Retry, now)
	ctx = context.WithoutCancel(ctx) // the answer came: record it even if a stop cuts attempts short now
	switch {
	case o.Gone && c.rcv.Type == TypeWebPush: // an expired subscription: the browser subscribes anew
		if err := d.DB.DeleteReceiver(ctx, c.ReceiverID); err != nil && !errors.Is(err, ErrNotFound) {
			d.Logger.Error("remove an expired push subscription", "receiver", c.ReceiverID, "err", err)
		}
	case o.Gone:
		if err := d.DB.setStatus(ctx, c.ReceiverID, ReceiverDisabled, now); err != nil {
			d.Logger.Error("disable receiver", "receiver", c.ReceiverID, "err", err)
		}
	}
	for _, m := range append([]claim{c}, c.members...) { // a group's attempt is each of its alerts'
		if err := d.DB.record(ctx, m.ID, a, state, next, o.Err, now); err != nil {
			d.Logger.Error("record webhook attempt", "delivery", m.ID, "err", err)
		}
		if state == DeliveryQueued {
			d.attempts["retry"].Inc()
		} else {
			d.attempts[state].Inc()
			d.deliveries[state].Inc()
		}
	}
	if o.Err != "" {
		d.Logger.Warn("webhook attempt failed", "delivery", c.ID, "receiver", c.ReceiverID, "status", a.Status, "err", o.Err, "next", state)
	}
}

// trip counts consecutive failures per receiver and opens its breaker.
func (d *Dispatcher) trip(rcv string, ok bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.breakers[rcv]
	if b == nil {
		b = &breaker{}
		d.breakers[rcv] = b
	}
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= breakerFailures {
		b.openUntil = now.Add(breakerOpen)
	}
}

// Backoff is how long to wait before attempt n+1 of a delivery:
// BackoffBase·2^(n-1), capped, with full jitter (a fraction in [0, 1))
// over its upper half so retries of many deliveries spread out; a
// Retry-After wins when longer.
func Backoff(n int, retryAfter time.Duration, jitter float64) time.Duration {
	b := float64(BackoffBase) * math.Pow(2, float64(n-1))
	b = min(b, float64(BackoffMax))
	wait := time.Duration(b/2 + b/2*jitter)
	return max(wait, min(retryAfter, BackoffMax))
}

// send makes the attempt, and activates a receiver that echoed its
// challenge.
func (d *Dispatcher) send(ctx context.Context, c claim) (int, Outcome) {
	del := c.Delivery
	// A grouping receiver's alert messages are all group-shaped, one alert
	// or many (group.go).
	if c.rcv.GroupWait > 0 && (c.EventType == EventFiring || c.EventType == EventResolved) {
		bodies := [][]byte{c.Payload}
		for _, m := range c.members {
			bodies = append(bodies, m.Payload)
		}
		b, err := GroupPayload(c.rcv, bodies)
		if err != nil {
			return 0, Outcome{Err: err.Error()}
		}
		del.Payload = b
	}
	code, o := Sender{Client: d.Client, Now: d.Now, VAPID: d.VAPID}.Send(ctx, c.rcv, del)
	if o.Verified {
		if err := d.DB.setStatus(ctx, c.ReceiverID, ReceiverActive, d.Now()); err != nil {
			return code, Outcome{Retry: true, Err: "verification: " + err.Error()}
		}
	}
	return code, o
}

// A Sender makes one attempt of a delivery to a receiver and judges the
// answer; Dispatcher and cluster.Webhooks send with it. A refused address
// (ErrBlockedAddress) is configuration, not weather: no retry. A
// verification counts as delivered only when the answer echoes the
// challenge, in a JSON body or an X-Hook-Secret header; then Verified
// says the receiver must be made active.
type Sender struct {
	Client *http.Client // NewClient; its timeout is the attempt timeout
	Now    func() time.Time
	VAPID  *PushKeys // signs pushes to browsers (webpush receivers); none: none are sent
}

// Send POSTs d's payload to rcv, signed with rcv's secrets, and returns
// the HTTP status (0 without an answer) and the outcome. Its error text is
// bounded and never holds the receiver's URL.
func (s Sender) Send(ctx context.Context, rcv Receiver, d Delivery) (int, Outcome) {
	code, o := s.send(ctx, rcv, d)
	o.Err = stream.Clip(o.Err, stream.MaxTextBytes) // a receiver's words: bounded before they are stored or logged
	return code, o
}

func (s Sender) send(ctx context.Context, rcv Receiver, d Delivery) (int, Outcome) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	switch rcv.Type {
	case TypeEmail:
		return s.sendEmail(ctx, rcv, d, now)
	case TypeMQTT:
		return s.sendMQTT(ctx, rcv, d)
	}
	req, err := s.request(rcv, d, now)
	if err != nil {
		return 0, Outcome{Err: err.Error()}
	}
	resp, err := s.Client.Do(req.WithContext(ctx))
	if err != nil {
		// A refused address is configuration, not weather: no retry. The
		// error names neither URL (a Telegram one holds the bot's token).
		msg := redact(err, req.URL.String())
		if rcv.URL != "" {
			msg = strings.ReplaceAll(msg, rcv.URL, "<url>")
		}
		return 0, Outcome{Retry: !errors.Is(err, ErrBlockedAddress), Err: msg}
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300 && d.EventType == EventVerify:
		// The receiver proves it wants these webhooks by echoing the
		// challenge, in a JSON body or an X-Hook-Secret header.
		var echo struct {
			Challenge string `json:"challenge"`
		}
		json.Unmarshal(answer, &echo)
		if rcv.Challenge == "" || (echo.Challenge != rcv.Challenge && resp.Header.Get("X-Hook-Secret") != rcv.Challenge) {
			return code, Outcome{Err: "verification: the answer did not echo the challenge"}
		}
		return code, Outcome{Verified: true}
	case code >= 200 && code < 300:
		return code, Outcome{}
	case code == http.StatusGone || (code == http.StatusNotFound && rcv.Type == TypeWebPush):
		if rcv.Type == TypeWebPush {
			return code, Outcome{Gone: true, Err: resp.Status + ": the browser's subscription expired; removed"}
		}
		return code, Outcome{Gone: true, Err: "410 Gone: receiver disabled"}
	case (code == http.StatusUnauthorized || code == http.StatusForbidden) && rcv.Type == TypeWebPush:
		return code, Outcome{Err: resp.Status + ": the push service refused vigil's VAPID signature: set alerts.push_subject to a mailto: or https: address; " +
			"or vigil's keys changed since the browser subscribed (it must subscribe again)"}
	case code == http.StatusTooManyRequests:
		return code, Outcome{Retry: true, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now), Err: "429 Too Many Requests"}
	case code >= 500:
		return code, Outcome{Retry: true, Err: resp.Status}
	case code >= 300 && code < 400:
		return code, Outcome{Err: resp.Status + ": redirects are not followed"}
	}
	return code, Outcome{Err: resp.Status}
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}

// redact keeps a target's URL (which may hold credentials or tokens) out
// of errors that are logged and shown.
func redact(err error, url string) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	msg := err.Error()
	if url != "" {
		msg = strings.ReplaceAll(msg, url, "<url>")
	}
	return msg
}
