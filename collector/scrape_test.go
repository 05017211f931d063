package collector

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
