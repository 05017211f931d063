package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/stream"
)

// synthetic returns a service source whose rate, errors and latency wander
// like a real service's, with an incident now and then.
func synthetic(i int) collector.Source {
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	base := math.Pow(10, 0.5+3*rng.Float64()) // 3 to 3,000 req/s
	errBase := 0.2 * rng.Float64()
	switch { // a few services are unwell, as some always are
	case i%10 == 3:
		errBase = 2 + 2*rng.Float64()
	case i%25 == 7:
		errBase = 8 + 6*rng.Float64()
	case i%50 == 9:
		errBase = 30
	}
	lat := 0.005 + 0.1*rng.Float64()
	t := 0.0
	return collector.SourceFunc{SourceName: fmt.Sprintf("service/svc-%03d", i), Fn: func(ctx context.Context) (map[string]float64, error) {
		t++
		rate := base * (1 + 0.2*math.Sin(t/30+float64(i)) + 0.05*rng.NormFloat64())
		errp := errBase + math.Abs(0.1*rng.NormFloat64())
		if rng.Float64() < 0.002 { // an incident
			errp += 10 + 30*rng.Float64()
		}
		p50 := lat * (1 + 0.1*rng.NormFloat64())
		return map[string]float64{
			"http.requests_per_sec":      max(0, rate),
			"http.error_percent":         min(100, errp),
			"http.latency_p50_seconds":   p50,
			"http.latency_p90_seconds":   p50 * 2.5,
			"http.latency_p99_seconds":   p50 * 6,
			"http.latency_p99_5_seconds": p50 * 8,
			"http.latency_max_seconds":   p50 * 20,
			"instances.up":               3,
			"instances.total":            3,
		}, nil
	}}
}

// timeFrames runs in the page before its own script: it wraps
// requestAnimationFrame to count the frames the page draws and time each
// (the last 120 kept for a percentile), in window.benchFrames.
const timeFrames = `{
	const stats = window.benchFrames = { frames: 0, totalMs: 0, recent: [] };
	const raf = window.requestAnimationFrame.bind(window);
	window.requestAnimationFrame = (draw) => raf((now) => {
		const t0 = performance.now();
		try {
			draw(now);
		} finally {
			const ms = performance.now() - t0;
			stats.frames++;
			stats.totalMs += ms;
			stats.recent.push(ms);
			if (stats.recent.length > 120) stats.recent.shift();
		}
	});
}`

