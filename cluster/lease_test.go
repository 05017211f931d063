package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

func jetStream(t *testing.T, n *vigiltest.NATS) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(n.Connect())
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// runLease runs a lease on a connection of its own; cut closes that
// connection, as a replica killed or cut off from NATS (no release).
func runLease(t *testing.T, n *vigiltest.NATS, name string, ttl time.Duration) (l *Lease, stop, cut func()) {
	t.Helper()
	nc := n.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l = NewLease(js, LeaseOptions{Key: "alerts", Name: name, TTL: ttl})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return l, stop, nc.Close
}

func holders(ls ...*Lease) (n int, who *Lease) {
	for _, l := range ls {
		if held, _ := l.Held(); held {
			n++
			who = l
		}
	}
	return n, who
}

// One replica at a time holds the lease; one that stops gives it up and
// another takes it within ttl/4 or so; one cut off from NATS stops holding
// it before another takes it, which happens once the key expired.
func TestLeaseHasOneHolder(t *testing.T) {
	n := vigiltest.StartNATS(t)
	const ttl = time.Second
	a, stopA, _ := runLease(t, n, "a", ttl)
	waitFor(t, func() bool { held, _ := a.Held(); return held }, "a to hold the lease")
	b, _, cutB := runLease(t, n, "b", ttl)
	c, _, cutC := runLease(t, n, "c", ttl)
	all := []*Lease{a, b, c}

	var twice atomic.Int32
	watch, unwatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // never two holders, checked every millisecond throughout
		defer wg.Done()
		for watch.Err() == nil {
			if k, _ := holders(all...); k > 1 {
				twice.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	stopped := time.Now()
	stopA() // gives the key up
	waitFor(t, func() bool { k, who := holders(all...); return k == 1 && who != a }, "b or c to take over from a")
	if took := time.Since(stopped); took > ttl/2 {
		t.Errorf("took %s to take over from a holder that stopped; want about ttl/4", took)
	}
	_, second := holders(all...)
	_, term := second.Held()
	cut, other := cutB, c
	if second == c {
		cut, other = cutC, b
	}
	cut()
	waitFor(t, func() bool { held, _ := other.Held(); return held }, "the last replica to take over")
	if held, nextTerm := second.Held(); held || nextTerm != term {
		t.Errorf("the replica cut off: held %v, term %d → %d", held, term, nextTerm)
	}
	unwatch()
	wg.Wait()
	if k := twice.Load(); k > 0 {
		t.Fatalf("two replicas held the lease at once, %d times", k)
	}
}

// recorder counts an evaluator's announced transitions.
type recorder struct {
	mu    sync.Mutex
	kinds map[string]int
}

func (r *recorder) Publish(m stream.Message) (*stream.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string]int{}
	}
	var body struct {
		Transition string `json:"transition"`
	}
	raw, _ := json.Marshal(m.Body)
	json.Unmarshal(raw, &body)
	r.kinds[body.Transition]++
	return nil, nil
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kinds[kind]
}

// evalReplica is a replica's alert side: its lease, the shared states
// and an evaluator that evaluates while it holds the lease.
type evalReplica struct {
	lease  *Lease
	states *AlertStates
	eval   *alerts.Evaluator
	pub    *recorder
	stop   func() // stops the evaluator; the lease is cut separately
	cut    func()
}

func startEvalReplica(t *testing.T, n *vigiltest.NATS, name string, ring *collector.Store, rule alerts.Rule) *evalReplica {
	t.Helper()
	lease, _, cut := runLease(t, n, name, time.Second)
	states := NewAlertStates(jetStream(t, n), "", 1, nil, nil)
	r := &evalReplica{lease: lease, states: states, pub: &recorder{}, cut: cut}
	r.eval = &alerts.Evaluator{Rules: []alerts.Rule{rule}, Ring: ring, Hub: r.pub, States: states,
		Interval: 50 * time.Millisecond, Lead: lease.Lead, Acks: states}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); states.Run(ctx) }()
	go func() { defer wg.Done(); r.eval.Run(ctx) }()
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	return r
}

