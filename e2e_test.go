package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"vigil/internal/vigiltest"
	"vigil/templates"
	"vigil/units"
)

// browser starts headless Chromium for a test. Locally a missing browser
// skips the test; in CI (where .ci/run installs Debian's chromium) it fails.
func browser(t *testing.T, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no Chromium in CI: .ci/run must install it")
		}
		t.Skip("no Chromium here; apt-get install chromium to run the browser tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 720),
	)
	opts = append(opts, flags...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

func evalString(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// waitFor waits for a JavaScript condition in the page to hold.
func waitFor(t *testing.T, ctx context.Context, what, js string, within time.Duration) {
	t.Helper()
	vigiltest.Eventually(t, within, what, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		return err == nil && ok
	})
}

// importApp imports the page's own script, static/app.js, by the URL the
// page loaded it from, and keeps its exports (format, radius, sparkPath) in
// window.app for the test's expressions. The URL is the page's, so the
// browser's module map hands back the instance the page runs, without a
// fetch; any other URL would be a second instance, and the page's CSP
// refuses to load it.
func importApp(t *testing.T, ctx context.Context) {
	t.Helper()
	const js = `import(document.querySelector('script[type=module][src^="/static/app.js"]').src).then((m) => { window.app = m; return true; })`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("import the page script: %v", err)
	}
}

// countFrames keeps, in window.framesDrawn, the count of animation frames
// drawn in every page the tab loads from now on: it wraps
// requestAnimationFrame before the page's own script runs.
func countFrames(t *testing.T, ctx context.Context) {
	t.Helper()
	const js = `{
		window.framesDrawn = 0;
		const raf = window.requestAnimationFrame.bind(window);
		window.requestAnimationFrame = (draw) => raf((now) => { window.framesDrawn++; draw(now); });
	}`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		t.Fatalf("count frames: %v", err)
	}
}

