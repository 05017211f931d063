package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"vigil/stream"
)

// Credentials in configured URLs (userinfo, token=, sig=) appear nowhere a
// person or a client can read them: not in the events the hub publishes,
// not in metric names, not in the log. The host and the path still do, so
// instances can be told apart.
func TestServiceKeepsURLCredentialsSecret(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/metrics2":
			fmt.Fprint(w, "http_requests_total{code=\"200\"} 10\n")
		case "/unavailable":
			http.Error(w, "down", http.StatusServiceUnavailable)
		case "/moved":
			// A target's redirect to a URL with credentials of its own.
			http.Redirect(w, r, "http://user:pw@127.0.0.1:1/metrics?token=abc&sig=def", http.StatusFound)
		}
	}))
	defer ok.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	okHost, closedHost := strings.TrimPrefix(ok.URL, "http://"), strings.TrimPrefix(closed.URL, "http://")
	secret := func(host, path string) string { return "http://user:pw@" + host + path + "?token=abc&sig=def" }
	const unparseable = "http://user:pw@127.0.0.1:1/%zz?token=abc&sig=def"

	svc, err := NewService(ServiceOptions{Name: "secret", Interval: 200 * time.Millisecond,
		Probe: &ProbeOptions{URLs: []string{
			secret(okHost, "/metrics"), secret(okHost, "/unavailable"), // one host twice: named by the whole URL
			secret(closedHost, "/healthz"), unparseable,
		}},
		Scrape: &ScrapeOptions{FollowRedirects: true, URLs: []string{
			secret(okHost, "/metrics"), secret(okHost, "/metrics2"), secret(okHost, "/moved"),
			secret(closedHost, "/metrics"), unparseable,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hub := stream.NewHub(stream.HubOptions{FirstID: 1, Queue: 1000})
	defer hub.Close()
	sub, _ := hub.Subscribe(stream.Cursor{}, stream.Filter{})
	var logs bytes.Buffer
	s := &Scheduler{Store: NewStore(time.Minute, time.Second), Hub: hub, Sources: []Source{svc},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	var published []string
	var names []string
	samples, failed := 0, false
	deadline := time.After(20 * time.Second)
	for samples < 2 || !failed {
		select {
		case ev := <-sub.C():
			published = append(published, string(ev.JSON()))
			var r recorded
			json.Unmarshal(ev.JSON(), &r)
			if r.Type == stream.TypeSample {
				samples++
				for name := range r.Metrics {
					names = append(names, name)
				}
			}
			failed = failed || (r.Type == stream.TypeSource && r.State == StateFailed)
		case <-deadline:
			t.Fatalf("%d samples, failed %v after 20 s", samples, failed)
		}
	}
	cancel()
	<-done

	everything := map[string]string{"log": logs.String()}
	for i, p := range published {
		everything[fmt.Sprintf("event %d", i)] = p
	}
	for i, n := range names {
		everything[fmt.Sprintf("metric %d", i)] = n
	}
	for _, leak := range []string{"pw", "abc", "def"} {
		var where []string
		for what, text := range everything {
			if strings.Contains(text, leak) {
				where = append(where, what)
			}
		}
		if len(where) > 0 {
			t.Errorf("%q shows in %d places, such as %s: %.500s", leak, len(where), where[0], everything[where[0]])
		}
	}
	// The instances stay distinguishable: host, and the path when the
	// host is not enough.
	for _, want := range []string{
		"probe.up{instance=http://xxxxx:xxxxx@" + okHost + "/unavailable?token=xxxxx&sig=xxxxx}",
		"scrape.up{instance=http://xxxxx:xxxxx@" + okHost + "/metrics2?token=xxxxx&sig=xxxxx}",
		"probe.up{instance=" + closedHost + "}",
	} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("no metric %s among %v", want, names)
		}
	}
	if !strings.Contains(logs.String(), closedHost) {
		t.Errorf("the log does not name the failing host: %s", logs.String())
	}
}

func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://example.com/metrics", "https://example.com/metrics"},
		{"https://user:pw@example.com/metrics", "https://xxxxx:xxxxx@example.com/metrics"},
		{"http://APIKEY123:@example.com/x?code=oauthcode&zipcode=12", "http://xxxxx:xxxxx@example.com/x?code=xxxxx&zipcode=12"},
		{"https://ghp_abc@example.com/", "https://xxxxx@example.com/"}, // a user name alone is often a token
		{"https://user:@example.com/", "https://xxxxx:xxxxx@example.com/"},
		{"http://h/m?token=abc&sig=def&page=2", "http://h/m?token=xxxxx&sig=xxxxx&page=2"},
		{"http://h/m?page=2&ACCESS_TOKEN=abc", "http://h/m?page=2&ACCESS_TOKEN=xxxxx"},
		{"http://h/?key=1&apikey=2&api_key=3&access_key=4&X-API-Key=5", "http://h/?key=xxxxx&apikey=xxxxx&api_key=xxxxx&access_key=xxxxx&X-API-Key=xxxxx"},
		{"http://h/?password=1&passwd=2&pass=3&pwd=4&secret=5&client_secret=6", "http://h/?password=xxxxx&passwd=xxxxx&pass=xxxxx&pwd=xxxxx&secret=xxxxx&client_secret=xxxxx"},
		{"https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=abc",
			"https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=xxxxx&X-Amz-Signature=xxxxx"},
		{"http://h/?signature=1&auth=2&Authorization=3&private_key=4&session_id=5&jwt=6", "http://h/?signature=xxxxx&auth=xxxxx&Authorization=xxxxx&private_key=xxxxx&session_id=xxxxx&jwt=xxxxx"},
		{"http://h/?%74oken=abc", "http://h/?%74oken=xxxxx"},                               // an escaped name is still a token
		{"http://h/?a=1;token=abc", "http://h/?a=1;token=xxxxx"},                           // ; separates too
		{"http://h/?token=a=b&x", "http://h/?token=xxxxx&x"},                               // everything after the first =
		{"http://h/?token", "http://h/?token"},                                             // no value, nothing to hide
		{"http://h/cb#access_token=abc&state=1", "http://h/cb#access_token=xxxxx&state=1"}, // fragments too
		{"http://h/docs#section", "http://h/docs#section"},
		{"user:pw@host/metrics", "xxxxx:xxxxx@host/metrics"}, // no scheme: parsed as opaque
		{"http://user:pw@h/%zz?token=abc", UnparseableURL},
		{"http://h\x7f/?token=abc", UnparseableURL},
		{"", ""},
	} {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestInstanceNames(t *testing.T) {
	for _, tt := range []struct{ in, want []string }{
		{[]string{"http://a:1/m", "http://b:1/m"}, []string{"a:1", "b:1"}},
		{[]string{"http://u:pw@a:1/m?token=x", "http://a:1/n"}, []string{"http://xxxxx:xxxxx@a:1/m?token=xxxxx", "http://a:1/n"}},
		// They differ only in a secret: numbered, not merged.
		{[]string{"http://a:1/m?token=x", "http://a:1/m?token=y", "http://b:1/m"},
			[]string{"http://a:1/m?token=xxxxx (1)", "http://a:1/m?token=xxxxx (2)", "b:1"}},
		{[]string{"http://a:1/%zz", "http://b:1/"}, []string{UnparseableURL, "b:1"}},
	} {
		if got := instanceNames(tt.in); strings.Join(got, " | ") != strings.Join(tt.want, " | ") {
			t.Errorf("instanceNames(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := "http://a:1/" + strings.Repeat("p", 2*stream.MaxTextBytes)
	for _, n := range instanceNames([]string{long + "1", long + "2"}) {
		if len(n) > stream.MaxTextBytes+len("… (1)") {
			t.Errorf("instance name of %d bytes", len(n))
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	f.Add("https://user:pw@example.com/metrics?token=abc&sig=def&page=2#access_token=x")
	f.Add("user:pw@host/metrics?a=1;key=2")
	f.Add("http://h/%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		got := RedactURL(raw)
		if got == UnparseableURL {
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("RedactURL(%q) = %q, which does not parse: %v", raw, got, err)
		}
		if p, ok := u.User.Password(); ok && p != Redacted {
			t.Fatalf("RedactURL(%q) = %q keeps a password", raw, got)
		}
		if u.User != nil && u.User.Username() != Redacted {
			t.Fatalf("RedactURL(%q) = %q keeps the user name", raw, got)
		}
		for _, q := range []string{u.RawQuery, u.EscapedFragment()} {
			for _, param := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
				name, value, ok := strings.Cut(param, "=")
				if n, err := url.QueryUnescape(name); err == nil {
					name = n
				}
				if ok && sensitiveParam(name) && value != Redacted {
					t.Fatalf("RedactURL(%q) = %q keeps %s", raw, got, param)
				}
			}
		}
		if again := RedactURL(got); again != got {
			t.Fatalf("RedactURL is not idempotent: %q -> %q -> %q", raw, got, again)
		}
	})
}

func TestClipErrKeepsTheChain(t *testing.T) {
	base := errors.New(strings.Repeat("x", 10*stream.MaxTextBytes))
	err := clipErr(base)
	if len(err.Error()) > stream.MaxTextBytes+len("…") || !errors.Is(err, base) {
		t.Errorf("clipped error: %d bytes, in chain %v", len(err.Error()), errors.Is(err, base))
	}
	if clipErr(nil) != nil {
		t.Error("clipErr(nil) is not nil")
	}
}
