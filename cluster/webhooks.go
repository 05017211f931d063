package cluster

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
)

// The shared outbox's streams and buckets.
const (
	// WebhooksStream is the work queue: one message per delivery, on the
	// subject WebhooksSubject.<receiver>, removed once it is delivered or
	// dead.
	WebhooksStream  = "VIGIL_WEBHOOKS"
	WebhooksSubject = "vigil.webhooks"
	// DeadStream keeps dead deliveries, on DeadSubject.<receiver>, for
	// alerts.DeliveryRetention: a retry through the API sends one again.
	DeadStream  = "VIGIL_WEBHOOKS_DEAD"
	DeadSubject = "vigil.webhooks-dead"
	// ReceiversBucket holds the receivers and their secrets;
	// DeliveriesBucket each delivery's state and attempts, for
	// alerts.DeliveryRetention after its last change.
	ReceiversBucket  = "VIGIL_RECEIVERS"
	DeliveriesBucket = "VIGIL_DELIVERIES"
	// webhookDuplicates is how long the work queue remembers a delivery's
	// id: the same transition published again by a save made again, or
	// by the replica that takes the lease over, is kept once.
	webhookDuplicates = time.Hour
	// webhookAckWait is how long a delivery may be in flight on a
	// replica that says nothing before NATS gives it to another: one
	// killed or cut off mid-attempt holds its receiver's queue this long.
	// It is longer than an attempt may take, so a replica cut off from
	// NATS has given up its attempt before another starts one; and a
	// replica says "in progress" every third of it until it is done.
	webhookAckWait = alerts.DefaultAttemptTimeout + 5*time.Second
)

// Headers of a delivery's message.
const (
	hdrDelivery = "Vigil-Delivery" // its id: the webhook-id header
	hdrEvent    = "Vigil-Event"    // the event type
	hdrCreated  = "Vigil-Created"  // RFC 3339
)

// Webhooks is the outbox the replicas share, in NATS JetStream. Every
// replica sends from it: each receiver has a subject in a work-queue
// stream and one durable consumer, which every replica pulls from, with
// one delivery in flight at a time, so a receiver gets its webhooks in
// order and each once (at least once: a replica that dies mid-attempt
// leaves it to another after webhookAckWait). A failed attempt is
// retried with alerts.Backoff through NakWithDelay; after MaxAttempts,
// or at once for a permanent failure, the delivery goes to the
// dead-letter stream. The receivers, their secrets and each delivery's
// attempts are in key-value buckets that every replica watches, so the
// receivers API answers the same on all of them (alerts.Outbox).
//
// The lease holder publishes each transition's webhooks (Publish) before
// it saves the states, with ids made from the alert and its episode: if
// it dies between the two, the holder after it makes the same transition
// and its webhooks are kept once.
type Webhooks struct {
	// DashboardURL is the base of links in webhook bodies; set before
	// Run.
	DashboardURL string

	js   jetstream.JetStream
	opts WebhookOptions
	log  *slog.Logger

	rcvs *watched // receiver id → storedReceiver
	dels *watched // delivery id → storedDelivery

	streams   sync.Mutex
	streamsOK bool

	mu      sync.Mutex
	workers map[string]context.CancelFunc // receiver id → its worker on this replica
	working sync.WaitGroup                // the workers
	runCtx  context.Context               // Run's; nil before it

	attempts   map[string]*metrics.Counter // by outcome
	deliveries map[string]*metrics.Counter // by final outcome

	held heldGroups // grouping receivers' firings, for their group_wait (groups.go)
	// Holding, when set, says whether this replica holds the alert lease:
	// a group held by one that lost it is left to the next holder.
	Holding func() bool
}

var _ alerts.Outbox = (*Webhooks)(nil)

// WebhookOptions configure the shared outbox.
type WebhookOptions struct {
	Replicas    int           // of the streams and buckets
	Sender      alerts.Sender // makes each attempt
	MaxAttempts int           // alerts.DefaultMaxAttempts
	// Configured are the receivers of the config file, saved once the
	// receivers bucket is read (alerts.Receivers.Configure).
	Configured []alerts.ConfiguredReceiver
	// Backoff is the wait before attempt n+1 (nil: alerts.Backoff with
	// random jitter).
	Backoff func(n int, retryAfter time.Duration) time.Duration
	Logger  *slog.Logger
	Metrics *metrics.Set
}

