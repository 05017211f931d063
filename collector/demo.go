package collector

import (
	"context"
	"errors"
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

// StartDemo starts the demo services and returns the options to watch
// them with. They stop when ctx is done.
func StartDemo(ctx context.Context, interval time.Duration) ([]ServiceOptions, error) {
	var out []ServiceOptions
	for i, d := range demoServices {
		o := ServiceOptions{Name: d.name, Interval: interval, Scrape: &ScrapeOptions{}}
		if d.probe {
			o.Probe = &ProbeOptions{}
		}
		inc := &incident{}
		for j := range d.instances {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
			in := &demoInstance{svc: d, set: metrics.NewSet(), inc: inc,
				rng: rand.New(rand.NewPCG(uint64(i*100+j), uint64(time.Now().UnixNano())))}
			mux := http.NewServeMux()
			mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				in.set.WritePrometheus(w)
			})
			mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
				if inc.active(time.Now()) && d.name == "payments" {
					http.Error(w, `{"status":"degraded"}`, http.StatusServiceUnavailable)
					return
				}
				fmt.Fprint(w, `{"status":"ok"}`)
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					return
				}
			}()
			go func() { <-ctx.Done(); srv.Close() }()
			go in.run(ctx)
			base := "http://" + ln.Addr().String()
			o.Scrape.URLs = append(o.Scrape.URLs, base+"/metrics")
			if d.probe {
				o.Probe.URLs = append(o.Probe.URLs, base+"/healthz")
			}
		}
		out = append(out, o)
	}
	return out, nil
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
				errShare, median = min(0.6, errShare*15+0.05), median*3
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
