package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vigil/internal/vigiltest"
)

type seriesReply struct {
	Store  string       `json:"store"`
	Step   string       `json:"step"`
	Points [][2]float64 `json:"points"`
	Min    []float64    `json:"min"`
	Error  string       `json:"error"`
}

func trySeries(t *testing.T, url string) (seriesReply, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r seriesReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r, resp.StatusCode
}

func getSeries(t *testing.T, url string) seriesReply {
	t.Helper()
	r, code := trySeries(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, r.Error)
	}
	return r
}

// TestHistorySurvivesARestart: vigil keeps its samples in the history
// under --data; after a restart its ring, and so its series and its
// page, start with what it had before, and the history answers for it.
func TestHistorySurvivesARestart(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte(`interval: 200ms
host: {name: keeper}
history:
  tiers:
    - {step: 1s, keep: 1h}
    - {step: 10s, keep: 1d}
`), 0o600)
	base, stop := startVigil(t, "--config", cfg, "--data", data)
	series := "/api/v1/series/host/keeper/mem.used_percent"
	deadline := time.Now().Add(20 * time.Second)
	for { // four steps in the history
		if r, code := trySeries(t, base+series+"?window=1m&step=1s"); code == 200 && len(r.Points) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no history after 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	stopped := time.Now()

	base, _ = startVigil(t, "--config", cfg, "--data", data)
	ring := getSeries(t, base+series+"?window=1m")
	if ring.Store != "ring" || len(ring.Points) < 4 {
		t.Fatalf("the ring after a restart: %s with %d points", ring.Store, len(ring.Points))
	}
	if first := time.UnixMilli(int64(ring.Points[0][0])); !first.Before(stopped) {
		t.Fatalf("the ring's first point after a restart is at %s, not before the stop at %s", first, stopped)
	}
	hist := getSeries(t, base+series+"?window=1m&step=10s")
	if hist.Store != "history" || hist.Step != "10s" || len(hist.Points) == 0 || len(hist.Min) != len(hist.Points) {
		t.Fatalf("the history after a restart: %+v", hist)
	}
}

// TestHistoryInVictoriaMetrics: with history.victoriametrics set, vigil
// pushes every sample to a real VictoriaMetrics and reads windows longer
// than its ring from it; after a restart its series start with what
// VictoriaMetrics kept, before the ring's.
func TestHistoryInVictoriaMetrics(t *testing.T) {
	vm := vigiltest.StartVictoria(t)
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte(`interval: 200ms
retention: 2s
host: {name: pushed}
history:
  victoriametrics:
    url: `+vm.URL+`
    flush: 100ms
    labels: {vigil: e2e}
`), 0o600)
	data := t.TempDir()
	base, stop := startVigil(t, "--config", cfg, "--data", data)
	series := "/api/v1/series/host/pushed/mem.used_percent"
	vigiltest.Eventually(t, 20*time.Second, "three seconds of history in VictoriaMetrics", func() bool {
		vm.Flush()
		r, code := trySeries(t, base+series+"?window=6s")
		return code == 200 && r.Store != "ring" && len(r.Points) >= 4
	})
	hist := getSeries(t, base+series+"?window=10s&step=1s")
	if hist.Store != "history" || hist.Step != "1s" || len(hist.Min) != len(hist.Points) {
		t.Fatalf("a window past the ring: %s at %s, %d points", hist.Store, hist.Step, len(hist.Points))
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^vigil_victoriametrics_samples_pushed_total [1-9]`).Match(body) ||
		!strings.Contains(string(body), "vigil_victoriametrics_samples_dropped_total 0") {
		t.Errorf("/metrics lacks the push counters")
	}
	if _, err := os.Stat(filepath.Join(data, "history.db")); err == nil {
		t.Error("the tiers were kept under --data too")
	}
	stop()

	base, _ = startVigil(t, "--config", cfg, "--data", data)
	var r seriesReply
	vigiltest.Eventually(t, 5*time.Second, "the series after a restart", func() bool {
		var code int
		r, code = trySeries(t, base+series+"?window=10s")
		return code == 200
	})
	if r.Store != "history+ring" && r.Store != "history" || len(r.Points) < 4 {
		t.Fatalf("after a restart: %s with %d points, want VictoriaMetrics' before the ring's", r.Store, len(r.Points))
	}
}
