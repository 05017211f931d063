package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"vigil/internal/vigiltest"
)

// TestBrowserChartsReadAndZoom opens a demo service's drill-down in
// Chromium: its charts are drawn with uPlot under the page's CSP, with
// values in their units; the crosshair shows the time and each series'
// value, on every chart at once; an alert's transition is marked; the
// charts move while the range ends at now; a drag zooms (into the URL);
// and the range picker reaches back further.
func TestBrowserChartsReadAndZoom(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(`alerts:
  rules:
    - name: CheckoutBusy
      source: service/checkout
      metric: http.requests_per_sec
      op: ">"
      threshold: 0
      for: 0s
`), 0o600)
	base, _ := startVigil(t, "--data", dir, "--demo", "--config", cfg)
	const csp = `window.cspViolations = [];
		document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: csp}); err != nil {
		t.Fatal(err)
	}
	// Wait for the alert to fire, so the charts have a mark.
	waitForAlert(t, base, "CheckoutBusy")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/source/service/checkout"), chromedp.WaitReady(`body`)); err != nil {
		t.Fatal(err)
	}
	drawn := `document.querySelectorAll('figure.plot.drawn').length`
	waitFor(t, ctx, "charts drawn with uPlot", drawn+` >= 2`, 15*time.Second)

	// Values in the chart's unit: requests a second, latencies in ms.
	legend := func(chart int) string {
		return evalString(t, ctx, fmt.Sprintf(`[...document.querySelectorAll('figure.plot.drawn')[%d].querySelectorAll('.u-legend .u-series')].map((r) => r.textContent.trim()).join(' | ')`, chart))
	}
	if got := legend(0); !strings.Contains(got, "Time") || !strings.Contains(got, "/s") {
		t.Errorf("requests legend %q: want the time and a rate", got)
	}
	titles := evalString(t, ctx, `[...document.querySelectorAll('figure.plot h3')].map((h) => h.textContent).join(' | ')`)
	if !strings.HasPrefix(titles, "Requests | Errors | Latency | Instances | Requests by instance | Errors by instance | Latency p50 by instance") || strings.Contains(titles, "http.") {
		t.Errorf("chart titles %q: want readable ones, families first", titles)
	}
	const latency = `[...document.querySelectorAll('figure.plot')].find((f) => f.querySelector('h3').textContent === 'Latency')`
	chromedp.Run(ctx, chromedp.Evaluate[bool](latency+`.scrollIntoView(); true`))
	waitFor(t, ctx, "the latency chart drawn", latency+`.classList.contains('drawn')`, 10*time.Second)
	lat := evalString(t, ctx, latency+`.querySelector('.u-legend').textContent`)
	for _, want := range []string{"p50", "p99", "max", " ms"} {
		if !strings.Contains(lat, want) {
			t.Errorf("latency legend %q lacks %q", lat, want)
		}
	}

	// The alert's transition is marked: in the data the charts draw from.
	waitFor(t, ctx, "the firing mark", `Number(document.querySelector('section.plots').dataset.marks) >= 1`, 10*time.Second)

	// Live: points are added while the range ends at now.
	points := `Number(document.querySelector('figure.plot.drawn').dataset.points)`
	p0, _ := chromedp.Run(ctx, chromedp.Evaluate[int](points))
	waitFor(t, ctx, "the chart moves", fmt.Sprintf(`%s > %d`, points, p0), 10*time.Second)

	// The crosshair: hover the first chart; its legend and the second's
	// show the same time under the pointer, and values.
	box := func(chart int) (x, y, w float64) {
		r, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(
			`(() => { const r = document.querySelectorAll('figure.plot.drawn')[%d].querySelector('.u-over').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`, chart)))
		if err != nil || len(r) != 4 {
			t.Fatalf("chart box: %v %v", r, err)
		}
		return r[0], r[1] + r[3]/2, r[2]
	}
	chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelectorAll('figure.plot.drawn')[0].scrollIntoView({block: 'center'}); true`))
	x, y, w := box(0)
	if err := chromedp.Do(ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x+w*0.6, y)); err != nil {
		t.Fatal(err)
	}
	timeAt := func(chart int) string {
		return evalString(t, ctx, fmt.Sprintf(`document.querySelectorAll('figure.plot.drawn')[%d].querySelector('.u-legend .u-series .u-value').textContent`, chart))
	}
	waitFor(t, ctx, "the crosshair's time", `document.querySelector('figure.plot.drawn .u-legend .u-series .u-value').textContent !== 'now'`, 5*time.Second)
	if t0, t1 := timeAt(0), timeAt(1); t0 == "now" || t0 != t1 {
		t.Errorf("crosshair times %q and %q: want the same moment on both charts", t0, t1)
	}
	// And each series' value at that moment, in its unit.
	valueAt := evalString(t, ctx, `document.querySelectorAll('figure.plot.drawn')[0].querySelectorAll('.u-legend .u-series .u-value')[1].textContent`)
	if !regexp.MustCompile(`^\d[\d.]*k?/s$`).MatchString(valueAt) {
		t.Errorf("the requests chart's value under the pointer: %q", valueAt)
	}

	// Drag across the middle fifth: the range is zoomed, in the URL.
	from, to := x+w*0.4, x+w*0.6
	if err := chromedp.Do(ctx,
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, from, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (from+to)/2, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, to, y, chromedp.ButtonLeft),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, to, y, chromedp.ButtonLeft),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a zoomed URL", `/[?&]from=\d+(\.\d+)?&to=\d+/.test(location.search) && !location.search.includes('range=')`, 5*time.Second)
	waitFor(t, ctx, "the zoomed span said beside the range picker", `(document.querySelector('section.plots .ranges .zoomed') || {}).textContent > ''`, 5*time.Second)
	waitFor(t, ctx, "charts drawn over the zoomed span", drawn+` >= 2 && (() => { const s = document.querySelector('section.plots'); return Number(s.dataset.to) - Number(s.dataset.from) < 200e3 && !('live' in s.dataset); })()`, 10*time.Second)

	// The range picker: 1 h, kept in the URL, reaching into the history.
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid=ranges] a[data-range="1h"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the 1 h range", `location.search === '?range=1h' && document.querySelector('section.plots').dataset.range === '1h' && document.querySelectorAll('figure.plot.drawn').length >= 2`, 15*time.Second)
	chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('section.plots').scrollIntoView(); true`))
	if shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		os.WriteFile(filepath.Join(artifactDir(t), "charts.png"), shot, 0o644)
	}
	if v := evalString(t, ctx, `window.cspViolations.join('; ')`); v != "" {
		t.Errorf("CSP violations: %s", v)
	}
}

// waitForAlert waits for a rule's alert to fire on the vigil at base.
func waitForAlert(t *testing.T, base, rule string) {
	t.Helper()
	vigiltest.Eventually(t, 15*time.Second, rule+" firing", func() bool {
		var out struct {
			Alerts []struct{ Rule, State string } `json:"alerts"`
		}
		getJSONInto(t, base+"/api/v1/alerts", &out)
		return slices.ContainsFunc(out.Alerts, func(a struct{ Rule, State string }) bool { return a.Rule == rule && a.State == "firing" })
	})
}