// NewWebhooks returns the shared outbox; Run opens its streams and
// buckets and sends.
func NewWebhooks(js jetstream.JetStream, opts WebhookOptions) *Webhooks {
	opts.Replicas = max(opts.Replicas, 1)
	opts.MaxAttempts = cmp.Or(max(opts.MaxAttempts, 0), alerts.DefaultMaxAttempts)
	if opts.Backoff == nil {
		opts.Backoff = func(n int, retryAfter time.Duration) time.Duration {
			return alerts.Backoff(n, retryAfter, rand.Float64())
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	w := &Webhooks{js: js, opts: opts, log: opts.Logger, workers: map[string]context.CancelFunc{},
		attempts: map[string]*metrics.Counter{}, deliveries: map[string]*metrics.Counter{}}
	w.rcvs = newWatched(newBucket(js, jetstream.KeyValueConfig{Bucket: ReceiversBucket,
		Description: "vigil's webhook receivers and their secrets", Replicas: opts.Replicas}), "receivers", w.log)
	w.rcvs.changed = func(string) { w.reconcile() }
	w.rcvs.decode = func(_ string, b []byte) (any, error) { return decodeReceiver(b) }
	w.dels = newWatched(newBucket(js, jetstream.KeyValueConfig{Bucket: DeliveriesBucket,
		Description: "vigil's webhook deliveries", Replicas: opts.Replicas, TTL: alerts.DeliveryRetention}), "deliveries", w.log)
	w.dels.decode = func(_ string, b []byte) (any, error) {
		var d storedDelivery
		err := json.Unmarshal(b, &d)
		if d.Attempts == nil {
			d.Attempts = []alerts.Attempt{}
		}
		return d, err
	}
	for _, o := range []string{alerts.DeliveryDelivered, "retry", alerts.DeliveryDead} {
		w.attempts[o] = opts.Metrics.GetOrCreateCounter(`vigil_webhook_attempts_total{outcome="` + o + `"}`)
	}
	for _, o := range []string{alerts.DeliveryDelivered, alerts.DeliveryDead} {
		w.deliveries[o] = opts.Metrics.GetOrCreateCounter(`vigil_webhook_deliveries_total{outcome="` + o + `"}`)
	}
	return w
}

// Run watches the buckets, saves the configured receivers, and runs a
// worker for each receiver until ctx is done; attempts under way then
// end at once and their deliveries go back to NATS for another replica.
func (w *Webhooks) Run(ctx context.Context) error {
	w.mu.Lock()
	w.runCtx = ctx
	w.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { w.rcvs.run(ctx) })
	wg.Go(func() { w.dels.run(ctx) })
	wg.Go(func() { w.expire(ctx) })
	wg.Go(func() {
		if w.rcvs.wait(ctx) != nil {
			return
		}
		w.reconcile()
		retry(ctx, func() (bool, error) {
			return false, (&alerts.Receivers{Outbox: w}).Configure(ctx, w.opts.Configured)
		}, func(err error, wait time.Duration) {
			w.log.Warn("saving the configured receivers in NATS", "err", err, "retry_in", wait)
		})
	})
	<-ctx.Done()
	wg.Wait()
	w.mu.Lock()
	for id, stop := range w.workers {
		stop()
		delete(w.workers, id)
	}
	w.mu.Unlock()
	w.working.Wait()
	return nil
}

// expire forgets, every hour, the deliveries the bucket no longer keeps:
// a key that ages out of a bucket is not announced to its watchers.
func (w *Webhooks) expire(ctx context.Context) {
	every(ctx, time.Hour, func() {
		old := time.Now().Add(-alerts.DeliveryRetention)
		for _, d := range w.stored("") {
			if d.UpdatedAt.Before(old) {
				w.dels.forget(d.ID)
			}
		}
	})
}

// reconcile runs a worker for each receiver and stops those of receivers
// that are gone.
func (w *Webhooks) reconcile() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runCtx == nil || w.runCtx.Err() != nil {
		return
	}
	ids := map[string]bool{}
	w.rcvs.each(func(id string, _ any, _ uint64) { ids[id] = true })
	for id, stop := range w.workers {
		if _, ok := ids[id]; !ok {
			stop()
			delete(w.workers, id)
		}
	}
	for id := range ids {
		if _, ok := w.workers[id]; !ok {
			ctx, stop := context.WithCancel(w.runCtx)
			w.workers[id] = stop
			w.working.Go(func() { w.work(ctx, id) })
		}
	}
}

// token is a receiver id as one subject token and consumer name: a
// configured receiver's name may hold dots, which no id has otherwise.
func token(receiverID string) string { return strings.ReplaceAll(receiverID, ".", "~") }

func workSubject(receiverID string) string { return WebhooksSubject + "." + token(receiverID) }
func deadSubject(receiverID string) string { return DeadSubject + "." + token(receiverID) }
func consumerName(receiverID string) string {
	return "webhooks-" + token(receiverID)
}

