package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/history"
	"vigil/stream"
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

func TestSeriesAPI(t *testing.T) {
	now := time.Now()
	a := newTestApp(t, stream.HubOptions{}, Options{Now: func() time.Time { return now }})
	for i := range 10 {
		a.store.Append(collector.Sample{Source: "host/web-1", Time: now.Add(time.Duration(i-9) * time.Minute),
			Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": float64(i), "fs.used_bytes{mount=/var}": 1})})
	}
	var list seriesList
	if code := getJSON(t, a.srv.URL+"/api/v1/series", &list); code != 200 || len(list.Series) != 2 || list.Capacity != 600 {
		t.Fatalf("list: %d %+v", code, list)
	}

	var pts seriesPoints
	code := getJSON(t, a.srv.URL+"/api/v1/series/host/web-1/cpu.percent?window=3m", &pts)
	if code != 200 || len(pts.Points) != 4 || pts.Points[3][1] != 9 || pts.Points[0][0] != float64(now.Add(-3*time.Minute).UnixMilli()) {
		t.Fatalf("window=3m: %d %+v", code, pts)
	}
	code = getJSON(t, a.srv.URL+"/api/v1/series/host/web-1/"+url.PathEscape("fs.used_bytes{mount=/var}"), &pts)
	if code != 200 || pts.Metric != "fs.used_bytes{mount=/var}" || len(pts.Points) != 6 { // the default 5m window: -5m..0
		t.Fatalf("metric with slash and braces: %d %+v", code, pts)
	}

	var e errorBody
	for path, want := range map[string]int{
		"/api/v1/series/host/web-1/cpu.percent?window=abc": 400,
		"/api/v1/series/host/web-1/cpu.percent?window=-5m": 400,
		"/api/v1/series/host/web-2/cpu.percent":            404,
		"/api/v1/series/host/web-1":                        404,
		"/api/v1/nope":                                     404,
	} {
		if code := getJSON(t, a.srv.URL+path, &e); code != want || e.Error == "" {
			t.Errorf("%s: %d %q, want %d with an error", path, code, e.Error, want)
		}
	}
}

// TestSeriesAPIReadsHistory: a range the ring no longer holds, or a step
// longer than the history's first, is answered from the history, with
// the step it used and each step's min and max; from, to and step are
// read as Prometheus reads them, and bad ones are refused saying why.
func TestSeriesAPIReadsHistory(t *testing.T) {
	now := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	a, h := newHistoryApp(t, now, Options{})
	a.store.RecordInto(h)
	start := now.Add(-2 * time.Hour)
	for i := range 2 * 3600 {
		a.store.Append(collector.Sample{Source: "host/web-1", Time: start.Add(time.Duration(i) * time.Second),
			Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": float64(i % 60)})}) // 0 to 59 each minute
	}
	series := a.srv.URL + "/api/v1/series/host/web-1/cpu.percent"
	var pts seriesPoints
	for _, q := range []string{
		"?from=" + start.Format(time.RFC3339) + "&step=1m",
		fmt.Sprintf("?from=%d&to=%d&step=60", start.Unix(), now.Unix()),
		"?window=2h&step=1m",
		"?window=0d2h&step=60", // days as Prometheus writes them
	} {
		if code := getJSON(t, series+q, &pts); code != 200 {
			t.Fatalf("%s: %d", q, code)
		}
		if pts.Store != "history" || pts.Step != "1m0s" || len(pts.Points) != 120 || len(pts.Min) != 120 || len(pts.Max) != 120 {
			t.Fatalf("%s: %s at %s, %d points, %d min", q, pts.Store, pts.Step, len(pts.Points), len(pts.Min))
		}
		if p := pts.Points[7]; p[0] != float64(start.Add(7*time.Minute).UnixMilli()) || p[1] != 29.5 || pts.Min[7] != 0 || pts.Max[7] != 59 {
			t.Fatalf("%s: a minute of 0 to 59 is %v, min %v, max %v", q, p, pts.Min[7], pts.Max[7])
		}
	}
	// Within the ring, without a longer step: every sample.
	pts = seriesPoints{}
	if code := getJSON(t, series+"?window=30s", &pts); code != 200 || pts.Store != "ring" || pts.Step != "1s" || len(pts.Points) != 30 || pts.Min != nil {
		t.Fatalf("window=30s: %d %s at %s, %d points", code, pts.Store, pts.Step, len(pts.Points))
	}
	// The whole ring (ten minutes at 1 s): still the ring's every sample.
	if code := getJSON(t, series+"?window=10m", &pts); code != 200 || pts.Store != "ring" || len(pts.Points) < 599 {
		t.Fatalf("window=10m: %d %s, %d points", code, pts.Store, len(pts.Points))
	}
	// A step of the history's first tier, or longer, over a range the
	// ring holds: the history.
	if code := getJSON(t, series+"?window=5m&step=10s", &pts); code != 200 || pts.Store != "history" || pts.Step != "10s" || len(pts.Points) != 30 {
		t.Fatalf("window=5m&step=10s: %d %s at %s, %d points", code, pts.Store, pts.Step, len(pts.Points))
	}
	var e errorBody
	for q, want := range map[string]string{
		"?from=yesterday":            "bad from",
		"?to=1e30":                   "bad to",
		"?from=2026-12-01T08:00:00Z": "not before to",
		"?window=1h&from=1700000000": "window or from",
		"?step=0s":                   "bad step",
		"?step=fast":                 "bad step",
		"?from=0":                    "at most five years",
		"?window=35000h":             "give a longer step", // four years at the last tier's 10 minutes
	} {
		e = errorBody{}
		if code := getJSON(t, series+q, &e); code != 400 || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %d %q, want 400 saying %q", q, code, e.Error, want)
		}
	}
}

// TestReadyzReportsFailingChecks: while the alert store refuses writes
// (a full disk), vigil is not ready, and says why.
func TestReadyzReportsFailingChecks(t *testing.T) {
	var storeErr atomic.Pointer[error]
	a := newTestApp(t, stream.HubOptions{}, Options{Checks: []Check{{Name: "alert store", Err: func() error {
		if p := storeErr.Load(); p != nil {
			return *p
		}
		return nil
	}}}})
	a.srv.Config.Handler.(*Server).SetReady(true)
	var e errorBody
	if code := getJSONStatus(t, a.srv.URL+"/readyz", &e); code != 200 {
		t.Fatalf("readyz with healthy checks: %d", code)
	}
	full := errors.New("database or disk is full")
	storeErr.Store(&full)
	if code := getJSONStatus(t, a.srv.URL+"/readyz", &e); code != 503 || e.Error != "alert store: database or disk is full" {
		t.Fatalf("readyz with a full disk: %d %+v", code, e)
	}
	storeErr.Store(nil)
	if code := getJSONStatus(t, a.srv.URL+"/readyz", nil); code != 200 {
		t.Fatalf("readyz after recovery: %d", code)
	}
}

// A soft check (NATS, on a replica) degrades rather than fails: /readyz
// answers 200 and says what is wrong, and the pages say it above all else.
func TestSoftCheckDegrades(t *testing.T) {
	var down atomic.Bool
	a := newTestApp(t, stream.HubOptions{}, Options{Checks: []Check{{Name: "nats", Soft: true, Err: func() error {
		if down.Load() {
			return errors.New("not connected to NATS (reconnecting)")
		}
		return nil
	}}}})
	a.srv.Config.Handler.(*Server).SetReady(true)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("readyz with NATS up: %d %q", code, body)
	}
	if _, page := get("/"); strings.Contains(page, `data-testid="problems"`) {
		t.Fatal("the page shows problems while there are none")
	}
	down.Store(true)
	if code, body := get("/readyz"); code != 200 || body != "ready, degraded: nats: not connected to NATS (reconnecting)\n" {
		t.Fatalf("readyz with NATS down: %d %q", code, body)
	}
	if _, page := get("/"); !strings.Contains(page, `data-testid="problems"`) || !strings.Contains(page, "nats: not connected to NATS (reconnecting)") {
		t.Fatalf("the page does not say NATS is down:\n%.2000s", page)
	}
}

// getJSONStatus GETs a URL and decodes a JSON answer into v when the
// answer is JSON.
func getJSONStatus(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.Header.Get("Content-Type") == "application/json" {
		json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

func TestHealthReadyAndMetrics(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	srv := a.srv.Config.Handler.(*Server)
	status := func(path string) (int, string) {
		resp, err := http.Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := status("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := status("/readyz"); code != 503 {
		t.Errorf("readyz before the first samples: %d, want 503", code)
	}
	srv.SetReady(true)
	if code, _ := status("/readyz"); code != 200 {
		t.Errorf("readyz when ready: %d", code)
	}
	srv.Shutdown()
	if code, _ := status("/readyz"); code != 503 {
		t.Errorf("readyz while shutting down: %d, want 503", code)
	}
	a.publish(t, "host/a", 1)
	code, body := status("/metrics")
	for _, want := range []string{
		`vigil_events_published_total{type="sample"} 1`,
		`vigil_subscribers 0`,
		`vigil_subscribers_dropped_total{reason="slow"} 0`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

type fakeAlerts struct {
	active []alerts.Alert
	rules  []alerts.Rule
}

func (f fakeAlerts) Active() []alerts.Alert  { return f.active }
func (f fakeAlerts) RuleList() []alerts.Rule { return f.rules }
func (f fakeAlerts) Ack(_ context.Context, fp, by string) (alerts.Alert, error) {
	for _, a := range f.active {
		if a.Fingerprint == fp {
			a.AckedBy = by
			return a, nil
		}
	}
	return alerts.Alert{}, alerts.ErrNotActive
}

func TestAlertsAndRulesAPI(t *testing.T) {
	now := time.Now()
	fa := fakeAlerts{
		active: []alerts.Alert{{Fingerprint: "f1", Rule: "HighErrors", Source: "service/api", Metric: "http.error_percent", State: alerts.StateFiring,
			Value: 12, Threshold: 5, Op: ">", Severity: "critical", Annotations: map[string]string{"summary": "api errors at 12%"}, StartedAt: now}},
		rules: []alerts.Rule{{Name: "HighErrors", Source: "service/*", Metric: "http.error_percent", Op: ">", Threshold: 5, For: 2 * time.Minute}},
	}
	a := newTestApp(t, stream.HubOptions{}, Options{Alerts: fa, Now: func() time.Time { return now }})
	a.store.Append(collector.Sample{Source: "service/api", Time: now, Metrics: collector.MetricsOf(map[string]float64{"http.requests_per_sec": 10, "http.error_percent": 12})})

	var al struct{ Alerts []alerts.Alert }
	if code := getJSON(t, a.srv.URL+"/api/v1/alerts", &al); code != 200 || len(al.Alerts) != 1 || al.Alerts[0].State != "firing" {
		t.Fatalf("alerts: %d %+v", code, al)
	}
	var rl struct {
		Rules []struct {
			Name string
			For  string
		}
	}
	if code := getJSON(t, a.srv.URL+"/api/v1/rules", &rl); code != 200 || len(rl.Rules) != 1 || rl.Rules[0].For != "2m0s" {
		t.Fatalf("rules: %d %+v", code, rl)
	}
	_, doc := getPage(t, a.srv.URL+"/")
	if row := doc.Find(`[data-testid="alert"]`); row.Length() != 1 || !strings.Contains(row.Text(), "api errors at 12%") {
		t.Errorf("alerts panel: %q", row.Text())
	}
	if st := strings.TrimSpace(doc.Find(`[data-source="service/api"] [data-testid="tile-state"]`).Text()); st != "firing" {
		t.Errorf("tile state %q", st)
	}
}

// TestAckAPI: POST /api/v1/alerts/{fingerprint}/ack acknowledges an active
// alert; it is a write, so it needs a token once tokens are configured.
func TestAckAPI(t *testing.T) {
	fa := fakeAlerts{active: []alerts.Alert{{Fingerprint: "f1", Rule: "Hot", State: alerts.StateFiring}}}
	a := newTestApp(t, stream.HubOptions{}, Options{Alerts: fa, Tokens: []string{"s3cret"}})
	post := func(fp, body, token string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", a.srv.URL+"/api/v1/alerts/"+fp+"/ack", strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, _ := post("f1", `{"by":"alice"}`, ""); code != 401 {
		t.Errorf("without a token: %d", code)
	}
	if code, m := post("f1", `{"by":"alice"}`, "s3cret"); code != 200 || m["acked_by"] != "alice" {
		t.Errorf("ack: %d %v", code, m)
	}
	if code, _ := post("f1", "", "s3cret"); code != 200 {
		t.Errorf("ack without a body: %d", code)
	}
	fa.active[0].AckedBy = "alice" // what the evaluator now holds
	_, doc := getPage(t, a.srv.URL+"/")
	if got := doc.Find(`[data-testid="alert"] [data-testid="acked"]`).Text(); got != "acknowledged by alice" {
		t.Errorf("alerts panel shows %q", got)
	}
	if code, m := post("nope", `{}`, "s3cret"); code != 404 || !strings.Contains(m["error"].(string), "GET /api/v1/alerts") {
		t.Errorf("unknown alert: %d %v", code, m)
	}
	if code, _ := post("f1", `{"by":"alice","x":1}`, "s3cret"); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
}

// fleetFunc is a Fleet whose status a test gives.
type fleetFunc func() []collector.UpstreamStatus

func (f fleetFunc) Status() []collector.UpstreamStatus { return f() }

func TestUpstreamsAPI(t *testing.T) {
	var out struct {
		Upstreams []collector.UpstreamStatus `json:"upstreams"`
	}
	// Not a hub: an empty list, not a 404.
	a := newTestApp(t, stream.HubOptions{}, Options{})
	resp, err := http.Get(a.srv.URL + "/api/v1/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"upstreams":[]}` {
		t.Fatalf("not a hub: %d %s", resp.StatusCode, body)
	}

	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a = newTestApp(t, stream.HubOptions{}, Options{Fleet: fleetFunc(func() []collector.UpstreamStatus {
		return []collector.UpstreamStatus{
			{Name: "web-1", URL: "http://10.0.0.1:8080", Labels: map[string]string{"role": "web"}, Connected: true, Since: since, Position: 42, Hosts: []string{"host/web-1"}},
			{Name: "db-1", URL: "https://db-1:8080", Since: since, Error: "dial tcp: connection refused", Hosts: []string{}},
		}
	})})
	if code := getJSON(t, a.srv.URL+"/api/v1/upstreams", &out); code != 200 || len(out.Upstreams) != 2 {
		t.Fatalf("hub: %d %+v", code, out)
	}
	if u := out.Upstreams[0]; u.Name != "web-1" || !u.Connected || u.Labels["role"] != "web" || u.Position != 42 || len(u.Hosts) != 1 || !u.Since.Equal(since) {
		t.Errorf("first upstream %+v", u)
	}
	if u := out.Upstreams[1]; u.Connected || u.Error != "dial tcp: connection refused" {
		t.Errorf("second upstream %+v", u)
	}
}

// TestSeriesAfterARestartTakesTheHistoryBeforeTheRing: a ring that starts
// late (a restart, and a history that did not fill it, as
// VictoriaMetrics does not) is completed from the history.
func TestSeriesAfterARestartTakesTheHistoryBeforeTheRing(t *testing.T) {
	now := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	a, h := newHistoryApp(t, now, Options{})
	for i := 600; i > 0; i-- { // the ten minutes before: in the history only
		h.Record(collector.Sample{Source: "host/web-1", Time: now.Add(-time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 10})})
	}
	for i := 55; i > 0; i-- { // the last 55 s: in the ring as well, from the middle of a 10 s step
		a.store.Append(collector.Sample{Source: "host/web-1", Time: now.Add(-time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 20})})
	}
	var pts seriesPoints
	if code := getJSON(t, a.srv.URL+"/api/v1/series/host/web-1/cpu.percent?window=5m", &pts); code != 200 || pts.Store != "history+ring" {
		t.Fatalf("%d, store %q", code, pts.Store)
	}
	first, last := pts.Points[0], pts.Points[len(pts.Points)-1]
	if first[0] != float64(now.Add(-5*time.Minute).UnixMilli()) || first[1] != 10 || last[1] != 20 || len(pts.Points) != 24+55 {
		t.Fatalf("first %v, last %v, %d points: want 4 minutes of 10 s steps, then the ring's 55 s", first, last, len(pts.Points))
	}
	// The step the ring starts in is the ring's: no history point inside it.
	if p := pts.Points[23]; p[0] != float64(now.Add(-70*time.Second).UnixMilli()) {
		t.Fatalf("the history's last point is at %v, want the step before the ring's", time.UnixMilli(int64(p[0])))
	}
}

// newHistoryApp is a test app whose series API and pages read an embedded
// history (opts.History), at a fixed now unless opts.Now is set.
func newHistoryApp(t *testing.T, now time.Time, opts Options) (*testApp, *history.DB) {
	t.Helper()
	h, err := history.Open(context.Background(), history.Options{Path: filepath.Join(t.TempDir(), "history.db"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	opts.History = h
	return newTestApp(t, stream.HubOptions{}, opts), h
}

// TestTheWholeRingIsTheRings: a range as long as the ring, whose from was
// taken a moment before the ring's own limit, is read from the ring
// (every sample), not from the history's 10-second steps.
func TestTheWholeRingIsTheRings(t *testing.T) {
	start := time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	a, _ := newHistoryApp(t, start, Options{Now: func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Millisecond) }})
	for i := 600; i > 0; i-- {
		a.store.Append(collector.Sample{Source: "host/web-1", Time: start.Add(-time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{"cpu.percent": 1})})
	}
	var pts seriesPoints
	if code := getJSON(t, a.srv.URL+"/api/v1/series/host/web-1/cpu.percent?window=10m", &pts); code != 200 || pts.Store != "ring" {
		t.Fatalf("window=10m: %d, store %q", code, pts.Store)
	}
}

// TestSeriesAPIWithNothingYet: before anything is collected the list is
// empty, not null, as the API's other lists are.
func TestSeriesAPIWithNothingYet(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	resp, err := http.Get(a.srv.URL + "/api/v1/series")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"series":[]`) {
		t.Fatalf("GET /api/v1/series with nothing collected: %s, want \"series\":[]", body)
	}
}
