package history

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/internal/vigiltest"
)

// exported is every sample VictoriaMetrics holds of a selector, by series
// (its labels as text), through its export API.
func exported(t *testing.T, base, selector string) map[string][]float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/export?match[]=" + url.QueryEscape(selector))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string][]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var line struct {
			Metric map[string]string `json:"metric"`
			Values []float64         `json:"values"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("export: %v: %s", err, sc.Text())
		}
		var labels []string
		for k, v := range line.Metric {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		out[strings.Join(labels, ",")] = line.Values
	}
	return out
}

func runVictoria(t *testing.T, opts VictoriaOptions) (*Victoria, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	opts.Metrics = set
	v, err := NewVictoria(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return v, set
}

// TestVictoriaKeepsTheHistory: every sample recorded reaches a real
// VictoriaMetrics, named as Prometheus names series, with the source, the
// metric's labels and the configured ones; a query gives each step's
// min, mean and max.
func TestVictoriaKeepsTheHistory(t *testing.T) {
	vm := vigiltest.StartVictoria(t)
	v, set := runVictoria(t, VictoriaOptions{URL: vm.URL, Interval: 10 * time.Second, Labels: map[string]string{"vigil": "test"}, Flush: 20 * time.Millisecond})
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	for i := range 360 { // an hour at 10 s: cpu.percent 0, 10, ... 50 each minute
		v.Record(collector.Sample{Source: "host/web-1", Time: start.Add(time.Duration(i) * 10 * time.Second), Metrics: collector.MetricsOf(map[string]float64{
			"cpu.percent": float64(i%6) * 10, `fs.used_percent{mount=/var/"x"}`: 42})})
	}
	vigiltest.Eventually(t, 10*time.Second, "720 points pushed", func() bool {
		return vigiltest.Counter(set, "vigil_victoriametrics_samples_pushed_total") == 720
	})
	vm.Flush()
	got := exported(t, vm.URL, `{source="host/web-1"}`)
	cpu, fs := got["__name__=cpu_percent,source=host/web-1,vigil=test"], got[`__name__=fs_used_percent,mount=/var/"x",source=host/web-1,vigil=test`]
	if len(cpu) != 360 || len(fs) != 360 || cpu[7] != 10 || fs[0] != 42 {
		t.Fatalf("exported %d series: cpu %d points, fs %d points (%v)", len(got), len(cpu), len(fs), keysOf(got))
	}

	res, err := v.Query(context.Background(), "host/web-1", []string{"cpu.percent", `fs.used_percent{mount=/var/"x"}`}, start, end, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	steps := res.Series["cpu.percent"]
	if res.Step != time.Minute || len(steps) < 58 || len(steps) > 60 {
		t.Fatalf("step %s, %d steps", res.Step, len(steps))
	}
	for _, a := range steps[1 : len(steps)-1] {
		if a.Min != 0 || a.Max != 50 || a.Mean() != 25 || a.T.Second() != 0 || a.T.Before(start) || a.T.After(end) {
			t.Fatalf("a minute of 0 to 50: %+v", a)
		}
	}
	if f := res.Series[`fs.used_percent{mount=/var/"x"}`]; len(f) != len(steps) || f[3].Mean() != 42 {
		t.Fatalf("fs: %d steps, %+v", len(f), f[3])
	}
	// Without a step: the finest, the sampling interval.
	if res, _ := v.Query(context.Background(), "host/web-1", []string{"cpu.percent"}, end.Add(-10*time.Minute), end, 0); res.Step != 10*time.Second || len(res.Series["cpu.percent"]) != 60 {
		t.Fatalf("no step: %s, %d steps", res.Step, len(res.Series["cpu.percent"]))
	}
}

func keysOf(m map[string][]float64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestVictoriaWaitsForItsServer: while VictoriaMetrics cannot be reached,
// samples wait in the bounded queue (the oldest dropped when it is full,
// and counted); when it comes, what waited arrives, newest kept.
func TestVictoriaWaitsForItsServer(t *testing.T) {
	vm := vigiltest.NewVictoria(t) // not started yet
	v, set := runVictoria(t, VictoriaOptions{URL: vm.URL, MaxQueue: 100, Flush: 20 * time.Millisecond})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	record := func(from, n int) {
		for i := from; i < from+n; i++ {
			v.Record(collector.Sample{Source: "service/api", Time: t0.Add(time.Duration(i) * time.Second), Metrics: collector.MetricsOf(map[string]float64{
				"http.requests_per_sec": float64(i), "http.error_percent": 1, "x": 1, "y": 2, "z": 3})})
		}
	}
	record(0, 10) // 50 points
	vigiltest.Eventually(t, 10*time.Second, "push errors counted", func() bool {
		return vigiltest.Counter(set, "vigil_victoriametrics_push_errors_total") >= 2
	})
	record(10, 20) // 100 more: the oldest 50 do not fit
	if d, q := vigiltest.Counter(set, "vigil_victoriametrics_samples_dropped_total"), vigiltest.Counter(set, "vigil_victoriametrics_queue_samples"); d != 50 || q != 100 {
		t.Fatalf("dropped %v, queued %v; want 50 and 100", d, q)
	}
	vm.Start()
	vigiltest.Eventually(t, 70*time.Second, "the queue sent once the server is up", func() bool {
		return vigiltest.Counter(set, "vigil_victoriametrics_samples_pushed_total") == 100 && vigiltest.Counter(set, "vigil_victoriametrics_queue_samples") == 0
	})
	vm.Flush()
	rates := exported(t, vm.URL, `http_requests_per_sec`)["__name__=http_requests_per_sec,source=service/api"]
	if len(rates) != 20 || rates[0] != 10 || rates[19] != 29 {
		t.Fatalf("requests: %v, want samples 10 to 29 (the newest)", rates)
	}
}

// TestVictoriaOptions: bad settings are refused with what is wrong.
func TestVictoriaOptions(t *testing.T) {
	for _, c := range []struct {
		opts VictoriaOptions
		want string
	}{
		{VictoriaOptions{URL: "localhost:8428"}, "url"},
		{VictoriaOptions{URL: "ftp://x"}, "url"},
		{VictoriaOptions{URL: "http://x", Labels: map[string]string{"source": "a"}}, "labels"},
		{VictoriaOptions{URL: "http://x", Labels: map[string]string{"a-b": "a"}}, "labels"},
		{VictoriaOptions{URL: "http://x", MaxQueue: -1}, "max_queue"},
		{VictoriaOptions{URL: "http://x", Flush: time.Hour}, "flush"},
		{VictoriaOptions{URL: "http://u:secret@x/?token=abc"}, "url"},
		{VictoriaOptions{URL: "http://x", Timeout: time.Nanosecond}, "timeout"},
	} {
		if p := c.opts.Problems(); len(p) != 1 || p[c.want] == "" {
			t.Errorf("%+v: %v, want a problem with %s", c.opts, p, c.want)
		}
		if _, err := NewVictoria(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.opts, err)
		}
	}
	if p := (VictoriaOptions{URL: "https://u:p@vm.example:8428/prefix", Labels: map[string]string{"dc": "fra"}}).Problems(); len(p) != 0 {
		t.Errorf("good options: %v", p)
	}
	// Every bad label is named; no secret of the URL is repeated.
	p := (VictoriaOptions{URL: "ftp://u:secret@x/?token=abc", Labels: map[string]string{"1abc": "x", "__name__": "y", "source": "z"}}).Problems()
	if !strings.Contains(p["labels"], `"1abc"`) || !strings.Contains(p["labels"], `"__name__"`) || !strings.Contains(p["labels"], `"source"`) {
		t.Errorf("labels: %q", p["labels"])
	}
	for _, k := range sortedKeys(p) {
		if strings.Contains(p[k], "secret") || strings.Contains(p[k], "abc") && k == "url" {
			t.Errorf("%s: %q repeats a secret", k, p[k])
		}
	}
	p = (VictoriaOptions{URL: "http://u:secret@x/?token=abc"}).Problems()
	if strings.Contains(p["url"], "secret") || strings.Contains(p["url"], "token=abc") {
		t.Errorf("url: %q repeats a secret", p["url"])
	}
}

// TestVictoriaSeriesNames: a metric's labels become labels; one named as
// a label vigil sets is kept as exported_<name>, so that two series never
// become one.
func TestVictoriaSeriesNames(t *testing.T) {
	v, err := NewVictoria(VictoriaOptions{URL: "http://127.0.0.1:1", Labels: map[string]string{"instance": "hub-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for metric, want := range map[string]string{
		"cpu.percent":                      `cpu_percent{source="host/a",instance="hub-1"}`,
		"http.error_percent{instance=a:1}": `http_error_percent{source="host/a",exported_instance="a:1",instance="hub-1"}`,
		`fs.used_percent{mount=/"x"}`:      `fs_used_percent{source="host/a",mount="/\"x\"",instance="hub-1"}`,
		"x{source=b,__name__=c}":           `x{source="host/a",exported_source="b",exported_name="c",instance="hub-1"}`,
		"9.lives-left{core=0}":             `_9_lives_left{source="host/a",core="0",instance="hub-1"}`,
	} {
		if got := v.seriesName("host/a", metric); got != want {
			t.Errorf("%s: %s, want %s", metric, got, want)
		}
	}
}