// ensureStreams makes the work queue and the dead-letter stream, once.
func (w *Webhooks) ensureStreams(ctx context.Context) error {
	w.streams.Lock()
	defer w.streams.Unlock()
	if w.streamsOK {
		return nil
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: WebhooksStream, Description: "vigil's webhooks waiting for delivery", Subjects: []string{WebhooksSubject + ".>"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: w.opts.Replicas,
			MaxAge: alerts.DeliveryRetention, Duplicates: webhookDuplicates},
		{Name: DeadStream, Description: "vigil's dead webhook deliveries", Subjects: []string{DeadSubject + ".>"},
			Storage: jetstream.FileStorage, Replicas: w.opts.Replicas, MaxAge: alerts.DeliveryRetention},
	} {
		_, err := w.js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = w.js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica made it first
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	w.streamsOK = true
	return nil
}

// lostStreams makes the next ensureStreams look for the streams again.
func (w *Webhooks) lostStreams() {
	w.streams.Lock()
	w.streamsOK = false
	w.streams.Unlock()
}

// storedReceiver is a receiver as the bucket keeps it, with what its JSON
// leaves out.
type storedReceiver struct {
	alerts.Receiver
	Secret         string    `json:"secret"`
	OldSecret      string    `json:"old_secret,omitempty"`
	OldSecretUntil time.Time `json:"old_secret_until,omitzero"`
	Challenge      string    `json:"challenge,omitempty"`
}

func decodeReceiver(b []byte) (alerts.Receiver, error) {
	var s storedReceiver
	if err := json.Unmarshal(b, &s); err != nil {
		return alerts.Receiver{}, err
	}
	r := s.Receiver
	r.Secret, r.OldSecret, r.OldSecretUntil, r.Challenge = s.Secret, s.OldSecret, s.OldSecretUntil, s.Challenge
	return r, nil
}

// storedDelivery is a delivery as the bucket keeps it: no payload (that
// is in its message), and where its dead letter is.
type storedDelivery struct {
	alerts.Delivery
	DeadSeq uint64 `json:"dead_seq,omitempty"` // its message in DeadStream
	Retries int    `json:"retries,omitempty"`  // times sent again through the API
}

// readyWait is how long an API call waits for a bucket to be read (a
// replica that just started, NATS away) before it answers ErrStore.
const readyWait = 2 * time.Second

// ready waits, up to readyWait, for the receivers to be read.
func (w *Webhooks) ready(ctx context.Context) error {
	return waitRead(ctx, w.rcvs)
}

func waitRead(ctx context.Context, b *watched) error {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	if err := b.wait(ctx); err != nil {
		return fmt.Errorf("%w: the %s in NATS are not read yet", alerts.ErrStore, b.what)
	}
	return nil
}

// Receiver returns one receiver (alerts.Outbox).
func (w *Webhooks) Receiver(ctx context.Context, id string) (alerts.Receiver, error) {
	if err := w.ready(ctx); err != nil {
		return alerts.Receiver{}, err
	}
	v, ok := w.rcvs.value(id)
	if !ok {
		return alerts.Receiver{}, &alerts.NotFoundError{What: "receiver", ID: id}
	}
	return v.(alerts.Receiver), nil
}

// ListReceivers returns every receiver, by id (alerts.Outbox).
func (w *Webhooks) ListReceivers(ctx context.Context) ([]alerts.Receiver, error) {
	if err := w.ready(ctx); err != nil {
		return nil, err
	}
	out := []alerts.Receiver{}
	w.rcvs.each(func(_ string, v any, _ uint64) { out = append(out, v.(alerts.Receiver)) })
	slices.SortFunc(out, func(a, b alerts.Receiver) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PutReceiver saves a receiver with its secrets (alerts.Outbox).
func (w *Webhooks) PutReceiver(ctx context.Context, r alerts.Receiver) error {
	b, err := json.Marshal(storedReceiver{Receiver: r, Secret: r.Secret, OldSecret: r.OldSecret, OldSecretUntil: r.OldSecretUntil, Challenge: r.Challenge})
	if err != nil {
		return err
	}
	if err := w.rcvs.put(ctx, r.ID, b); err != nil {
		return storeErr("save receiver", err)
	}
	return nil
}

// storeErr is a failure of NATS, which the API answers with 503.
func storeErr(what string, err error) error {
	return fmt.Errorf("%w: %s in NATS: %w", alerts.ErrStore, what, err)
}

// DeleteReceiver removes a receiver; its queued deliveries die
// (alerts.Outbox). Its queue is emptied and its consumer deleted before
// the receiver, so a failure leaves a receiver to delete again; and its
// queue is emptied again after, of what was queued meanwhile.
func (w *Webhooks) DeleteReceiver(ctx context.Context, id string) error {
	if _, err := w.Receiver(ctx, id); err != nil {
		return err
	}
	if err := w.purge(ctx, id); err != nil {
		return storeErr("delete receiver", err)
	}
	if err := w.rcvs.remove(ctx, id); err != nil {
		return storeErr("delete receiver", err)
	}
	if err := w.purge(ctx, id); err != nil {
		w.log.Warn("emptying a deleted receiver's webhook queue", "receiver", id, "err", err)
	}
	now := time.Now()
	for _, d := range w.stored(id) {
		if d.State == alerts.DeliveryQueued || d.State == alerts.DeliveryInFlight {
			d.State, d.LastError, d.UpdatedAt, d.NextAttemptAt = alerts.DeliveryDead, "receiver deleted", now, time.Time{}
			w.record(ctx, d)
		}
	}
	return nil
}

// purge empties a receiver's queue and deletes its consumer.
func (w *Webhooks) purge(ctx context.Context, id string) error {
	if err := w.ensureStreams(ctx); err != nil {
		return err
	}
	if err := w.js.DeleteConsumer(ctx, WebhooksStream, consumerName(id)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	s, err := w.js.Stream(ctx, WebhooksStream)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(workSubject(id)))
}

// stored returns a receiver's deliveries ("": everyone's), newest first.
func (w *Webhooks) stored(receiverID string) []storedDelivery {
	var out []storedDelivery
	w.dels.each(func(_ string, v any, _ uint64) {
		if d := v.(storedDelivery); receiverID == "" || d.ReceiverID == receiverID {
			out = append(out, d)
		}
	})
	slices.SortFunc(out, func(a, b storedDelivery) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.ID, a.ID))
	})
	return out
}

