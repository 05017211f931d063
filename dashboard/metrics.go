package dashboard

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// metricHelp is the # HELP text of vigil's own metrics.
var metricHelp = map[string]string{
	"vigil_samples_collected_total":               "Samples taken, by source.",
	"vigil_collect_duration_seconds":              "How long a source's collect took, by source.",
	"vigil_collect_errors_total":                  "Collects that failed wholly or in part, by source.",
	"vigil_events_published_total":                "Events published on the stream, by type.",
	"vigil_subscribers":                           "Stream clients connected now, every transport.",
	"vigil_stream_clients":                        "Stream clients connected now, by transport (poll: long polls waiting).",
	"vigil_subscribers_dropped_total":             "Stream clients disconnected for falling too far behind; they resume with their last event id.",
	"vigil_stream_resets_total":                   "Reset events sent to clients whose position could not be resumed from, by reason.",
	"vigil_history_dropped_total":                 "Alert and source events not kept in the journal because too many waited to be written.",
	"vigil_history_steps_written_total":           "Steps of the history written (a source's step in one tier).",
	"vigil_history_steps_waiting":                 "Steps of the history closed and not yet written; many means writes fail.",
	"vigil_history_steps_dropped_total":           "Steps of the history dropped because over 100,000 waited to be written.",
	"vigil_history_late_samples_total":            "Samples older than the history's step being filled, not kept in it.",
	"vigil_victoriametrics_samples_pushed_total":  "Points pushed to VictoriaMetrics (history.victoriametrics).",
	"vigil_victoriametrics_samples_dropped_total": "Points dropped, oldest first, because the queue for VictoriaMetrics was full (it was unreachable or slow).",
	"vigil_victoriametrics_push_errors_total":     "Pushes to VictoriaMetrics that failed; their points stay queued and are sent again.",
	"vigil_victoriametrics_queue_samples":         "Points waiting to be pushed to VictoriaMetrics.",
	"vigil_nats_connected":                        "1 while this replica is connected to NATS, else 0.",
	"vigil_nats_events_published_total":           "Events this replica published to the shared JetStream stream.",
	"vigil_nats_publish_errors_total":             "Events NATS did not acknowledge from this replica: refused, or no ack in time (those may still be on the stream).",
	"vigil_nats_events_received_total":            "Events read from the shared JetStream stream, from every replica.",
	"vigil_nats_epochs_total":                     "New epochs of the shared stream (deleted, or lost events): clients got a reset.",
	"vigil_http_panics_total":                     "HTTP handlers that panicked (each is logged with its stack).",
	"vigil_store_errors_total":                    "Writes to the embedded store that failed, by operation; alert transitions wait until they can be saved.",
	"vigil_alert_transitions_total":               "Alert transitions saved, by transition.",
	"vigil_webhook_attempts_total":                "Webhook attempts, by outcome: delivered, retry (sent again later) or dead (given up).",
	"vigil_webhook_deliveries_total":              "Webhook deliveries that ended, by outcome: delivered or dead.",
}

// renamed are runtime metrics whose VictoriaMetrics names Prometheus's
// lint refuses (a counter without _total, a gauge ending in _count).
var renamed = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpus",
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	s.opts.Metrics.WritePrometheus(&b)
	metrics.WriteProcessMetrics(&b)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	writeExposition(w, &b)
}

// writeExposition copies VictoriaMetrics' exposition with what
// `promtool check metrics` wants and the library leaves out: help text on
// every # HELP line, counters typed as counters, names that fit their type.
func writeExposition(w io.Writer, r io.Reader) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if meta, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, _, _ := strings.Cut(meta, " ")
			name = rename(name)
			bw.WriteString("# HELP " + name + " " + helpOf(name) + "\n")
			continue
		}
		if meta, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(meta, " ")
			name = rename(name)
			if typ == "gauge" && strings.HasPrefix(name, "process_io_") && strings.HasSuffix(name, "_total") {
				typ = "counter" // they count up; the library calls them gauges
			}
			bw.WriteString("# TYPE " + name + " " + typ + "\n")
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end > 0 {
			if to, ok := renamed[line[:end]]; ok {
				line = to + line[end:]
			}
		}
		bw.WriteString(line + "\n")
	}
}

func rename(name string) string {
	if to, ok := renamed[name]; ok {
		return to
	}
	return name
}

// helpOf is a metric's help: written for vigil's own, read from the name
// for the Go runtime's and the process's.
func helpOf(name string) string {
	if h, ok := metricHelp[name]; ok {
		return h
	}
	words := strings.ReplaceAll(name, "_", " ")
	switch {
	case strings.HasPrefix(name, "go_"):
		return "Go runtime: " + strings.TrimPrefix(words, "go ") + "."
	case strings.HasPrefix(name, "process_"):
		return "This process: " + strings.TrimPrefix(words, "process ") + "."
	}
	return name + " (see the README)."
}