// ui serves a dashboard with many service tiles and measures, in headless
// Chromium, how long the page's main thread works per update (per frame
// drawn) and in all.
//
//	go -C bench run . ui [-tiles 500] [-measure 30s] [-screenshot file.png]
//	go -C bench run . ui -hosts 1000 [-agents 1000] [-measure 30s]
//
// With -hosts it serves a hub instead (fleet.go): a real collector.Fleet
// following agents in this process, its host table on the page.
func ui(args []string) error {
	fs := flag.NewFlagSet("ui", flag.ExitOnError)
	tiles := fs.Int("tiles", 500, "service tiles on the page")
	hosts := fs.Int("hosts", 0, "fleet mode: a hub following agents that send this many hosts, its host table on the page instead of tiles")
	agents := fs.Int("agents", 0, "with -hosts: the agents the hosts are spread over; 0 is one agent per host")
	warm := fs.Duration("warm", 5*time.Second, "time after the page is live before measuring")
	measure := fs.Duration("measure", 30*time.Second, "measurement window")
	width := fs.Int("width", 1280, "viewport width")
	height := fs.Int("height", 720, "viewport height")
	shot := fs.String("screenshot", "", "write a screenshot of the page to this PNG file")
	full := fs.Bool("full", false, "with -screenshot: the whole page, not just the viewport")
	fs.Parse(args)
	if *tiles < 0 || *tiles > 5000 {
		return fmt.Errorf("-tiles %d: want 0 to 5000", *tiles)
	}
	if *hosts < 0 || *hosts > 5000 || *agents < 0 || *agents > max(*hosts, 1) {
		return fmt.Errorf("-hosts %d -agents %d: want 0 to 5000 hosts, on at most as many agents", *hosts, *agents)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	what := fmt.Sprintf("%d tiles", *tiles)
	ready := fmt.Sprintf(`document.querySelectorAll('[data-testid=tile]').length === %d`, *tiles)
	serve := func() (string, int, func(), error) { return serveTiles(ctx, *tiles) }
	if *hosts > 0 {
		if *agents == 0 {
			*agents = *hosts
		}
		what = fmt.Sprintf("%d hosts (fleet, %d agents)", *hosts, *agents)
		ready = fmt.Sprintf(`document.querySelectorAll('[data-testid=host-row]').length === %d`, *hosts)
		serve = func() (string, int, func(), error) { return serveFleetPage(ctx, *hosts, *agents) }
	}
	base, pageBytes, stop, err := serve()
	if err != nil {
		return err
	}
	defer stop()
	bctx, closeBrowser, err := openPage(ctx, base, what, ready, *width, *height, *warm+*measure+2*time.Minute)
	if err != nil {
		return err
	}
	defer closeBrowser()
	time.Sleep(*warm)
	p0, m0, t0, err := readPerf(bctx)
	if err != nil {
		return err
	}
	time.Sleep(*measure)
	p1, m1, t1, err := readPerf(bctx)
	if err != nil {
		return err
	}
	frames := p1.Frames - p0.Frames
	wall := t1.Sub(t0).Seconds()
	recent := slices.Clone(p1.Recent)
	slices.Sort(recent)
	p95 := 0.0
	if len(recent) > 0 {
		p95 = recent[min(len(recent)-1, int(0.95*float64(len(recent))))]
	}
	task := m1["TaskDuration"] - m0["TaskDuration"]
	script := m1["ScriptDuration"] - m0["ScriptDuration"]
	layout := m1["LayoutDuration"] + m1["RecalcStyleDuration"] - m0["LayoutDuration"] - m0["RecalcStyleDuration"]
	perUpdate := func(sec float64) float64 {
		if frames == 0 {
			return 0
		}
		return 1000 * sec / float64(frames)
	}
	fmt.Printf("| %s, %dx%d | %.0f KiB | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f%% |\n",
		what, *width, *height, float64(pageBytes)/1024, frames,
		(p1.TotalMs-p0.TotalMs)/math.Max(1, float64(frames)), p95,
		perUpdate(script), perUpdate(layout), perUpdate(task), 100*task/wall)
	if *shot != "" {
		return screenshot(bctx, *shot, *full)
	}
	return nil
}

// serveTiles serves vigil's dashboard with this host and n synthetic
// services, and returns its address and the size of the page.
func serveTiles(ctx context.Context, n int) (base string, pageBytes int, stop func(), err error) {
	hub := stream.NewHub(stream.HubOptions{Queue: 4096})
	store := collector.NewStore(10*time.Minute, time.Second)
	sources := []collector.Source{}
	if h, err := collector.NewHost(collector.HostOptions{}); err == nil {
		sources = append(sources, h)
	}
	for i := range n {
		sources = append(sources, synthetic(i))
	}
	sched := &collector.Scheduler{Store: store, Hub: hub, Sources: sources, Interval: time.Second}
	go sched.Run(ctx)
	go hub.Run(ctx)
	web := dashboard.New(dashboard.Options{Hub: hub, Store: store, Interval: time.Second, Version: "bench"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	srv := &http.Server{Handler: web}
	srv.RegisterOnShutdown(hub.Close)
	go srv.Serve(ln)
	base = "http://" + ln.Addr().String()
	<-sched.Ready()
	time.Sleep(3 * time.Second) // some history for the sparklines
	resp, err := http.Get(base + "/")
	if err != nil {
		srv.Close()
		return "", 0, nil, err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return base, len(page), func() { srv.Close() }, nil
}

// openPage opens the dashboard in headless Chromium, with frames timed,
// and waits until ready (a JavaScript condition: everything is shown)
// holds and it is live.
func openPage(ctx context.Context, base, what, ready string, width, height int, within time.Duration) (context.Context, func(), error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, nil, fmt.Errorf("chromium not found: apt-get install chromium")
	}
	dir, _ := os.MkdirTemp("", "vigil-ui")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(dir), chromedp.WindowSize(width, height))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	bctx, cancelT := context.WithTimeout(bctx, within)
	closeAll := func() { cancelT(); cancelB(); cancelA(); os.RemoveAll(dir) }
	fail := func(err error) (context.Context, func(), error) { closeAll(); return nil, nil, err }
	if _, err := chromedp.Call(bctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: timeFrames}); err != nil {
		return fail(err)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(int64(width), int64(height)), chromedp.Navigate(base+"/")); err != nil {
		return fail(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](
		ready+` && document.querySelector('[data-testid=connection]').dataset.state === 'live'`,
		chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		return fail(fmt.Errorf("page did not go live with %s: %w", what, err))
	}
	if _, err := chromedp.Call(bctx, performance.Enable, performance.EnableParams{}); err != nil {
		return fail(err)
	}
	return bctx, closeAll, nil
}

// perfStats is what timeFrames records in the page.
type perfStats struct {
	Frames  int       `json:"frames"`
	TotalMs float64   `json:"totalMs"`
	Recent  []float64 `json:"recent"`
}

// readPerf reads the page's frame timings and the DevTools metrics.
func readPerf(bctx context.Context) (perfStats, map[string]float64, time.Time, error) {
	var p perfStats
	raw, err := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(window.benchFrames)`))
	if err != nil {
		return p, nil, time.Time{}, err
	}
	json.Unmarshal([]byte(raw), &p)
	res, err := chromedp.Call(bctx, performance.GetMetrics, cdp.Empty{})
	if err != nil {
		return p, nil, time.Time{}, err
	}
	m := map[string]float64{}
	for _, x := range res.Metrics {
		m[x.Name] = x.Value
	}
	return p, m, time.Now(), nil
}

func screenshot(bctx context.Context, file string, full bool) error {
	var png []byte
	var err error
	if full {
		png, err = chromedp.Run(bctx, chromedp.FullScreenshot(90))
	} else {
		png, err = chromedp.Run(bctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		return err
	}
	return os.WriteFile(file, png, 0o644)
}