// record saves a delivery's state; a failure is logged (the delivery
// itself is safe in its message).
func (w *Webhooks) record(ctx context.Context, d storedDelivery) {
	b, err := json.Marshal(d)
	if err == nil {
		err = w.dels.put(ctx, d.ID, b)
	}
	if err != nil {
		w.log.Error("record webhook delivery in NATS", "delivery", d.ID, "err", err)
	}
}

// recordEach records a delivery, or for a group message the delivery of
// each of its alerts.
func (w *Webhooks) recordEach(ctx context.Context, d storedDelivery, group []string) {
	if len(group) == 0 {
		w.record(ctx, d)
		return
	}
	for _, id := range group {
		md := d
		md.ID = id
		if old, err := w.delivery(ctx, id); err == nil {
			md.CreatedAt, md.Retries = old.CreatedAt, max(old.Retries, d.Retries)
		}
		w.record(ctx, md)
	}
}

// Delivery returns one delivery with its attempts (alerts.Outbox).
func (w *Webhooks) Delivery(ctx context.Context, id string) (alerts.Delivery, error) {
	d, err := w.delivery(ctx, id)
	return d.Delivery, err
}

func (w *Webhooks) delivery(ctx context.Context, id string) (storedDelivery, error) {
	if err := waitRead(ctx, w.dels); err != nil {
		return storedDelivery{}, err
	}
	v, ok := w.dels.value(id)
	if !ok {
		return storedDelivery{}, &alerts.NotFoundError{What: "delivery", ID: id}
	}
	d := v.(storedDelivery)
	d.Attempts = slices.Clone(d.Attempts) // the copy's own stays as it is
	return d, nil
}

// Deliveries returns a receiver's deliveries, newest first
// (alerts.Outbox).
func (w *Webhooks) Deliveries(ctx context.Context, receiverID string, limit int) ([]alerts.Delivery, error) {
	if err := waitRead(ctx, w.dels); err != nil {
		return nil, err
	}
	out := []alerts.Delivery{}
	for _, d := range w.stored(receiverID) {
		if len(out) == limit {
			break
		}
		out = append(out, d.Delivery)
	}
	return out, nil
}

// Backlog is how many deliveries wait for a receiver that no replica has
// started yet (alerts.Outbox).
func (w *Webhooks) Backlog(ctx context.Context, receiverID string) (int, error) {
	if _, err := w.Receiver(ctx, receiverID); err != nil {
		return 0, err
	}
	c, err := w.js.Consumer(ctx, WebhooksStream, consumerName(receiverID))
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, storeErr("backlog", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, storeErr("backlog", err)
	}
	return int(info.NumPending), nil
}

