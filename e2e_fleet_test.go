package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// fleetAgent is a vigil agent in the test's process: a real stream hub
// behind vigil's own HTTP server, publishing its host's samples.
type fleetAgent struct {
	name string
	hub  *stream.Hub
	web  http.Handler
	srv  *httptest.Server
	addr string
}

// serve starts (or starts again, on the same address) the agent's server.
func (a *fleetAgent) serve(t *testing.T) {
	t.Helper()
	addr := a.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	a.srv = httptest.NewUnstartedServer(a.web)
	a.srv.Listener.Close()
	a.srv.Listener = ln
	a.srv.Start()
}

// stop closes the agent's server, streams and all: to the hub it is gone.
func (a *fleetAgent) stop() {
	a.srv.CloseClientConnections()
	a.srv.Close()
}

// fleetCPU is host i's CPU: fixed, so that an order by CPU is known.
func fleetCPU(i int) float64 { return float64((i*37)%100) + 0.5 }

var fleetRoles = []string{"web", "db", "cache"}

// startFleet starts n agents (h000…), each publishing its host's sample
// every second, and a hub — a real collector.Fleet, store, scheduler and
// dashboard — that follows them and an address where nothing answers.
// cpu, when it returns ok, overrides a host's CPU.
func startFleet(t *testing.T, n int, cpu func(i int) (float64, bool)) (base string, agents []*fleetAgent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	var ups []collector.UpstreamOptions
	for i := range n {
		a := &fleetAgent{name: fmt.Sprintf("h%03d", i), hub: stream.NewHub(stream.HubOptions{FirstID: 1})}
		a.web = dashboard.New(dashboard.Options{Hub: a.hub, Store: collector.NewStore(time.Minute, time.Second), Interval: time.Second})
		a.serve(t)
		run(a.hub.Run)
		t.Cleanup(func() { a.hub.Close(); a.stop() })
		agents = append(agents, a)
		ups = append(ups, collector.UpstreamOptions{URL: "http://" + a.addr, Name: a.name,
			Labels: map[string]string{"role": fleetRoles[i%3], "dc": []string{"fra", "ams"}[i%2]}})
	}
	// An agent never reached: a port that was free a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ups = append(ups, collector.UpstreamOptions{URL: "http://" + ln.Addr().String(), Name: "zz-nowhere"})
	ln.Close()

	// The agents sample their hosts every second, each at its own phase.
	run(func(ctx context.Context) error {
		start := time.Now()
		tick := time.NewTicker(time.Second / time.Duration(n))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			i := k % n
			c, ok := cpu(i)
			if !ok {
				c = fleetCPU(i)
			}
			up := time.Since(start).Seconds()
			agents[i].hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/" + agents[i].name, Time: time.Now(),
				Key: "sample/host/" + agents[i].name, Body: collector.SampleBody{Metrics: map[string]float64{
					"cpu.percent": c, "cpu.cores": 4, "mem.used_percent": float64(20 + i%60), "swap.used_percent": 0,
					"load.1": 1.5, "load.5": 1.2, "load.5_per_core": 0.3, "fs.used_percent{mount=/}": float64(30 + i%50),
					"fs.used_percent{mount=/var}": 12, "net.rx_bytes_per_sec": float64(1000 * i), "net.tx_bytes_per_sec": 24,
					"host.uptime_seconds": 10 + up, // shown to the second for an hour "host.procs": 100,
				}}})
		}
	})

	hub := stream.NewHub(stream.HubOptions{Queue: 8192})
	store := collector.NewStore(10*time.Minute, time.Second)
	sched := &collector.Scheduler{Store: store, Hub: hub, Interval: time.Second}
	fleet := &collector.Fleet{Store: store, Hub: hub, Scheduler: sched, Upstreams: ups, MaxDials: 64}
	run(hub.Run)
	run(sched.Run)
	run(fleet.Run)
	web := httptest.NewUnstartedServer(dashboard.New(dashboard.Options{Hub: hub, Store: store, Fleet: fleet, Interval: time.Second}))
	web.Config.RegisterOnShutdown(hub.Close)
	web.Start()
	t.Cleanup(func() { hub.Close(); web.Close() })
	vigiltest.Eventually(t, 20*time.Second, "the hub hears from every agent", func() bool {
		got := 0
		for _, u := range fleet.Status() {
			if len(u.Hosts) > 0 {
				got++
			}
		}
		return got == n
	})
	return web.URL, agents
}

