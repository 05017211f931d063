package dashboard

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"vigil/alerts"
	"vigil/stream"
)

// TestMetricsPassPromtool: /metrics is what `promtool check metrics`
// accepts — every family with a # HELP text and a # TYPE, names that fit
// their types — so Prometheus knows each metric's type. vigil's own
// metrics have help written for them, not made up from the name.
func TestMetricsPassPromtool(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	a.publish(t, "host/a", 1)
	// Metrics registered by the other parts of vigil, on the same set.
	(&alerts.Evaluator{Metrics: a.set}).Healthy()
	(&alerts.Dispatcher{Metrics: a.set}).Wake()
	resp, err := http.Get(a.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatalf("promlint cannot parse /metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	help, types := map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) == 4 && f[0] == "#" && f[1] == "HELP" {
			help[f[2]] = f[3]
		}
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	for _, name := range []string{"vigil_events_published_total", "vigil_subscribers", "vigil_stream_resets_total", "vigil_http_panics_total",
		"vigil_store_errors_total", "vigil_alert_transitions_total", "vigil_webhook_attempts_total", "vigil_webhook_deliveries_total",
		"go_goroutines", "process_resident_memory_bytes"} {
		if help[name] == "" || types[name] == "" {
			t.Errorf("%s: help %q, type %q", name, help[name], types[name])
		}
	}
	for name, h := range help {
		if strings.HasPrefix(name, "vigil_") && strings.Contains(h, "(see the README)") {
			t.Errorf("%s has no help of its own: %q", name, h)
		}
	}
}
