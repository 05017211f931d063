package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"vigil/stream"
)

type recorded struct {
	Type    string             `json:"type"`
	Source  string             `json:"source"`
	State   string             `json:"state"`
	Error   string             `json:"error"`
	Partial bool               `json:"partial"`
	Metrics map[string]float64 `json:"metrics"`
}

func drain(sub *stream.Subscriber) []recorded {
	var out []recorded
	for len(sub.C()) > 0 {
		var r recorded
		json.Unmarshal((<-sub.C()).JSON(), &r)
		out = append(out, r)
	}
	return out
}

func count(evs []recorded, typ, source, state string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && e.Source == source && (state == "" || e.State == state) {
			n++
		}
	}
	return n
}

func TestSchedulerIsolatesFailingAndHangingSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 1000})
		sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{})
		set := metrics.NewSet()

		var failing atomic.Bool
		failing.Store(true)
		flaky := SourceFunc{SourceName: "host/flaky", Fn: func(ctx context.Context) (map[string]float64, error) {
			if failing.Load() {
				return map[string]float64{"mem.used_percent": 5}, errors.New("filesystem /mnt/x: input/output error")
			}
			return map[string]float64{"mem.used_percent": 5, "fs.used_percent{mount=/mnt/x}": 1}, nil
		}}
		release := make(chan struct{})
		var calls atomic.Int32
		hung := SourceFunc{SourceName: "host/hung", Fn: func(ctx context.Context) (map[string]float64, error) {
			calls.Add(1)
			<-release // ignores its context, like a stuck statfs
			return nil, nil
		}}
		good := SourceFunc{SourceName: "host/good", Fn: func(ctx context.Context) (map[string]float64, error) {
			return map[string]float64{"cpu.percent": 1}, nil
		}}
		s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: []Source{flaky, hung, good},
			Interval: time.Second, Metrics: set}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()

		time.Sleep(5*time.Second + time.Millisecond)
		synctest.Wait()
		evs := drain(sub)
		if n := count(evs, stream.TypeSample, "host/good", ""); n != 5 {
			t.Errorf("good source: %d samples in 5 s, want 5", n)
		}
		if n := count(evs, stream.TypeSample, "host/flaky", ""); n != 5 {
			t.Errorf("flaky source: %d partial samples, want 5", n)
		}
		if n := count(evs, stream.TypeSource, "host/flaky", StateFailed); n != 1 {
			t.Errorf("flaky source: %d failed events, want 1 (only on change)", n)
		}
		for _, e := range evs {
			if e.Type == stream.TypeSource && e.Source == "host/flaky" && (!e.Partial || !strings.Contains(e.Error, "input/output error")) {
				t.Errorf("flaky failure event %+v", e)
			}
		}
		if n := count(evs, stream.TypeSource, "host/hung", StateFailed); n < 1 {
			t.Errorf("hung source: no failed event")
		}
		if calls.Load() != 1 {
			t.Errorf("hung source called %d times while the first call hangs, want 1", calls.Load())
		}
		select {
		case <-s.Ready():
		default:
			t.Error("scheduler not ready after every source's first collect")
		}

		failing.Store(false)
		close(release)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		evs = drain(sub)
		if n := count(evs, stream.TypeSource, "host/flaky", StateUp); n != 1 {
			t.Errorf("flaky source: %d recovered events, want 1", n)
		}
		if n := count(evs, stream.TypeSource, "host/hung", StateUp); n != 1 {
			t.Errorf("hung source: %d recovered events after it returned, want 1", n)
		}
		if got := set.GetOrCreateCounter(`vigil_collect_errors_total{source="host/flaky"}`).Get(); got != 5 {
			t.Errorf("flaky errors counted %d, want 5", got)
		}
		if got := set.GetOrCreateCounter(`vigil_samples_collected_total{source="host/good"}`).Get(); got != 7 {
			t.Errorf("good samples counted %d, want 7", got)
		}
		if pts, ok := s.Store.Range("host/good", "cpu.percent", time.Time{}); !ok || len(pts) != 7 {
			t.Errorf("store holds %d points", len(pts))
		}
		cancel()
		<-done
		hub.Close()
	})
}