// Enqueue queues a verification or test event to one receiver
// (alerts.Outbox). Its sequence number is the time in milliseconds.
func (w *Webhooks) Enqueue(ctx context.Context, r alerts.Receiver, typ string, now time.Time, render func(seq uint64) ([]byte, error)) (string, error) {
	body, err := render(uint64(now.UnixMilli()))
	if err != nil {
		return "", err
	}
	id := newDeliveryID(typ, r.ID, strconv.FormatInt(now.UnixNano(), 10), strconv.FormatUint(rand.Uint64(), 36))
	if err := w.ensureStreams(ctx); err != nil {
		return "", storeErr("enqueue delivery", err)
	}
	if _, err := w.js.PublishMsg(ctx, deliveryMsg(workSubject(r.ID), id, id, typ, now, body)); err != nil {
		return "", storeErr("enqueue delivery", err)
	}
	if err := w.recordQueued(ctx, id, r.ID, typ, now); err != nil {
		return "", storeErr("enqueue delivery", err)
	}
	return id, nil
}

// recordQueued records a delivery queued at at, after its message: a
// replica that took the message at once may have recorded an attempt
// already, which this leaves alone.
func (w *Webhooks) recordQueued(ctx context.Context, id, receiverID, typ string, at time.Time) error {
	b, err := json.Marshal(storedDelivery{Delivery: alerts.Delivery{ID: id, ReceiverID: receiverID, EventType: typ,
		State: alerts.DeliveryQueued, Attempts: []alerts.Attempt{}, NextAttemptAt: at, CreatedAt: at, UpdatedAt: at}})
	if err != nil {
		return err
	}
	return w.dels.create(ctx, id, b)
}

// newDeliveryID makes a delivery id from what identifies it: the same
// parts, the same id.
func newDeliveryID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "msg_" + base64.RawURLEncoding.EncodeToString(h[:16])
}

func deliveryMsg(subject, msgID, deliveryID, typ string, created time.Time, body []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(hdrDelivery, deliveryID)
	m.Header.Set(hdrEvent, typ)
	m.Header.Set(hdrCreated, created.UTC().Format(time.RFC3339Nano))
	m.Data = body
	return m
}

// RetryDelivery sends a dead delivery again, from its dead letter
// (alerts.Outbox).
func (w *Webhooks) RetryDelivery(ctx context.Context, id string, now time.Time) error {
	d, err := w.delivery(ctx, id)
	if err != nil {
		return err
	}
	if d.State != alerts.DeliveryDead {
		return alerts.ErrNotDead
	}
	if d.DeadSeq == 0 {
		return fmt.Errorf("%w: delivery %s has no dead letter to send again (its receiver was deleted)", alerts.ErrInvalid, id)
	}
	s, err := w.js.Stream(ctx, DeadStream)
	if err != nil {
		return storeErr("retry delivery", err)
	}
	m, err := s.GetMsg(ctx, d.DeadSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: delivery %s is older than the dead letters kept", alerts.ErrInvalid, id)
	}
	if err != nil {
		return storeErr("retry delivery", err)
	}
	if _, err := w.Receiver(ctx, d.ReceiverID); err != nil {
		return fmt.Errorf("%w: delivery %s: its receiver %s is deleted", alerts.ErrInvalid, id, d.ReceiverID)
	}
	// Queued first, under an id of its own: a retry asked again after a
	// failure below is the same message, kept once.
	data := m.Data
	if group := members(m.Header.Get(hdrMembers)); len(group) > 0 { // a group's: this alert alone
		rcv, err := w.Receiver(ctx, d.ReceiverID)
		if err != nil {
			return err
		}
		i := slices.Index(group, id)
		if data, err = alerts.MemberPayload(rcv, m.Data, max(i, 0)); err != nil || i < 0 {
			return fmt.Errorf("%w: delivery %s: its alert is not in its group's dead letter", alerts.ErrInvalid, id)
		}
	}
	msg := deliveryMsg(workSubject(d.ReceiverID), id+".retry"+strconv.Itoa(d.Retries+1), id, d.EventType, d.CreatedAt, data)
	if _, err := w.js.PublishMsg(ctx, msg); err != nil {
		return storeErr("retry delivery", err)
	}
	// Recorded on the newest revision: a replica may have taken the
	// message and recorded its attempt already.
	retries := d.Retries + 1
	err = w.dels.update(ctx, id, func(b []byte) ([]byte, error) {
		var d storedDelivery
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, err
		}
		d.Retries = max(d.Retries, retries)
		if d.State == alerts.DeliveryDead {
			d.State, d.LastError, d.NextAttemptAt, d.UpdatedAt = alerts.DeliveryQueued, "", now, now
		}
		return json.Marshal(d)
	})
	if err != nil {
		return storeErr("retry delivery", err)
	}
	return nil
}