func artifactDir(t *testing.T) string {
	if d := os.Getenv("VIGIL_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// TestBrowserDashboardGoesLiveAndResumes loads the dashboard in headless
// Chromium, sees it update, stops vigil (and answers 502 for a while, as a
// proxy would during a deploy), starts it again on the same port and sees
// the same page resume without a reload.
func TestBrowserDashboardGoesLiveAndResumes(t *testing.T) {
	ctx := browser(t)
	data := t.TempDir()
	base, stop := startVigil(t, "--data", data)
	addr := strings.TrimPrefix(base, "http://")

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`[data-testid=host-panel]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "indicator says live", `document.querySelector('[data-testid=connection]').dataset.state === 'live'`, 5*time.Second)
	// The first event on the stream is remembered as SSE working.
	waitFor(t, ctx, "SSE remembered", `(localStorage.getItem('vigil-transport') || '').includes('"t":"sse"')`, 5*time.Second)
	if tr := evalString(t, ctx, `document.querySelector('[data-testid=connection]').textContent.trim()`); tr != "live · SSE" {
		t.Errorf("indicator: %q", tr)
	}
	// The CPU sparkline moves with every sample (a text value such as the
	// moving may show the same minute for a while).
	moving := `(document.querySelector('svg[data-spark="cpu.percent"] path')?.getAttribute('d') ?? '')`
	before := evalString(t, ctx, moving)
	waitFor(t, ctx, "values change", moving+` !== `+fmt.Sprintf("%q", before), 3*time.Second)
	points := `document.querySelector('svg[data-spark="cpu.percent"] path').getAttribute('d').split('L').length`
	p0, _ := chromedp.Run(ctx, chromedp.Evaluate[int](points))
	waitFor(t, ctx, "sparkline grows", fmt.Sprintf("%s > %d", points, p0), 3*time.Second)

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(artifactDir(t), "dashboard.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)

	// The page must not reload to recover: mark it.
	chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__marker = true`))
	stop()
	waitFor(t, ctx, "indicator stops saying live", `document.querySelector('[data-testid=connection]').dataset.state !== 'live'`, 10*time.Second)
	waitFor(t, ctx, "a stale page looks stale", `document.body.classList.contains('is-stale')`, 10*time.Second)

	// A proxy answers 502 while vigil is down: EventSource gives up on a
	// non-200 answer, the page must not.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	bad := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})}
	go bad.Serve(ln)
	vigiltest.Eventually(t, 15*time.Second, "the page retries while the proxy answers 502", func() bool { return hits.Load() > 0 })
	bad.Close()

	startVigil(t, "--data", data, "--addr", addr)
	waitFor(t, ctx, "page live again after restart", `document.querySelector('[data-testid=connection]').dataset.state === 'live'`, 40*time.Second)
	before = evalString(t, ctx, moving)
	waitFor(t, ctx, "values change after restart", moving+` !== `+fmt.Sprintf("%q", before), 5*time.Second)
	if marked, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__marker === true`)); !marked {
		t.Fatal("the page reloaded instead of resuming")
	}
	if evalString(t, ctx, `String(document.body.classList.contains('is-stale'))`) != "false" {
		t.Fatal("page still marked stale while live")
	}
}

// TestBrowserFormatsLikeServer checks the page script formats values,
// draws sparklines and sizes circles exactly as the server does.
func TestBrowserFormatsLikeServer(t *testing.T) {
	ctx := browser(t)
	base, _ := startVigil(t, "--data", t.TempDir())
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitReady(`body`)); err != nil {
		t.Fatal(err)
	}
	importApp(t, ctx)
	values := []float64{0, 0.0004, 0.5, 1, 12.345, 41.6667, 99.99, 100, 999, 1000, 1023, 1024, 1536, 1e6, 5.5e9, 3.2e12, 59, 61, 3599, 3601, 86400 * 3.5, -3}
	for _, f := range []string{units.Percent, units.Bytes, units.ByteRate, units.Rate, units.Latency, units.LatencyBound, units.Duration, units.Number} {
		for _, v := range values {
			got := evalString(t, ctx, fmt.Sprintf("app.format(%q, %v)", f, v))
			if want := units.FormatAs(f, v); got != want {
				t.Errorf("format %s %v: script %q, server %q", f, v, got, want)
			}
		}
	}
	for _, rate := range []float64{0, 0.5, 1, 10, 99, 1000, 5000, 1e4, 1e6} {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](fmt.Sprintf("app.radius(%v)", rate)))
		if want := templates.CircleRadius(rate); got != want {
			t.Errorf("radius(%v): script %v, server %v", rate, got, want)
		}
	}
	vals := []float64{1, 5, 3, 0, 7.5, 2}
	for _, top := range []float64{0, 10, 100} {
		got := evalString(t, ctx, fmt.Sprintf("app.sparkPath([1,5,3,0,7.5,2], 10, %v, 120, 30)", top))
		if want := templates.SparkPath(vals, 10, top, 120, 30); got != want {
			t.Errorf("sparkPath top %v: script %q, server %q", top, got, want)
		}
	}
}

// TestBrowserControls drives the page with the keyboard alone: filter,
// pause, theme; and checks a hidden tab stops drawing and catches up when
// it is shown again.
func TestBrowserControls(t *testing.T) {
	ctx := browser(t)
	base, _ := startVigil(t, "--data", t.TempDir())
	// samples waits until n more samples were published (and sent to the
	// page too).
	published := openStream(t, base+"/events?type=sample", nil)
	samples := func(n int) {
		for len(published) > 0 {
			<-published // from before
		}
		for range n {
			vigiltest.Next(t, published, "sample", 5*time.Second)
		}
	}
	countFrames(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`[data-testid=host-panel]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "live", `document.querySelector('[data-testid=connection]').dataset.state === 'live'`, 5*time.Second)
	// The CPU sparkline moves with every sample (a text value such as the
	// moving may show the same minute for a while).
	moving := `(document.querySelector('svg[data-spark="cpu.percent"] path')?.getAttribute('d') ?? '')`

	// "/" focuses the filter; typing filters; the URL keeps it; Escape clears.
	if err := chromedp.Do(ctx, chromedp.KeyEvent("/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "/ focuses the filter", `document.activeElement && document.activeElement.id === 'filter'`, 2*time.Second)
	// (DevTools sends the "/" as a separate character event, which the
	// page's preventDefault on keydown cannot stop; a real keyboard's is.)
	chromedp.Do(ctx, chromedp.KeyEvent("no-such-host"))
	waitFor(t, ctx, "filter hides the host", `document.querySelector('[data-testid=host-panel]').hidden && location.search.includes('no-such-host')`, 2*time.Second)
	chromedp.Do(ctx, chromedp.KeyEvent("\u001b")) // Escape
	waitFor(t, ctx, "Escape clears the filter", `!document.querySelector('[data-testid=host-panel]').hidden && !location.search.includes('q=')`, 2*time.Second)

	// "p" pauses: the indicator says so and values hold still.
	chromedp.Do(ctx, chromedp.KeyEvent("p"))
	waitFor(t, ctx, "p pauses", `document.querySelector('[data-testid=connection]').dataset.state === 'paused' && document.querySelector('[data-testid=pause]').getAttribute('aria-pressed') === 'true' && location.search.includes('paused=1')`, 2*time.Second)
	held := evalString(t, ctx, moving)
	samples(2) // arrive meanwhile; the screen must not move
	if now := evalString(t, ctx, moving); now != held {
		t.Fatalf("value changed while paused: %q -> %q", held, now)
	}
	chromedp.Do(ctx, chromedp.KeyEvent("p"))
	waitFor(t, ctx, "p resumes and catches up", moving+` !== `+fmt.Sprintf("%q", held), 2*time.Second)

	// The theme toggle overrides the system theme and is remembered.
	chromedp.Do(ctx, chromedp.KeyEvent("t"))
	waitFor(t, ctx, "t switches to dark", `document.documentElement.dataset.theme === 'dark' && localStorage.getItem('vigil-theme') === 'dark'`, 2*time.Second)
	chromedp.Do(ctx, chromedp.Click(`[data-testid=theme]`))
	waitFor(t, ctx, "the button switches to light", `document.documentElement.dataset.theme === 'light'`, 2*time.Second)

	// A hidden tab draws nothing; shown again, it draws at once.
	chromedp.Run(ctx, chromedp.Evaluate[bool](`Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}); document.dispatchEvent(new Event('visibilitychange')); true`))
	// A frame already requested finishes within the next two.
	chromedp.Run(ctx, chromedp.Evaluate[bool](`new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))`, chromedp.EvalAwaitPromise))
	frames := `window.framesDrawn`
	f0, _ := chromedp.Run(ctx, chromedp.Evaluate[int](frames))
	held = evalString(t, ctx, moving)
	samples(2)
	if f1, _ := chromedp.Run(ctx, chromedp.Evaluate[int](frames)); f1 != f0 {
		t.Fatalf("hidden tab rendered %d frames", f1-f0)
	}
	chromedp.Run(ctx, chromedp.Evaluate[bool](`Object.defineProperty(document, 'hidden', {configurable: true, get: () => false}); document.dispatchEvent(new Event('visibilitychange')); true`))
	waitFor(t, ctx, "visible again: catches up at once", moving+` !== `+fmt.Sprintf("%q", held), 500*time.Millisecond)
}

// TestBrowserServiceTilesGoLive runs the demo and watches its service
// tiles move: rate, circle and the health class follow the stream.
func TestBrowserServiceTilesGoLive(t *testing.T) {
	ctx := browser(t)
	base, _ := startVigil(t, "--data", t.TempDir(), "--demo")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	importApp(t, ctx)
	waitFor(t, ctx, "five demo tiles", `document.querySelectorAll('[data-testid=tile][data-kind=service]').length === 5`, 15*time.Second)
	if evalString(t, ctx, `document.querySelector('[data-testid=demo-badge]') ? 'yes' : 'no'`) != "yes" {
		t.Fatal("demo data not labelled")
	}
	rate := `document.querySelector('[data-source="service/search"] [data-testid=rate]').textContent`
	before := evalString(t, ctx, rate)
	waitFor(t, ctx, "the search tile's rate moves", rate+` !== `+fmt.Sprintf("%q", before), 5*time.Second)
	// The circle and health class agree with the numbers on the tile.
	waitFor(t, ctx, "circle drawn from live data", `(() => {
		const el = document.querySelector('[data-source="service/search"]');
		const r = Number(el.querySelector('circle').getAttribute('r'));
		const rate = Number(el.dataset.rate);
		return rate > 0 && r === window.app.radius(rate);
	})()`, 5*time.Second)
	waitFor(t, ctx, "hosts reporting", `document.querySelector('[data-source="service/checkout"] [data-testid=hosts-reporting]').textContent.replace(/\s+/g, ' ').trim() === '3 of 3'`, 5*time.Second)
}

// TestBrowserFallsBackToLongPolling puts the dashboard behind a proxy that
// buffers event streams (it sends the headers, then holds the body): the
// page must notice within a heartbeat, switch to long polling by itself,
// stay live, say so, and start with long polling after a reload.
func TestBrowserFallsBackToLongPolling(t *testing.T) {
	ctx := browser(t)
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("stream:\n  heartbeat: 1s\n"), 0o644)
	base, _ := startVigil(t, "--data", t.TempDir(), "--config", cfg, "--interval", "250ms")
	up, _ := url.Parse(base)
	pass := httputil.NewSingleHostReverseProxy(up)
	pass.ErrorLog = log.New(io.Discard, "", 0) // a page's polls cut short by a reload
	var streams atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			streams.Add(1)
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			<-r.Context().Done() // the body stays in the proxy's buffer
			return
		}
		pass.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	if err := chromedp.Do(ctx, chromedp.Navigate(proxy.URL+"/"), chromedp.WaitVisible(`[data-testid=host-panel]`)); err != nil {
		t.Fatal(err)
	}
	conn := `document.querySelector('[data-testid=connection]')`
	waitFor(t, ctx, "falls back to long polling", conn+`.dataset.transport === 'poll' && `+conn+`.dataset.state === 'live'`, 15*time.Second)
	if txt := evalString(t, ctx, conn+`.textContent.trim()`); txt != "live · long polling" {
		t.Errorf("indicator says %q", txt)
	}
	if streams.Load() == 0 {
		t.Fatal("the page never tried the event stream")
	}
	moving := `(document.querySelector('svg[data-spark="cpu.percent"] path')?.getAttribute('d') ?? '')`
	before := evalString(t, ctx, moving)
	waitFor(t, ctx, "values change by long polling", moving+` !== `+fmt.Sprintf("%q", before), 5*time.Second)
	if v := evalString(t, ctx, `JSON.parse(localStorage.getItem('vigil-transport')).t`); v != "poll" {
		t.Fatalf("remembered %q", v)
	}

	// After a reload the page starts with long polling: no stream request.
	n := streams.Load()
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(`[data-testid=host-panel]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "live by long polling after a reload", conn+`.dataset.transport === 'poll' && `+conn+`.dataset.state === 'live'`, 5*time.Second)
	before = evalString(t, ctx, moving)
	waitFor(t, ctx, "values change after a reload", moving+` !== `+fmt.Sprintf("%q", before), 5*time.Second)
	if streams.Load() != n {
		t.Errorf("the reloaded page opened the event stream again (%d -> %d)", n, streams.Load())
	}
}

// TestBrowserCrossSiteWritesFail: a page on another origin tries every
// write in a visitor's browser — "simple" no-cors requests, JSON with a
// preflight, a form post, the WebSocket's ack — and a page on a name that
// rebinds to vigil's address tries them as "same origin". All fail and
// nothing changes.
func TestBrowserCrossSiteWritesFail(t *testing.T) {
	ctx := browser(t, chromedp.Flag("host-resolver-rules", "MAP evil.test 127.0.0.1"))
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("alerts:\n  rules:\n    - {name: AlwaysFiring, source: host/*, metric: host.uptime_seconds, op: '>', threshold: 0}\n"), 0o644)
	base, _ := startVigil(t, "--data", t.TempDir(), "--config", cfg)
	vigilPort := base[strings.LastIndex(base, ":")+1:]

	var fp string
	vigiltest.Eventually(t, 15*time.Second, "the alert fires", func() bool {
		var out struct {
			Alerts []struct{ Fingerprint, State string }
		}
		getJSONInto(t, base+"/api/v1/alerts", &out)
		if len(out.Alerts) > 0 && out.Alerts[0].State == "firing" {
			fp = out.Alerts[0].Fingerprint
		}
		return fp != ""
	})
	// A subscription made the legitimate way (no browser, no Origin).
	req, _ := http.NewRequest("POST", base+"/api/v1/subscriptions", strings.NewReader(`{"url":"http://127.0.0.1:9/hook","description":"ops"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	var sub struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	// What a forged write could change: the subscriptions, and who
	// acknowledged the alert (values and times move on their own).
	state := func() string {
		var subs map[string]any
		var alerts struct {
			Alerts []struct {
				Fingerprint, State string
				AckedBy            string `json:"acked_by"`
			}
		}
		getJSONInto(t, base+"/api/v1/subscriptions", &subs)
		getJSONInto(t, base+"/api/v1/alerts", &alerts)
		b, _ := json.Marshal([]any{subs, alerts})
		return string(b)
	}
	before := state()
	if !strings.Contains(before, `"State":"firing","acked_by":""`) {
		t.Fatalf("unexpected start state %s", before)
	}

	attack := `(async (base, sub, fp) => {
		const results = [];
		const tries = [
			['POST', base + '/api/v1/subscriptions', '{"url":"http://127.0.0.1:9/evil"}'],
			['PUT', base + '/api/v1/subscriptions/' + sub, '{"description":"pwned"}'],
			['DELETE', base + '/api/v1/subscriptions/' + sub, null],
			['POST', base + '/api/v1/subscriptions/' + sub + '/rotate-secret', null],
			['POST', base + '/api/v1/subscriptions/' + sub + '/test', null],
			['POST', base + '/api/v1/alerts/' + fp + '/ack', '{"by":"mallory"}'],
			['POST', base + '/api/v1/alerts/' + fp + '/ack', null],
		];
		for (const [method, url, body] of tries) {
			for (const mode of ['no-cors', 'cors']) {
				const init = {method, mode, body, credentials: 'include',
					headers: mode === 'cors' ? {'Content-Type': 'application/json'} : {'Content-Type': 'text/plain'}};
				try { const r = await fetch(url, init); results.push(method + ' ' + mode + ' ' + r.status + ' ' + r.type); }
				catch (e) { results.push(method + ' ' + mode + ' failed'); }
			}
			try {
				const form = new URLSearchParams({by: 'mallory'});
				await fetch(url, {method: 'POST', mode: 'no-cors', body: form});
			} catch (e) {}
		}
		await new Promise((done) => {
			const ws = new WebSocket(base.replace('http', 'ws') + '/ws');
			ws.onopen = () => { results.push('ws open'); ws.send(JSON.stringify({op: 'ack', fingerprint: fp, by: 'mallory'})); setTimeout(done, 500); };
			ws.onerror = () => { results.push('ws refused'); done(); };
		});
		return results.join('\n');
	})`

	// A page on another site (localhost is another site than 127.0.0.1).
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>somewhere else</title><p>hello")
	}))
	defer page.Close()
	pagePort := page.URL[strings.LastIndex(page.URL, ":")+1:]
	if err := chromedp.Do(ctx, chromedp.Navigate("http://localhost:"+pagePort+"/")); err != nil {
		t.Fatal(err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](attack+fmt.Sprintf("(%q, %q, %q)", base, sub.ID, fp), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cross-site page:\n%s", out)
	if strings.Contains(out, "ws open") {
		t.Error("the cross-site page opened the WebSocket")
	}
	if after := state(); after != before {
		t.Fatalf("a cross-site page changed something:\n%s\n%s", before, after)
	}

	// A page on a name that resolves to vigil's address (DNS rebinding):
	// to the browser its requests are same-origin.
	evil := "http://evil.test:" + vigilPort
	if err := chromedp.Do(ctx, chromedp.Navigate(evil+"/")); err != nil {
		t.Fatal(err)
	}
	if body := evalString(t, ctx, `document.body.textContent`); !strings.Contains(body, "server.allowed_hosts") {
		t.Errorf("the rebinding name got a page: %q", body)
	}
	if out, err = chromedp.Run(ctx, chromedp.Evaluate[string](attack+fmt.Sprintf("(%q, %q, %q)", evil, sub.ID, fp), chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	t.Logf("rebinding page:\n%s", out)
	if strings.Contains(out, " 2") || strings.Contains(out, "ws open") {
		t.Errorf("a request from the rebinding name was answered:\n%s", out)
	}
	if after := state(); after != before {
		t.Fatalf("a rebinding page changed something:\n%s\n%s", before, after)
	}
}

func getJSONInto(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
