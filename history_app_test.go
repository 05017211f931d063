package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
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
