package collector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// demoService is a made-up service for `vigil --demo`: a few instances
// serving /metrics and /healthz on loopback, with traffic, latency and
// errors that wander, and an incident now and then.
type demoService struct {
	name      string
	instances int
	rate      float64 // requests per second, all instances
	errShare  float64
	median    float64 // latency, seconds
	vmrange   bool    // expose a VictoriaMetrics histogram instead of le buckets
	probe     bool
	incidents float64 // chance per second that an incident starts
}

var demoServices = []demoService{
	{name: "checkout", instances: 3, rate: 120, errShare: 0.004, median: 0.08, probe: true, incidents: 1.0 / 240},
	{name: "search", instances: 2, rate: 800, errShare: 0.001, median: 0.025, vmrange: true, incidents: 1.0 / 600},
	{name: "auth", instances: 2, rate: 300, errShare: 0.02, median: 0.015, probe: true, incidents: 1.0 / 400},
	{name: "payments", instances: 1, rate: 40, errShare: 0.003, median: 0.2, probe: true, incidents: 1.0 / 120},
	{name: "recommendations", instances: 4, rate: 60, errShare: 0.07, median: 0.12, incidents: 1.0 / 900},
}

// A Demo is the demo services, listening on loopback. NewDemo binds their
// sockets; Run serves them and simulates their traffic until its context
// is done.
type Demo struct {
	closeOnce sync.Once
	services  []ServiceOptions
	servers   []*http.Server
	listeners []net.Listener
	instances []*demoInstance
}

// NewDemo opens a socket for every demo instance; Services says how to
// watch them. Call Run to serve them, or Close.
func NewDemo(interval time.Duration) (*Demo, error) {
	dm := &Demo{}
	for i, d := range demoServices {
		o := ServiceOptions{Name: d.name, Interval: interval, Scrape: &ScrapeOptions{}}
		if d.probe {
			o.Probe = &ProbeOptions{}
		}
		inc := &incident{}
		for j := range d.instances {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				dm.Close()
				return nil, fmt.Errorf("demo: %w", err)
			}
			in := &demoInstance{svc: d, set: metrics.NewSet(), inc: inc,
				rng: rand.New(rand.NewPCG(uint64(i*100+j), uint64(time.Now().UnixNano())))}
			dm.listeners = append(dm.listeners, ln)
			dm.servers = append(dm.servers, &http.Server{Handler: in.handler(), ReadHeaderTimeout: 5 * time.Second})
			dm.instances = append(dm.instances, in)
			base := "http://" + ln.Addr().String()
			o.Scrape.URLs = append(o.Scrape.URLs, base+"/metrics")
			if d.probe {
				o.Probe.URLs = append(o.Probe.URLs, base+"/healthz")
			}
		}
		dm.services = append(dm.services, o)
	}
	return dm, nil
}

// Services are the options to watch the demo services with.
func (dm *Demo) Services() []ServiceOptions { return dm.services }

// Run serves the demo services and simulates their traffic until ctx is
// done, then stops them and returns.
func (dm *Demo) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i, srv := range dm.servers {
		wg.Add(2)
		go func() { defer wg.Done(); srv.Serve(dm.listeners[i]) }()
		go func() { defer wg.Done(); dm.instances[i].run(ctx) }()
	}
	<-ctx.Done()
	dm.Close()
	wg.Wait()
	return nil
}

// Close stops the demo services' servers; later calls do nothing.
func (dm *Demo) Close() {
	dm.closeOnce.Do(func() {
		for _, srv := range dm.servers {
			srv.Close()
		}
		for _, ln := range dm.listeners {
			ln.Close()
		}
	})
}

// incident is shared by a service's instances: they fail together.
type incident struct {
	mu    sync.Mutex
	until time.Time
}

func (i *incident) active(now time.Time) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return now.Before(i.until)
}

func (i *incident) maybeStart(now time.Time, chance float64, rng *rand.Rand) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if now.After(i.until) && rng.Float64() < chance {
		i.until = now.Add(time.Duration(30+rng.IntN(60)) * time.Second)
	}
}

type demoInstance struct {
	svc demoService
	set *metrics.Set
	inc *incident
	rng *rand.Rand
}

// handler serves the instance's /metrics and /healthz.
func (in *demoInstance) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		in.set.WritePrometheus(w)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if in.inc.active(time.Now()) && in.svc.name == "payments" {
			http.Error(w, `{"status":"degraded"}`, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	})
	return mux
}

// run simulates requests ten times a second.
func (in *demoInstance) run(ctx context.Context) {
	const step = 100 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	ok := in.set.NewCounter(`http_requests_total{code="200"}`)
	bad := in.set.NewCounter(`http_requests_total{code="500"}`)
	slow := in.set.NewCounter(`http_requests_total{code="503"}`)
	var observe func(float64)
	if in.svc.vmrange {
		h := in.set.NewHistogram(`http_request_duration_seconds`)
		observe = h.Update
	} else {
		h := in.set.NewPrometheusHistogram(`http_request_duration_seconds`)
		observe = h.Update
	}
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			in.inc.maybeStart(now, in.svc.incidents*step.Seconds()/float64(in.svc.instances), in.rng)
			errShare, median := in.svc.errShare, in.svc.median
			if in.inc.active(now) {
				errShare, median = min(0.6, max(0.15, errShare*15+0.05)), median*3
			}
			// Daily-ish swing compressed into ten minutes, and noise.
			swing := 1 + 0.3*math.Sin(now.Sub(start).Seconds()/600*2*math.Pi)
			mean := in.svc.rate / float64(in.svc.instances) * swing * step.Seconds()
			n := max(0, int(math.Round(mean+math.Sqrt(mean)*in.rng.NormFloat64())))
			for range n {
				lat := median * math.Exp(0.6*in.rng.NormFloat64())
				switch r := in.rng.Float64(); {
				case r < errShare*0.8:
					bad.Inc()
				case r < errShare:
					slow.Inc()
					lat *= 4
				default:
					ok.Inc()
				}
				observe(lat)
			}
		}
	}
}
