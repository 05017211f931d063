package stream

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func TestIDFileRoundTrip(t *testing.T) {
	f := IDFile(filepath.Join(t.TempDir(), "last-event-id"))
	if id, err := f.Load(); err != nil || id != 0 {
		t.Fatalf("no file: %d %v", id, err)
	}
	if err := f.Save(1795431473113815); err != nil {
		t.Fatal(err)
	}
	if id, err := f.Load(); err != nil || id != 1795431473113815 {
		t.Fatalf("saved: %d %v", id, err)
	}
}

// TestKeepFailingQuietly: a save that keeps failing (a full disk) is
// counted every time and logged once a minute, not every ten seconds.
func TestKeepFailingQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := IDFile(filepath.Join(t.TempDir(), "no such dir", "last-event-id"))
		h := NewHub(HubOptions{FirstID: 1})
		defer h.Close()
		set := metrics.NewSet()
		var mu sync.Mutex
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- f.Keep(ctx, h, set, log) }()
		time.Sleep(3*time.Minute + time.Second)
		synctest.Wait()
		cancel()
		<-done
		var b bytes.Buffer
		set.WritePrometheus(&b)
		if !strings.Contains(b.String(), `vigil_store_errors_total{op="save_event_id"} 18`) {
			t.Errorf("failures not counted:\n%s", b.String())
		}
		mu.Lock()
		defer mu.Unlock()
		if n := strings.Count(logs.String(), "save event id"); n != 3 {
			t.Errorf("%d log lines in three minutes of failures, want 3:\n%s", n, logs.String())
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