// Whatever a source's error says, the source event, the stored status and
// the log line carry a bounded, valid UTF-8 piece of it.
func TestSchedulerBoundsErrorText(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 100})
		sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{})
		var logs bytes.Buffer
		huge := "status: \xff\xfe" + strings.Repeat("é", 450<<10) // 900 KiB, invalid UTF-8 up front
		src := SourceFunc{SourceName: "service/huge", Fn: func(ctx context.Context) (map[string]float64, error) {
			return nil, errors.New(huge)
		}}
		s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: []Source{src},
			Interval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		hub.Close()

		const bound = maxErrorBytes + len("…")
		evs := drain(sub)
		if count(evs, stream.TypeSource, "service/huge", StateFailed) != 1 {
			t.Fatalf("events %+v", evs)
		}
		for _, e := range evs {
			if e.Type == stream.TypeSource && (len(e.Error) > bound || !strings.HasPrefix(e.Error, "status: ")) {
				t.Errorf("source event error is %d bytes: %.80q", len(e.Error), e.Error)
			}
		}
		st, _ := s.Store.Status("service/huge")
		if len(st.Error) > bound || len(st.LastError) > bound || !utf8.ValidString(st.Error) {
			t.Errorf("stored error is %d bytes, valid UTF-8 %v", len(st.Error), utf8.ValidString(st.Error))
		}
		if logs.Len() > 2*bound {
			t.Errorf("log is %d bytes: %.200s", logs.Len(), logs.String())
		}
	})
}

// TestSchedulerErrorIsOneLine: an error that joins several (errors.Join
// puts a newline between them) is told on one line, parts separated by
// "; ", in the source event and the store.
func TestSchedulerErrorIsOneLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 100})
		sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{})
		src := SourceFunc{SourceName: "service/two", Fn: func(ctx context.Context) (map[string]float64, error) {
			return map[string]float64{"instances.up": 0}, errors.Join(errors.New("scrape a: refused"), errors.New("scrape b: refused"))
		}}
		s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: []Source{src},
			Interval: time.Second, Logger: slog.New(slog.DiscardHandler)}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		hub.Close()
		const want = "scrape a: refused; scrape b: refused"
		for _, e := range drain(sub) {
			if e.Type == stream.TypeSource && e.Error != want {
				t.Errorf("source event error %q, want %q", e.Error, want)
			}
		}
		if st, _ := s.Store.Status("service/two"); st.Error != want {
			t.Errorf("stored error %q", st.Error)
		}
	})
}

// TestSchedulerAddAndRemove: a source added before or while the
// scheduler runs is sampled every interval; a name sampled already is not
// added twice; a removed source is sampled no more; Ready waits only for
// the sources given at the start.
func TestSchedulerAddAndRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 1000})
		sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeSample}})
		src := func(name string) Source {
			return SourceFunc{SourceName: name, Fn: func(context.Context) (map[string]float64, error) { return map[string]float64{"x": 1}, nil }}
		}
		s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: []Source{src("host/a")}, Interval: time.Second}
		if !s.Add(src("service/early")) || s.Add(src("service/early")) {
			t.Fatal("adding before Run")
		}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		select {
		case <-s.Ready():
		default:
			t.Fatal("not ready after the first collect")
		}
		if !s.Add(src("service/late")) || s.Add(src("host/a")) {
			t.Fatal("adding while running")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		s.Remove("service/early")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		evs := drain(sub)
		if n := count(evs, stream.TypeSample, "host/a", ""); n != 6 {
			t.Errorf("host/a: %d samples, want 6", n)
		}
		if n := count(evs, stream.TypeSample, "service/early", ""); n != 3 {
			t.Errorf("service/early, removed after 3 s: %d samples, want 3", n)
		}
		if n := count(evs, stream.TypeSample, "service/late", ""); n != 5 {
			t.Errorf("service/late, added after 1 s: %d samples, want 5", n)
		}
		if s.Add(src("service/after")) {
			t.Error("added after Run returned")
		}
	})
}