// Publish queues the webhooks of transitions to every active receiver
// that takes them and existed when the transition happened, and returns
// once NATS has them all. A delivery's id is made from the alert, the
// transition's kind, when the episode fired (StartedAt: the same in the
// firing webhook and its resolution) and the receiver, so publishing the
// same transition again keeps one.
func (w *Webhooks) Publish(ctx context.Context, ts []alerts.Transition) error {
	var rcvs []alerts.Receiver
	var futures []jetstream.PubAckFuture
	var queued []func() error // records of firings, made once NATS has them
	for _, t := range ts {
		typ := alerts.WebhookEvent(t.Kind)
		if typ == "" {
			continue
		}
		if rcvs == nil {
			var err error
			if rcvs, err = w.ListReceivers(ctx); err != nil {
				return err
			}
			if err := w.ensureStreams(ctx); err != nil {
				return storeErr("queue webhooks", err)
			}
		}
		at := transitionTime(t)
		labels := alerts.MatchLabels(t.Alert)
		bodies := map[string][]byte{}
		for _, r := range rcvs {
			if r.Status != alerts.ReceiverActive || !r.Wants(typ) || r.CreatedAt.After(at) {
				continue
			}
			// A resolution goes wherever its firing went (or is held to
			// go), whatever the labels are now.
			firingID := newDeliveryID(t.Alert.Fingerprint, alerts.StateFiring, strconv.FormatInt(t.Alert.StartedAt.UnixMicro(), 10), r.ID)
			if !r.Takes(labels) && (t.Kind != alerts.StateResolved || !(w.fired(t, r.ID) || w.isHeld(firingID))) {
				continue
			}
			body, ok := bodies[r.Format]
			if !ok {
				var err error
				if body, err = alerts.TransitionPayload(r.Format, t, w.DashboardURL, uint64(at.UnixMilli())); err != nil {
					return err
				}
				bodies[r.Format] = body
			}
			id := newDeliveryID(t.Alert.Fingerprint, t.Kind, strconv.FormatInt(t.Alert.StartedAt.UnixMicro(), 10), r.ID)
			if r.GroupWait > 0 && t.Kind == alerts.StateFiring {
				w.hold(r, labels, heldFiring{id: id, body: body, at: at})
				continue
			}
			if t.Kind == alerts.StateResolved { // after its firing, if a group holds it
				if err := w.flushHolding(ctx, firingID); err != nil {
					return storeErr("queue webhooks", err)
				}
			}
			if r.GroupWait > 0 { // a grouping receiver's messages are all group-shaped
				var err error
				if body, err = alerts.GroupPayload(r, [][]byte{body}); err != nil {
					return err
				}
			}
			f, err := w.js.PublishMsgAsync(deliveryMsg(workSubject(r.ID), id, id, typ, at, body))
			if err != nil {
				return storeErr("queue webhooks", err)
			}
			futures = append(futures, f)
			if len(r.Match) > 0 && t.Kind == alerts.StateFiring { // recorded now, so its resolution finds it (fired)
				queued = append(queued, func() error { return w.recordQueued(ctx, id, r.ID, typ, at) })
			}
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				w.lostStreams() // deleted: made again on the next try
			}
			return storeErr("queue webhooks", err)
		case <-ctx.Done():
			return storeErr("queue webhooks", ctx.Err())
		}
	}
	for _, record := range queued {
		if err := record(); err != nil {
			return storeErr("queue webhooks", err)
		}
	}
	return nil
}

var errConsumerDeleted = errors.New("the consumer was deleted")

// fired reports whether a receiver was sent the firing of the episode a
// resolution ends.
func (w *Webhooks) fired(t alerts.Transition, receiverID string) bool {
	_, ok := w.dels.value(newDeliveryID(t.Alert.Fingerprint, alerts.StateFiring, strconv.FormatInt(t.Alert.StartedAt.UnixMicro(), 10), receiverID))
	return ok
}

