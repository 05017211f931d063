// Package vigiltest holds what vigil's tests share: waiting on a
// condition, a buffer for logs written from several goroutines, an
// event-stream reader that sees what EventSource sees, and a webhook
// receiver on loopback. It is imported by tests only, and imports none of
// vigil's packages, so that every package's tests can use it.
package vigiltest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	sse "github.com/tmaxmax/go-sse"
)

// Counter reads a counter or gauge of a set, by its whole name with
// labels; 0 when the set has none by that name.
func Counter(set *metrics.Set, name string) float64 {
	var b strings.Builder
	set.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// Eventually waits for cond to hold, checking every 10 ms, and fails the
// test when it does not within the time given.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Buffer is a bytes buffer safe for concurrent use, for logs.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// SSE opens an event stream and returns its answer and its events, read
// by the WHATWG rules, as EventSource dispatches them: the retry hint and
// positions (an "id:" line alone) are not events. The stream is closed when
// the test ends.
func SSE(t testing.TB, url string, header http.Header) (*http.Response, <-chan sse.Event) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sse.Event, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				return
			}
			if ev.Type == "" && ev.Data == "" {
				continue // EventSource dispatches nothing for these
			}
			ch <- ev
		}
	}()
	return resp, ch
}

// Next returns the next event of a type ("" for any), failing the test
// when the stream ends or none comes in time.
func Next(t testing.TB, ch <-chan sse.Event, typ string, within time.Duration) sse.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for a %q event", typ)
			}
			if typ == "" || ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event within %s", typ, within)
		}
	}
}

// A Request is one request a Receiver got.
type Request struct {
	Header http.Header
	Body   []byte
}

// A Receiver is a webhook receiver on loopback. It records every request
// and answers with the status its Answer gives.
type Receiver struct {
	*httptest.Server
	// Answer writes the answer to the n-th request (from 1); nil is 200.
	Answer func(w http.ResponseWriter, req Request, n int)

	mu  sync.Mutex
	got []Request
}

// NewReceiver starts a receiver, stopped when the test ends.
func NewReceiver(t testing.TB, answer func(w http.ResponseWriter, req Request, n int)) *Receiver {
	return NewReceiverOn(t, nil, answer)
}

// NewReceiverOn starts a receiver on a listener of the test's own (an
// address a vigil was configured with); nil takes any loopback port.
func NewReceiverOn(t testing.TB, ln net.Listener, answer func(w http.ResponseWriter, req Request, n int)) *Receiver {
	rc := &Receiver{Answer: answer}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := Request{Header: r.Header.Clone(), Body: body}
		rc.mu.Lock()
		rc.got = append(rc.got, req)
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.Answer != nil {
			rc.Answer(w, req, n)
		}
	}))
	if ln != nil {
		rc.Server.Listener.Close()
		rc.Server.Listener = ln
	}
	rc.Server.Start()
	t.Cleanup(rc.Close)
	return rc
}

// Statuses answers the n-th request with statuses[n-1] (the last repeats).
func Statuses(statuses ...int) func(w http.ResponseWriter, req Request, n int) {
	return func(w http.ResponseWriter, _ Request, n int) {
		w.WriteHeader(statuses[min(n, len(statuses))-1])
	}
}

// Requests returns what the receiver got so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.got...)
}
