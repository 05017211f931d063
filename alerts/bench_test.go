package alerts

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"vigil/collector"
	"vigil/internal/decimal"
	"vigil/stream"
)

// BenchmarkDeliveryThroughput sends deliveries to local receivers that
// answer at once: outbox write, claim, sign, POST, record. Each
// transition goes to every receiver. cluster.BenchmarkSharedDeliveryThroughput
// is the same through the outbox replicas share in NATS.
func BenchmarkDeliveryThroughput(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprint("receivers=", n), func(b *testing.B) {
			var got atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
			defer srv.Close()
			db, _ := Open(b.TempDir())
			defer db.Close()
			d := &Dispatcher{DB: db, Client: NewClient(loopback, 10*time.Second), PerReceiver: 8}
			for i := range n {
				db.PutReceiver(context.Background(), Receiver{ID: fmt.Sprint("s", i), URL: srv.URL, Events: []string{"*"}, Format: FormatStandard,
					Status: ReceiverActive, Secret: NewSecret()})
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go d.Run(ctx)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				db.SaveTransitions(ctx, []Transition{firing(fmt.Sprint("R", i))})
				d.Wake()
			}
			want := int64(b.N * n)
			deadline := time.Now().Add(time.Minute)
			for got.Load() < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got.Load() < want {
				b.Fatalf("%d of %d deliveries in a minute", got.Load(), want)
			}
			b.ReportMetric(float64(want)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkBreachToReceipt is the time from the evaluator seeing a breach
// to the receiver holding the webhook (in a running vigil add up to one
// interval for the next evaluation).
func BenchmarkBreachToReceipt(b *testing.B) {
	received := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case received <- struct{}{}:
		default:
		}
	}))
	defer srv.Close()
	db, _ := Open(b.TempDir())
	defer db.Close()
	d := &Dispatcher{DB: db, Client: NewClient(loopback, 10*time.Second)}
	db.PutReceiver(context.Background(), Receiver{ID: "s", URL: srv.URL, Events: []string{"alert.firing"}, Format: FormatStandard,
		Status: ReceiverActive, Secret: NewSecret()})
	store := collector.NewStore(time.Minute, time.Second)
	hub := stream.NewHub(stream.HubOptions{})
	defer hub.Close()
	rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90}}
	rules[0].Validate()
	e := &Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Saved: d.Wake}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	b.ResetTimer()
	for range b.N {
		store.Append(collector.Sample{Source: "host/a", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 95})})
		e.Evaluate(ctx)
		<-received
		b.StopTimer()
		store.Append(collector.Sample{Source: "host/a", Time: time.Now(), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 10})})
		e.Evaluate(ctx) // resolved; not subscribed
		b.StartTimer()
	}
}

// BenchmarkHealthyReceiverLatency is one healthy receiver's time from
// transition to receipt: alone, beside 50 other healthy receivers (which
// really get their deliveries, on the same two cores), and beside 50
// receivers that never answer (they hold their attempts until the
// timeout).
func BenchmarkHealthyReceiverLatency(b *testing.B) {
	for _, tc := range []struct {
		name    string
		n       int
		answers bool
	}{{"alone", 0, true}, {"others=50", 50, true}, {"dead=50", 50, false}} {
		dead := tc.n
		b.Run(tc.name, func(b *testing.B) {
			received := make(chan struct{}, 1)
			healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { received <- struct{}{} }))
			defer healthy.Close()
			// The other receivers: ones that answer at once, or an address
			// that takes connections (the kernel completes the handshake)
			// and never answers — a dead receiver elsewhere, costing this
			// process nothing but the waiting attempts themselves.
			var otherURL string
			if tc.answers {
				others := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
				defer others.Close()
				otherURL = others.URL
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close() // never accepted
				otherURL = "http://" + ln.Addr().String()
			}
			db, _ := Open(b.TempDir())
			defer db.Close()
			d := &Dispatcher{DB: db, Client: NewClient(loopback, 10*time.Second)}
			ctx := context.Background()
			db.PutReceiver(ctx, Receiver{ID: "healthy", URL: healthy.URL, Events: []string{"*"}, Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()})
			for i := range dead {
				db.PutReceiver(ctx, Receiver{ID: fmt.Sprint("dead", i), URL: otherURL, Events: []string{"*"}, Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()})
			}
			rctx, cancel := context.WithCancel(ctx)
			go d.Run(rctx)
			defer cancel()
			// Steady state: the first transition is sent, and every dead
			// receiver has its attempts waiting, before timing starts.
			db.SaveTransitions(ctx, []Transition{firing("warm-up")})
			d.Wake()
			<-received
			for range 1000 {
				d.mu.Lock()
				n := d.total
				d.mu.Unlock()
				if tc.answers || n >= dead*DefaultPerReceiver {
					break
				}
				time.Sleep(time.Millisecond)
			}
			runtime.GC()
			b.ResetTimer()
			var save time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				db.SaveTransitions(ctx, []Transition{firing(fmt.Sprint("R", i))})
				save += time.Since(t0)
				d.Wake()
				<-received
			}
			b.ReportMetric(float64(save.Microseconds())/float64(b.N), "save-µs/op")
		})
	}
}

// BenchmarkEvaluate1000Hosts is one evaluation of the default rules over a
// hub's thousand hosts, each with ten minutes of 1 Hz samples in the ring:
// an op is a second of the hub's evaluator.
func BenchmarkEvaluate1000Hosts(b *testing.B) {
	ring := collector.NewStore(10*time.Minute, time.Second)
	t0 := time.Unix(1_800_000_000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	noisy := func(v float64) float64 { return decimal.Significant(v*(0.9+0.2*rng.Float64()), 6) } // as the fleet bench's agents
	sample := func(i int, at time.Time) collector.Sample {
		return collector.Sample{Source: fmt.Sprintf("host/h%04d", i), Time: at, Metrics: collector.MetricsOf(map[string]float64{
			"cpu.percent": noisy(40), "mem.used_percent": noisy(40), "swap.used_percent": noisy(1),
			"load.5_per_core": noisy(0.3), "fs.used_percent{mount=/}": noisy(50), "disk.read_bytes_per_sec": noisy(1000)})}
	}
	for s := range 600 {
		for i := range 1000 {
			ring.Append(sample(i, t0.Add(time.Duration(s)*time.Second)))
		}
	}
	hub := stream.NewHub(stream.HubOptions{})
	defer hub.Close()
	// A hub to publish to: a run of more than a few hundred seconds
	// has transitions (a host's figures wander past a threshold).
	e := &Evaluator{Rules: DefaultRules(), Ring: ring, Interval: time.Second, Hub: hub}
	now := t0.Add(600 * time.Second)
	e.Evaluate(context.Background()) // the series made
	b.ResetTimer()
	for range b.N {
		for i := range 1000 {
			ring.Append(sample(i, now))
		}
		b.StartTimer()
		e.Now = func() time.Time { return now }
		if err := e.Evaluate(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		now = now.Add(time.Second)
	}
}