// work sends a receiver's deliveries, one at a time, until ctx is done.
func (w *Webhooks) work(ctx context.Context, receiverID string) {
	retry(ctx, func() (bool, error) {
		if err := w.ensureStreams(ctx); err != nil {
			return false, err
		}
		c, err := w.js.CreateOrUpdateConsumer(ctx, WebhooksStream, jetstream.ConsumerConfig{
			Durable: consumerName(receiverID), Description: "vigil's webhooks to " + receiverID,
			FilterSubject: workSubject(receiverID), AckPolicy: jetstream.AckExplicitPolicy, AckWait: webhookAckWait,
			MaxAckPending: 1, MaxDeliver: -1,
			// As many copies as the stream (a work queue's consumers must
			// match it); gone after a day unused (a receiver deleted while
			// a replica made its consumer again): its messages stay in the
			// queue for the next consumer.
			InactiveThreshold: 24 * time.Hour,
		})
		if err != nil {
			return false, err
		}
		for ctx.Err() == nil {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := c.Next(jetstream.FetchContext(fctx))
			cancel()
			switch {
			case ctx.Err() != nil:
				return true, nil
			case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
				continue
			case errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound):
				// Deleted with its receiver, most likely: made again
				// after a pause, unless the receiver is gone by then.
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				if _, ok := w.rcvs.value(receiverID); !ok || ctx.Err() != nil {
					return true, nil
				}
				return true, errConsumerDeleted
			case err != nil:
				return true, err
			}
			w.attempt(ctx, receiverID, m)
		}
		return true, nil
	}, func(err error, wait time.Duration) {
		if errors.Is(err, errConsumerDeleted) {
			w.log.Info("a receiver's webhook consumer was deleted, and its receiver is still there: made again", "receiver", receiverID)
			return
		}
		w.log.Warn("webhooks from NATS", "receiver", receiverID, "err", err, "retry_in", wait)
	})
}

// attempt makes one attempt of a delivery and records it: delivered and
// dead ones leave the work queue (dead ones into the dead-letter stream),
// and a retry goes back to NATS for its time. NATS hears that the
// delivery is in progress until then.
func (w *Webhooks) attempt(ctx context.Context, receiverID string, m jetstream.Msg) {
	id := m.Headers().Get(hdrDelivery)
	typ := m.Headers().Get(hdrEvent)
	created, _ := time.Parse(time.RFC3339Nano, m.Headers().Get(hdrCreated))
	if id == "" {
		w.log.Warn("a webhook message without a delivery id; dropped", "subject", m.Subject())
		m.Term()
		return
	}
	stop := keepInProgress(m)
	defer stop()
	// A group's attempts are its alerts' (groups.go): read from the first,
	// recorded on each.
	group := members(m.Headers().Get(hdrMembers))
	recID := id
	if len(group) > 0 {
		recID = group[0]
	}
	d, err := w.delivery(ctx, recID)
	if err != nil { // a transition's webhook, first attempt
		d = storedDelivery{Delivery: alerts.Delivery{ID: recID, ReceiverID: receiverID, EventType: typ, CreatedAt: created, Attempts: []alerts.Attempt{}}}
	}
	d.ID = id
	rcv, err := w.Receiver(ctx, receiverID)
	start := time.Now()
	a := alerts.Attempt{At: start}
	var o alerts.Outcome
	if err != nil || rcv.Status == alerts.ReceiverDisabled || rcv.URL == "" {
		o = alerts.Outcome{Err: "receiver disabled or deleted"}
	} else {
		d.Payload = m.Data()
		a.Status, o = w.opts.Sender.Send(ctx, rcv, d.Delivery)
		d.Payload = nil
	}
	if ctx.Err() != nil && a.Status == 0 {
		// Cut short by a stop before an answer: another replica sends it
		// now. (One that answered is recorded as it answered.)
		m.Nak()
		return
	}
	ctx = context.WithoutCancel(ctx)
	now := time.Now()
	a.DurationMS, a.Error = now.Sub(start).Milliseconds(), o.Err
	d.Attempts = append(d.Attempts, a)
	d.State, d.LastError, d.UpdatedAt, d.NextAttemptAt = alerts.DeliveryDelivered, o.Err, now, time.Time{}
	var wait time.Duration
	switch {
	case o.Err == "":
	case o.Retry && len(d.Attempts) < w.opts.MaxAttempts:
		wait = w.opts.Backoff(len(d.Attempts), o.RetryAfter)
		d.State, d.NextAttemptAt = alerts.DeliveryQueued, now.Add(wait)
	default:
		d.State = alerts.DeliveryDead
	}
	if o.Gone && rcv.Type == alerts.TypeWebPush { // an expired subscription: the browser subscribes anew
		if err := w.DeleteReceiver(ctx, receiverID); err != nil && !errors.Is(err, alerts.ErrNotFound) {
			w.log.Error("remove an expired push subscription", "receiver", receiverID, "err", err)
		}
	} else if o.Gone || o.Verified {
		status := alerts.ReceiverDisabled
		if o.Verified {
			status = alerts.ReceiverActive
		}
		if err := w.setStatus(ctx, receiverID, status, now); err != nil {
			w.log.Error("change receiver", "receiver", receiverID, "err", err)
		}
	}
	if d.State == alerts.DeliveryDead {
		dm := deliveryMsg(deadSubject(receiverID), id+".dead"+strconv.Itoa(d.Retries), id, typ, created, m.Data())
		if len(group) > 0 {
			dm.Header.Set(hdrMembers, strings.Join(group, ","))
		}
		if ack, err := w.js.PublishMsg(ctx, dm); err != nil {
			w.log.Error("webhook dead letter", "delivery", id, "err", err) // its state still says dead
		} else {
			d.DeadSeq = ack.Sequence
		}
	}
	if d.State == alerts.DeliveryQueued {
		w.recordEach(ctx, d, group)
		err = m.NakWithDelay(wait)
		w.attempts["retry"].Inc()
	} else {
		// A delivery that is done leaves the queue before it is
		// recorded as done: whoever reads "delivered" knows that no
		// replica sends it again. One NATS does not hear done of is sent
		// again, and recorded then.
		if err = m.DoubleAck(ctx); err == nil {
			w.recordEach(ctx, d, group)
		}
		w.attempts[d.State].Inc()
		w.deliveries[d.State].Inc()
	}
	if err != nil {
		w.log.Warn("acknowledge webhook in NATS; it is sent again", "delivery", id, "err", err)
	}
	if o.Err != "" {
		w.log.Warn("webhook attempt failed", "delivery", id, "receiver", receiverID, "status", a.Status, "err", o.Err, "next", d.State)
	}
}

