package dashboard

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"vigil/alerts"
)

// The receivers page lists every receiver with where it sends (without
// credentials) and its last delivery; "Send test" queues a test message
// to it, for who may write, and says so.
func TestReceiversPageSendsATest(t *testing.T) {
	for _, tokens := range [][]string{nil, {"write-token-0123456789"}} {
		a := newReceiverApp(t, tokens...)
		rc := newEchoReceiver(t, true)
		if err := (&alerts.Receivers{Outbox: a.db}).Configure(context.Background(), []alerts.ConfiguredReceiver{
			{Name: "ops-chat", Type: alerts.TypeSlack, URL: rc.URL + "/services/T0/B0/SECRET"}}); err != nil {
			t.Fatal(err)
		}
		code, page := get(t, a.srv.URL, "/receivers")
		if code != 200 || !strings.Contains(page, `data-id="cfg-ops-chat"`) || !strings.Contains(page, ">ops-chat<") ||
			strings.Contains(page, "SECRET") || !strings.Contains(page, "every alert") {
			t.Fatalf("the page: %d", code)
		}
		var cookies = a.signIn(t, tokens)
		if tokens != nil {
			if strings.Contains(page, `data-testid="send-test"`) {
				t.Fatal("a test button for who may not write")
			}
			if code, loc, _, _ := form(t, a.srv.URL, "/receivers/cfg-ops-chat/test", url.Values{}); code != 303 || !strings.HasPrefix(loc, "/login") {
				t.Fatalf("a test without signing in: %d %q", code, loc)
			}
			_, page = get(t, a.srv.URL, "/receivers", cookies...)
		}
		if !strings.Contains(page, `data-testid="send-test"`) {
			t.Fatal("no test button")
		}
		code, loc, _, _ := form(t, a.srv.URL, "/receivers/cfg-ops-chat/test", url.Values{}, cookies...)
		if code != 303 || loc != "/receivers?sent=cfg-ops-chat" {
			t.Fatalf("send test: %d %q", code, loc)
		}
		a.dispatch(t, rc, 1)
		if !strings.Contains(string(rc.Requests()[0].Body), "a test message") || rc.Requests()[0].Header.Get("Content-Type") != "application/json" {
			t.Fatalf("the test Slack got: %s", rc.Requests()[0].Body)
		}
		_, page = get(t, a.srv.URL, "/receivers?sent=cfg-ops-chat", cookies...)
		if !strings.Contains(page, `data-testid="test-sent"`) || !strings.Contains(page, "webhook.test delivered") {
			t.Fatal("the page does not show the test and its delivery")
		}
		if code, _, _, body := form(t, a.srv.URL, "/receivers/cfg-nope/test", url.Values{}, cookies...); code != 404 || !strings.Contains(body, "no receiver") {
			t.Fatalf("a test to no receiver: %d", code)
		}
	}
}
