package collector

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// A target's reason phrase is its own text: the error says the code only,
// however long the phrase.
func TestScrapeErrorNamesTheStatusCodeOnly(t *testing.T) {
	reason := strings.Repeat("overloaded ", 900<<10/len("overloaded "))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 503 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", reason)
		buf.Flush()
	}))
	defer srv.Close()
	svc, err := NewService(ServiceOptions{Name: "x", Scrape: &ScrapeOptions{URLs: []string{srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "status: 503") {
		t.Fatalf("error %v, want status: 503", err)
	}
	if msg := err.Error(); strings.Contains(msg, "overloaded") || len(msg) > 512 {
		t.Errorf("error carries the target's reason phrase (%d bytes): %.200s", len(msg), msg)
	}
}

// bodyServer serves the same body to every request.
func bodyServer(t *testing.T, body []byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	return srv
}

// allocated is how many bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A NaN bound is a new map key every time (NaN != NaN): 100,000 of them
// once drove vigil to 450 MB. The scrape refuses the first one.
func TestScrapeRefusesNaNBuckets(t *testing.T) {
	var b bytes.Buffer
	for i := range 100_000 {
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{le=\"NaN\",i=\"%d\"} 1\n", i)
	}
	srv := bodyServer(t, b.Bytes())
	svc, err := NewService(ServiceOptions{Name: "nan", Scrape: &ScrapeOptions{URLs: []string{srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second scrape has a baseline to compare with
		var err error
		n := allocated(func() { _, err = svc.Collect(context.Background()) })
		if err == nil || !strings.Contains(err.Error(), `line 1, column 38: le="NaN" is not a bucket bound`) {
			t.Fatalf("error %v, want le=\"NaN\" refused", err)
		}
		if n > 1<<20 {
			t.Errorf("a scrape of %d bytes of NaN buckets allocated %d bytes", b.Len(), n)
		}
	}
}

// Past DefaultMaxSeries the scrape fails, and stops reading: memory stays
// bounded by the limit, not by what the target sends.
func TestScrapeCapsSeries(t *testing.T) {
	var b bytes.Buffer
	for i := range 100_000 {
		fmt.Fprintf(&b, "http_requests_total{code=\"200\",path=\"/p%d\"} %d\n", i, i)
	}
	srv := bodyServer(t, b.Bytes())
	svc, err := NewService(ServiceOptions{Name: "many", Scrape: &ScrapeOptions{URLs: []string{srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var err error
		n := allocated(func() { _, err = svc.Collect(context.Background()) })
		if err == nil || !strings.Contains(err.Error(), "body: more than 10000 series; raise scrape.max_series") {
			t.Fatalf("error %v, want the series limit", err)
		}
		if n > 8<<20 {
			t.Errorf("a scrape of 100,000 series allocated %d bytes", n)
		}
	}
}

func TestScrapeMaxSeriesOption(t *testing.T) {
	srv := bodyServer(t, []byte("http_requests_total{code=\"200\"} 1\nhttp_requests_total{code=\"500\"} 1\nup 1\n"))
	for _, tc := range []struct {
		max  int
		want string
	}{{3, ""}, {2, "body: more than 2 series; raise scrape.max_series"}} {
		svc, err := NewService(ServiceOptions{Name: "x", Scrape: &ScrapeOptions{URLs: []string{srv.URL}, MaxSeries: tc.max}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Collect(context.Background())
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
			t.Errorf("max_series %d: error %v, want %q", tc.max, err, tc.want)
		}
	}
}

// redirectingTarget answers /metrics with a redirect to /real, which
// serves metrics.
func redirectingTarget(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", http.RedirectHandler("/real", http.StatusFound))
	mux.HandleFunc("/real", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "http_requests_total 1\n") })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A scrape does not follow a redirect unless told to: it fails with the
// status and a hint.
func TestScrapeDoesNotFollowRedirects(t *testing.T) {
	srv := redirectingTarget(t)
	svc, err := NewService(ServiceOptions{Name: "x", Scrape: &ScrapeOptions{URLs: []string{srv.URL + "/metrics"}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := svc.Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "status: 302 (a redirect; follow_redirects: true follows it)") {
		t.Fatalf("error %v, want status: 302 and a hint", err)
	}
	if m["instances.up"] != 0 {
		t.Errorf("redirected target counted up: %v", m)
	}
}

func TestScrapeFollowsRedirectsWhenTold(t *testing.T) {
	srv := redirectingTarget(t)
	for _, client := range []*http.Client{nil, srv.Client()} {
		var hops int
		if client != nil { // a given client's own redirect policy still runs
			client.CheckRedirect = func(*http.Request, []*http.Request) error { hops++; return nil }
		}
		svc, err := NewService(ServiceOptions{Name: "x", Client: client,
			Scrape: &ScrapeOptions{URLs: []string{srv.URL + "/metrics"}, FollowRedirects: true}})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := svc.Collect(context.Background()); err != nil || m["instances.up"] != 1 {
			t.Errorf("client %v: %v, %v", client != nil, m, err)
		}
		if client != nil && hops != 1 {
			t.Errorf("the given client's CheckRedirect ran %d times", hops)
		}
		// Without the option, the given client does not follow either.
		svc, _ = NewService(ServiceOptions{Name: "x", Client: client, Scrape: &ScrapeOptions{URLs: []string{srv.URL + "/metrics"}}})
		if _, err := svc.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "status: 302") {
			t.Errorf("client %v without follow_redirects: %v", client != nil, err)
		}
	}
}