// setStatus changes a receiver's status, unless it changed meanwhile in
// another way (then it is read again and changed) or is gone.
func (w *Webhooks) setStatus(ctx context.Context, id, status string, now time.Time) error {
	return w.rcvs.update(ctx, id, func(b []byte) ([]byte, error) {
		var r storedReceiver
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		r.Status, r.UpdatedAt = status, now
		return json.Marshal(r)
	})
}

// keepInProgress tells NATS every third of webhookAckWait that m is still
// being worked on, until stop.
func keepInProgress(m jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(webhookAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// delivered reports whether a repeat's receiver got the episode's firing
// and has no earlier repeat of it waiting: the firing goes first, and a
// receiver that is down has one page waiting, not one an interval.
func (w *Webhooks) delivered(rp alerts.Repeat) bool {
	v, ok := w.dels.value(newDeliveryID(rp.Alert.Fingerprint, alerts.StateFiring, strconv.FormatInt(rp.Alert.StartedAt.UnixMicro(), 10), rp.Receiver.ID))
	if !ok || v.(storedDelivery).State != alerts.DeliveryDelivered {
		return false
	}
	for n := rp.N - 1; n >= 1; n-- {
		if v, ok := w.dels.value(alerts.RepeatID(rp.Alert, rp.Receiver.ID, time.Duration(rp.Receiver.RepeatInterval), n)); ok {
			return v.(storedDelivery).State != alerts.DeliveryQueued
		}
	}
	return true
}

// Repeat queues the repeats of firing alerts that are due (see
// alerts.DueRepeats) and not queued before: each is recorded in the
// deliveries bucket as it is queued, and its id is the same on every
// replica, so a new holder queues none twice. stillFiring reads the
// alert's saved state again: a holder's view may miss a resolution.
func (w *Webhooks) Repeat(ctx context.Context, firing []alerts.Alert, now time.Time, stillFiring func(alerts.Alert) bool) error {
	rcvs, err := w.ListReceivers(ctx)
	if err != nil {
		return err
	}
	for _, rp := range alerts.DueRepeats(rcvs, firing, now) {
		if _, ok := w.dels.value(rp.ID); ok || !w.delivered(rp) || !stillFiring(rp.Alert) {
			continue
		}
		if err := w.ensureStreams(ctx); err != nil {
			return storeErr("repeat webhook", err)
		}
		body, err := alerts.TransitionPayload(rp.Receiver.Format, alerts.Transition{Kind: alerts.StateFiring, Alert: rp.Alert}, w.DashboardURL, uint64(now.UnixMilli()))
		if err == nil && rp.Receiver.GroupWait > 0 {
			body, err = alerts.GroupPayload(rp.Receiver, [][]byte{body})
		}
		if err != nil {
			return err
		}
		if _, err := w.js.PublishMsg(ctx, deliveryMsg(workSubject(rp.Receiver.ID), rp.ID, rp.ID, alerts.EventFiring, now, body)); err != nil {
			return storeErr("repeat webhook", err)
		}
		if err := w.recordQueued(ctx, rp.ID, rp.Receiver.ID, alerts.EventFiring, now); err != nil {
			return storeErr("repeat webhook", err)
		}
	}
	return nil
}