// The replica that evaluates dies while an alert is pending: the one that
// takes the lease carries on from the saved state, and the alert fires
// exactly once, when its for has passed since it went pending — not
// pending again, not twice.
func TestTakeoverFiresOnce(t *testing.T) {
	n := vigiltest.StartNATS(t)
	ring := collector.NewStore(time.Minute, 50*time.Millisecond)
	rule := alerts.Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90, For: 3 * time.Second}
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	feed, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	var hot atomic.Bool
	hot.Store(true)
	go func() { // a sample every 50 ms: hot until the test cools it
		for feed.Err() == nil {
			v := 10.0
			if hot.Load() {
				v = 99
			}
			ring.Append(collector.Sample{Source: "host/web-1", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": v})})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	a := startEvalReplica(t, n, "a", ring, rule)
	waitFor(t, func() bool { held, _ := a.lease.Held(); return held }, "a to hold the lease")
	b := startEvalReplica(t, n, "b", ring, rule)
	// The one that holds the lease when the alert goes pending dies (on
	// a loaded machine the lease may have moved to b already).
	waitFor(t, func() bool { return a.pub.count(alerts.StatePending)+b.pub.count(alerts.StatePending) == 1 }, "the alert pending")
	pendingAt := time.Now()
	first, second := a, b
	if held, _ := b.lease.Held(); held {
		first, second = b, a
	}
	first.stop() // kill -9: its evaluator is gone and its lease is not given up
	first.cut()
	waitFor(t, func() bool { return second.pub.count(alerts.StateFiring) == 1 }, "the alert firing on the other replica")
	if since := time.Since(pendingAt); since < 2500*time.Millisecond {
		t.Errorf("fired %s after it went pending; its for is 3s", since)
	}
	hot.Store(false) // it evaluates on until the alert resolves
	waitFor(t, func() bool { return second.pub.count(alerts.StateResolved) == 1 }, "the alert resolved")
	if p, f := a.pub.count(alerts.StatePending)+b.pub.count(alerts.StatePending), a.pub.count(alerts.StateFiring)+b.pub.count(alerts.StateFiring); p != 1 || f != 1 {
		t.Fatalf("pending announced %d times, firing %d times; want once each", p, f)
	}
}

// An alert acknowledged on a replica that does not evaluate is passed to
// the one that does, which applies and announces it once.
func TestAckOnAFollowerReachesTheHolder(t *testing.T) {
	n := vigiltest.StartNATS(t)
	ring := collector.NewStore(time.Minute, 50*time.Millisecond)
	rule := alerts.Rule{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	ring.Append(collector.Sample{Source: "host/web-1", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 99})})
	a := startEvalReplica(t, n, "a", ring, rule)
	waitFor(t, func() bool { return a.pub.count(alerts.StateFiring) == 1 }, "the alert firing on a")
	b := startEvalReplica(t, n, "b", ring, rule)
	var fp string
	waitFor(t, func() bool {
		for _, al := range b.eval.Active() {
			fp = al.Fingerprint
		}
		return fp != ""
	}, "b to read the firing alert")
	got, err := b.eval.Ack(context.Background(), fp, "ops@b")
	if err != nil || got.AckedBy != "ops@b" {
		t.Fatalf("ack on b: %+v, %v", got, err)
	}
	waitFor(t, func() bool { return a.pub.count(alerts.KindAcknowledged) == 1 }, "a to apply the acknowledgement")
	waitFor(t, func() bool { return len(a.states.PendingAcks()) == 0 && len(b.states.PendingAcks()) == 0 }, "the request removed")
	waitFor(t, func() bool {
		act := b.eval.Active()
		return len(act) == 1 && act[0].AckedBy == "ops@b"
	}, "b to show the alert acknowledged")
	if k := a.pub.count(alerts.KindAcknowledged) + b.pub.count(alerts.KindAcknowledged); k != 1 {
		t.Fatalf("acknowledged announced %d times", k)
	}
	if _, err := b.eval.Ack(context.Background(), "no-such-alert", "ops@b"); !errors.Is(err, alerts.ErrNotActive) {
		t.Fatalf("ack of an unknown alert on b: %v, want ErrNotActive", err)
	}
}