// TestBrowserFleet follows 200 agents from a hub and drives the hub's
// dashboard in headless Chromium: the host table is live, sorts by a
// column, filters and groups, marks an agent that stops as unreachable
// and fills its row in again when it is back.
func TestBrowserFleet(t *testing.T) {
	const n = 200
	ctx := browser(t)
	var mu sync.Mutex
	override := map[int]float64{}
	base, agents := startFleet(t, n, func(i int) (float64, bool) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := override[i]
		return v, ok
	})
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	script := func(js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js+`; true`)); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	chooseGroup := func(key string) {
		t.Helper()
		script(fmt.Sprintf(`document.querySelector('[data-testid=group]').value = %q; document.querySelector('[data-testid=group]').dispatchEvent(new Event('change', {bubbles: true}))`, key))
	}
	do(chromedp.Navigate(base + "/"))
	rows := `document.querySelectorAll('[data-testid=host-row]')`
	waitFor(t, ctx, "a row per host and one for the agent never reached", rows+`.length === `+fmt.Sprint(n+1), 10*time.Second)
	waitFor(t, ctx, "live", `document.querySelector('[data-testid=connection]').dataset.state === 'live'`, 10*time.Second)
	// Worst first: the agent never reached is the first row.
	first := `document.querySelector('[data-testid=host-row]')`
	waitFor(t, ctx, "the unreachable agent first", first+`.dataset.host === 'upstream/zz-nowhere' && `+first+`.dataset.state === 'unreachable'`, 10*time.Second)

	row := func(name string) string {
		return fmt.Sprintf(`document.querySelector('[data-testid=host-row][data-host="host/%s"]')`, name)
	}
	cell := func(name, col string) string {
		return fmt.Sprintf(`(%s?.querySelector('[data-testid=row-%s]')?.textContent ?? '')`, row(name), col)
	}

	// Live: a value an agent publishes shows in its row.
	script(row("h017") + `.scrollIntoView({block: 'center'})`)
	mu.Lock()
	override[17] = 42.5
	mu.Unlock()
	waitFor(t, ctx, "h017's CPU from its agent", cell("h017", "cpu")+` === '42.5%'`, 5*time.Second)
	uptime := evalString(t, ctx, cell("h017", "uptime"))
	waitFor(t, ctx, "h017's uptime moves", cell("h017", "uptime")+` !== `+fmt.Sprintf("%q", uptime), 5*time.Second)
	mu.Lock()
	delete(override, 17)
	mu.Unlock()
	script(`window.scrollTo(0, 0)`)

	// Sortable: by CPU, the highest first; by name, A to Z.
	names := func(k int) string {
		return fmt.Sprintf(`Array.from(%s).filter((r) => !r.hidden).slice(0, %d).map((r) => r.dataset.host.replace(/^\w+\//, '')).join(' ')`, rows, k)
	}
	wantCPU := []string{}
	for v := 99; len(wantCPU) < 5; v-- {
		for i := range n {
			if int(fleetCPU(i)) == v && i != 17 {
				wantCPU = append(wantCPU, fmt.Sprintf("h%03d", i))
			}
		}
	}
	do(chromedp.Click(`[data-testid=sort-cpu]`))
	waitFor(t, ctx, "sorted by CPU", names(5)+` === `+fmt.Sprintf("%q", strings.Join(wantCPU[:5], " ")), 3*time.Second)
	if s := evalString(t, ctx, `location.search + ' ' + document.querySelector('th:has([data-testid=sort-cpu])').getAttribute('aria-sort')`); s != "?sort=cpu descending" {
		t.Errorf("after the click: %s", s)
	}
	do(chromedp.Click(`[data-testid=sort-name]`))
	waitFor(t, ctx, "sorted by name", names(3)+` === 'h000 h001 h002'`, 3*time.Second)

	// Filter, as the user types: by a label, then by a name.
	visible := fmt.Sprintf(`Array.from(%s).filter((r) => !r.hidden).length`, rows)
	count := `document.querySelector('[data-testid=fleet-count]').textContent.trim()`
	do(chromedp.Click(`[data-testid=filter]`), chromedp.SendKeys(`[data-testid=filter]`, "role=db"))
	waitFor(t, ctx, "filtered by role=db", visible+` === 67 && `+count+` === '67 of 201' && location.search.includes('q=role%3Ddb')`, 3*time.Second)
	if got := evalString(t, ctx, names(3)); got != "h001 h004 h007" {
		t.Errorf("role=db: %s", got)
	}
	script(`document.querySelector('[data-testid=filter]').value = ''`)
	do(chromedp.SendKeys(`[data-testid=filter]`, "h01"))
	waitFor(t, ctx, "filtered by name", visible+` === 10 && `+names(1)+` === 'h010'`, 3*time.Second)
	script(`document.querySelector('[data-testid=filter]').value = ''; document.querySelector('[data-testid=filter]').dispatchEvent(new Event('input'))`)
	waitFor(t, ctx, "the filter cleared", visible+` === 201`, 3*time.Second)

	// Group by role: one group per value, those without the label last.
	groups := `Array.from(document.querySelectorAll('[data-testid=fleet-group]')).map((g) => g.dataset.group + ':' + g.querySelectorAll('[data-testid=host-row]').length).join(' ')`
	chooseGroup("role")
	waitFor(t, ctx, "grouped by role", groups+` === 'cache:66 db:67 web:67 :1' && location.search.includes('group=role')`, 3*time.Second)
	if got := evalString(t, ctx, `document.querySelector('[data-group=db] .group-head').textContent.replace(/\s+/g, ' ').trim()`); got != "role = db 67 hosts" {
		t.Errorf("group head %q", got)
	}
	// Grouped and sorted by name, the server renders the same table.
	before := evalString(t, ctx, groups+` + '|' + `+names(n+1))
	do(chromedp.Reload())
	waitFor(t, ctx, "the same view after a reload", rows+`.length === `+fmt.Sprint(n+1), 10*time.Second)
	if after := evalString(t, ctx, groups+` + '|' + `+names(n+1)); after != before {
		t.Errorf("reloaded:\n%s\nbefore:\n%s", after, before)
	}
	chooseGroup("")
	waitFor(t, ctx, "not grouped", groups+` === ':201'`, 3*time.Second)
	do(chromedp.Click(`[data-testid=sort-worst]`))
	waitFor(t, ctx, "worst first again", `location.search === '' && `+first+`.dataset.host === 'upstream/zz-nowhere'`, 3*time.Second)

	// An agent that stops is marked unreachable, with since when, and
	// comes first; back, its row fills in again.
	stopped := time.Now()
	agents[5].stop()
	waitFor(t, ctx, "h005 unreachable", row("h005")+`.dataset.state === 'unreachable' && `+
		row("h005")+`.querySelector('[data-testid=row-state]').textContent === 'unreachable' && `+
		row("h005")+`.querySelector('.since').textContent.startsWith('since ') && `+
		`document.querySelector('[data-testid=fleet-sum] .n-unreachable').textContent === '2 unreachable'`, 10*time.Second)
	t.Logf("h005 marked unreachable %s after its agent stopped", time.Since(stopped).Round(100*time.Millisecond))
	waitFor(t, ctx, "the unreachable first", names(2)+` === 'h005 zz-nowhere'`, 8*time.Second)
	agents[5].serve(t)
	// The hub tries again after a random wait up to a step that doubles
	// from 1 s with each failure, to 30 s: short waits reach the longest
	// step well within the 18 s it may have been away.
	waitFor(t, ctx, "h005 back", row("h005")+`.dataset.state === 'up' && `+cell("h005", "cpu")+` === `+fmt.Sprintf("%q", fmt.Sprintf("%g%%", fleetCPU(5))),
		collector.UpstreamMaxBackoff+5*time.Second)
}
