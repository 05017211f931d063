package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/history"
	"vigil/stream"
)

// The charts bench fills a day of one service's history at the history's
// first step, the step the page charts a day at.
const (
	chartsSource = "service/bench"
	dayStep      = 10 * time.Second
	dayPoints    = int(24 * time.Hour / dayStep) // 8,640
)

// latencies are the six metrics the source page draws on one chart,
// "Latency", each as a multiple of the median.
var latencies = []struct {
	metric string
	times  float64
}{
	{"http.latency_p50_seconds", 1}, {"http.latency_p90_seconds", 2.5}, {"http.latency_p99_seconds", 6},
	{"http.latency_p99_5_seconds", 8}, {"http.latency_p99_9_seconds", 12}, {"http.latency_max_seconds", 20},
}

// charts serves a service with a day of history at 10 s and measures, in
// headless Chromium, how long the source page's Latency chart (uPlot, six
// series of 8,640 points) takes to draw, beside the same points drawn as
// SVG paths the way the page drew its lines before uPlot.
//
//	go -C bench run . charts [-runs 50] [-warm 5]
func charts(args []string) error {
	fs := flag.NewFlagSet("charts", flag.ExitOnError)
	runs := fs.Int("runs", 50, "timed draws of each kind")
	warm := fs.Int("warm", 5, "untimed draws of each kind before them")
	fs.Parse(args)
	if *runs < 1 || *runs > 1000 || *warm < 0 || *warm > 100 {
		return fmt.Errorf("-runs %d -warm %d: want 1 to 1000 runs and 0 to 100 warm-up draws", *runs, *warm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "vigil-charts")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	now := time.Now().Truncate(dayStep)
	base, stop, err := serveDay(ctx, dir, now)
	if err != nil {
		return err
	}
	defer stop()
	if err := checkSeries(ctx, base, now); err != nil {
		return err
	}
	bctx, closeBrowser, err := openChart(ctx, base+"/source/"+chartsSource+"?range=24h", 1280, 720)
	if err != nil {
		return err
	}
	defer closeBrowser()
	res, err := chromedp.Run(bctx, chromedp.Evaluate[chartTimes](
		fmt.Sprintf("(%s)(%d, %d)", measureDraws, *warm, *runs), chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("measuring in the page: %w", err)
	}
	printCharts(res, *warm)
	return nil
}

// serveDay serves vigil's dashboard with its history, as app.go wires
// them, on loopback; the history holds a day and ten minutes of
// chartsSource up to now, which is the dashboard's and the history's now.
func serveDay(ctx context.Context, dir string, now time.Time) (base string, stop func(), err error) {
	clock := func() time.Time { return now }
	h, err := history.Open(ctx, history.Options{Path: filepath.Join(dir, "history.db"), Now: clock})
	if err != nil {
		return "", nil, err
	}
	store := collector.NewStore(10*time.Minute, dayStep)
	store.RecordInto(h)
	fillDay(store, now)
	if err := h.Flush(ctx); err != nil { // as vigil writes the closed steps every 10 s
		h.Close()
		return "", nil, err
	}
	hub := stream.NewHub(stream.HubOptions{})
	go hub.Run(ctx)
	web := dashboard.New(dashboard.Options{Hub: hub, Store: store, History: h, Interval: dayStep, Now: clock, Version: "bench"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: web, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close(); hub.Close(); h.Close() }, nil
}

// fillDay appends a sample of chartsSource every dayStep from a day and
// ten minutes before now until just before it: a request rate and
// latencies that follow the day and wander, with a spike now and then.
func fillDay(store *collector.Store, now time.Time) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := now.Add(-24*time.Hour - 10*time.Minute)
	for t := start; t.Before(now); t = t.Add(dayStep) {
		load := 1 + 0.5*math.Sin(2*math.Pi*float64(t.Sub(start))/float64(24*time.Hour))
		p50 := 0.02 * load * (1 + 0.1*rng.NormFloat64())
		if rng.Float64() < 0.002 {
			p50 *= 5
		}
		m := map[string]float64{"http.requests_per_sec": 200 * load * (1 + 0.05*rng.NormFloat64())}
		for _, l := range latencies {
			m[l.metric] = p50 * l.times * (1 + 0.2*rng.Float64())
		}
		store.Append(collector.Sample{Source: chartsSource, Time: t, Metrics: collector.MetricsOf(m)})
	}
}

// checkSeries asks the series API for one latency series over the last
// day, as the page does, and prints how many points came at what step:
// the bench measures what it says only with a day at 10 s.
func checkSeries(ctx context.Context, base string, now time.Time) error {
	url := fmt.Sprintf("%s/api/v1/series/%s/http.latency_p99_seconds?from=%d&to=%d",
		base, chartsSource, now.Add(-24*time.Hour).Unix(), now.Unix())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var got struct {
		Step   string       `json:"step"`
		Store  string       `json:"store"`
		Points [][2]float64 `json:"points"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return fmt.Errorf("series API: %s: %w", resp.Status, err)
	}
	fmt.Printf("Series API, %s http.latency_p99_seconds over 24 h: %d points, step %q, from the %s.\n\n",
		chartsSource, len(got.Points), got.Step, got.Store)
	if len(got.Points) < dayPoints || got.Step != dayStep.String() {
		return fmt.Errorf("want at least %d points at step %s", dayPoints, dayStep)
	}
	return nil
}

// recordCharts runs in the page before its scripts. The page keeps its
// uPlot charts to itself; this wraps the uPlot constructor as the vendored
// script defines it, so that each chart made is listed in
// window.benchCharts with the options and data it was made with.
const recordCharts = `{
	const made = window.benchCharts = [];
	let real;
	Object.defineProperty(window, 'uPlot', {
		configurable: true,
		get: () => real,
		set: (uPlot) => {
			real = new Proxy(uPlot, { construct(target, args) {
				const u = Reflect.construct(target, args);
				made.push({ u, opts: args[0], data: args[1] });
				return u;
			} });
		},
	});
}`

// latencyChart is the page's Latency chart, scrolled to the top of the
// screen (charts are drawn when they come near it).
const latencyChart = `(() => {
	const fig = [...document.querySelectorAll('figure.plot')].find((f) => f.querySelector('h3')?.textContent.trim() === 'Latency');
	if (fig) fig.scrollIntoView({ block: 'start' });
	return fig;
})()`

// openChart opens url in headless Chromium, with the page's charts
// recorded, and waits until its Latency chart is drawn with a day of
// points.
func openChart(ctx context.Context, url string, width, height int) (context.Context, func(), error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, nil, fmt.Errorf("chromium not found: apt-get install chromium")
	}
	dir, err := os.MkdirTemp("", "vigil-charts-browser")
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(dir), chromedp.WindowSize(width, height))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	closeAll := func() { cancelB(); cancelA(); os.RemoveAll(dir) }
	fail := func(err error) (context.Context, func(), error) { closeAll(); return nil, nil, err }
	if _, err := chromedp.Call(bctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: recordCharts}); err != nil {
		return fail(err)
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(int64(width), int64(height)), chromedp.Navigate(url)); err != nil {
		return fail(err)
	}
	drawn := fmt.Sprintf(`((fig) => fig && fig.classList.contains('drawn') && Number(fig.dataset.points) >= %d)(%s)`, dayPoints, latencyChart)
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](drawn, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
		return fail(fmt.Errorf("the Latency chart was not drawn with %d points: %w", dayPoints, err))
	}
	return bctx, closeAll, nil
}

// measureDraws is evaluated in the page with the warm-up and timed draws
// of each kind. Every draw starts at the start of an animation frame and
// is timed with performance.now() until that frame's rendering on the
// main thread — style, layout, paint, the canvas flushed — is done (a
// message posted in the frame is handled only after it), and until the
// next frame begins. Four kinds, on the same six series of the chart:
//
//   - redraw: the page's chart given its data again, u.setData(data, true),
//     as charts.js draw() does on a live update: scales, paths, axes and
//     canvas all made again (uPlot commits in a microtask, which runs
//     before the frame renders);
//   - first: a new uPlot made with the page's options and data, as
//     charts.js draw1() makes it, in a box below the chart scrolled into
//     view (the one before destroyed, untimed);
//   - wide: a redraw of such a chart made with its lines 1.5 px wide
//     instead of the page's 1 (a line 1 px wide is drawn by a faster path
//     where the canvas is rasterised by the CPU, as here: why the page
//     draws 1 px);
//   - svg: the reference, an SVG of the chart's size in the same place,
//     with six paths, each a path string made by sparkPath from the page's
//     app.js (imported by the URL the page loaded it from: the same
//     module) over all the points, on one y scale (the paths emptied
//     before, untimed).
const measureDraws = `async (warm, runs) => {
	const fig = ` + latencyChart + `;
	const made = window.benchCharts.find((c) => fig.contains(c.u.root));
	if (!made) throw new Error('no uPlot chart in the Latency figure');
	const u = made.u, data = u.data, n = data[0].length, series = data.length - 1;
	const app = await import(document.querySelector('script[type=module]').src);
	const settle = () => document.body.offsetHeight; // style and layout, untimed
	const frame = (draw) => new Promise((resolve) => requestAnimationFrame(() => {
		const t0 = performance.now();
		draw();
		const ch = new MessageChannel();
		ch.port1.onmessage = () => {
			const rendered = performance.now() - t0;
			requestAnimationFrame(() => resolve([rendered, performance.now() - t0]));
		};
		ch.port2.postMessage(null);
	}));
	const time = async (draw, reset) => {
		const out = { rendered: [], frame: [] };
		for (let i = 0; i < warm + runs; i++) {
			reset();
			settle();
			const [rendered, next] = await frame(draw);
			if (i >= warm) { out.rendered.push(rendered); out.frame.push(next); }
		}
		return out;
	};

	const redraw = await time(() => u.setData(data, true), () => {});

	const box = fig.parentNode.insertBefore(document.createElement('div'), fig.nextSibling);
	box.style.minHeight = fig.offsetHeight + 'px';
	box.scrollIntoView({ block: 'start' });
	let other = null;
	const first = await time(() => { other = new window.uPlot(made.opts, made.data, box); },
		() => { if (other) other.destroy(); other = null; });
	other.destroy();
	const wideOpts = { ...made.opts, series: made.opts.series.map((s, i) => (i ? { ...s, width: 1.5 } : s)) };
	const wide = new window.uPlot(wideOpts, made.data, box);
	const wideRedraw = await time(() => wide.setData(data, true), () => {});
	wide.destroy();
	box.remove();

	const ns = 'http://www.w3.org/2000/svg';
	const svg = fig.parentNode.insertBefore(document.createElementNS(ns, 'svg'), fig.nextSibling);
	svg.setAttribute('width', u.width);
	svg.setAttribute('height', u.height);
	svg.style.display = 'block';
	svg.scrollIntoView({ block: 'start' });
	const paths = data.slice(1).map((_, i) => {
		const p = svg.appendChild(document.createElementNS(ns, 'path'));
		p.setAttribute('class', 'c' + (i % 8));
		p.setAttribute('fill', 'none');
		p.setAttribute('stroke-width', '1.5');
		return p;
	});
	const svgDraw = () => {
		let top = 0;
		for (let s = 1; s <= series; s++) for (const v of data[s]) if (v > top) top = v;
		paths.forEach((p, i) => p.setAttribute('d', app.sparkPath(data[i + 1], n, top, u.width, u.height)));
	};
	const svgTimes = await time(svgDraw, () => paths.forEach((p) => p.removeAttribute('d')));
	const svgPoints = paths.reduce((sum, p) => sum + (p.getAttribute('d').match(/[ML]/g) || []).length, 0);
	svg.remove();

	return { width: u.width, height: u.height, dpr: window.devicePixelRatio, points: n, series,
		svgPoints, redraw, first, wideRedraw, svg: svgTimes, userAgent: navigator.userAgent };
}`

// drawTimes are one kind of draw's times in milliseconds: to the end of
// the frame's rendering, and to the next frame's start.
type drawTimes struct {
	Rendered []float64 `json:"rendered"`
	Frame    []float64 `json:"frame"`
}

// chartTimes is what measureDraws returns.
type chartTimes struct {
	Width     float64   `json:"width"`
	Height    float64   `json:"height"`
	DPR       float64   `json:"dpr"`
	Points    int       `json:"points"`
	Series    int       `json:"series"`
	SVGPoints int       `json:"svgPoints"`
	Redraw    drawTimes `json:"redraw"`
	First     drawTimes `json:"first"`
	Wide      drawTimes `json:"wideRedraw"`
	SVG       drawTimes `json:"svg"`
	UserAgent string    `json:"userAgent"`
}

// printCharts prints the draws as a Markdown table.
func printCharts(r chartTimes, warm int) {
	fmt.Printf("Chart %.0fx%.0f CSS px at device pixel ratio %g, %d series × %d points; %d timed draws of each kind after %d untimed; %s.\n\n",
		r.Width, r.Height, r.DPR, r.Series, r.Points, len(r.Redraw.Rendered), warm, r.UserAgent)
	fmt.Println("| draw | points drawn | rendered, median | p95 | max | next frame, median | p95 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, points int, t drawTimes) {
		med, p95, most := summary(t.Rendered)
		fmed, fp95, _ := summary(t.Frame)
		fmt.Printf("| %s | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms |\n", name, points, med, p95, most, fmed, fp95)
	}
	row("uPlot, redraw: setData (a live update)", r.Series*r.Points, r.Redraw)
	row("uPlot, first draw: new uPlot", r.Series*r.Points, r.First)
	row("uPlot, redraw, lines 1.5 px wide instead of the page's 1", r.Series*r.Points, r.Wide)
	row("reference: SVG, six sparkPath paths", r.SVGPoints, r.SVG)
}

// summary is the median, p95 and max of ms.
func summary(ms []float64) (med, p95, most float64) {
	if len(ms) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(ms))
	return s[len(s)/2], s[min(len(s)-1, int(0.95*float64(len(s))))], s[len(s)-1]
}
