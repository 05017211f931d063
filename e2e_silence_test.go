package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// A person signs in on the page, silences a pending alert with its
// "Silence 1 h" button, and the alert fires without a webhook, marked on
// the page; another alert that fires in the same evaluation, not
// silenced, is delivered (so the silenced one would have been by then).
// The token never reaches a script: the session is an HttpOnly cookie.
func TestBrowserSilenceStopsADelivery(t *testing.T) {
	const token = "browser-token-0123456789abcdef"
	rc := vigiltest.NewReceiver(t, nil)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	// Both rules go pending at once and fire together 15 s later.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`auth:
  tokens: [%s]
alerts:
  allow_networks: [127.0.0.0/8]
  rules:
    - {name: Silenced, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0, for: 15s}
    - {name: Control, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0, for: 15s}
  receivers:
    - {name: ops, url: %q, secret: %s}
`, token, rc.URL+"/hook", alerts.NewSecret())), 0o600)
	base, _ := startVigil(t, "--data", filepath.Join(dir, "data"), "--config", cfg)
	ctx := browser(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`[data-testid=alert][data-state=pending]`)); err != nil {
		t.Fatal(err)
	}
	if n := evalString(t, ctx, `String(document.querySelectorAll('[data-testid=silence]').length)`); n != "0" {
		t.Fatalf("%s silence buttons before signing in", n)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(`[data-testid=sign-in]`),
		chromedp.WaitVisible(`[data-testid=sign-in-form]`),
		chromedp.SendKeys(`[data-testid=name]`, "ana"),
		chromedp.SendKeys(`[data-testid=token]`, token),
		chromedp.Click(`[data-testid=sign-in-submit]`),
		chromedp.WaitVisible(`[data-testid=viewer]`),
	); err != nil {
		t.Fatal(err)
	}
	if c := evalString(t, ctx, `document.cookie`); c != "" {
		t.Fatalf("a script reads the session: %q", c)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`[data-testid=silence]`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll('[data-testid=alert]')]
		.find(li => li.querySelector('strong').textContent === 'Silenced').querySelector('[data-testid=silence]').click() ?? true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`[data-testid=silence-row]`)); err != nil {
		t.Fatal(err)
	}
	var state struct {
		Alerts []struct {
			Rule, State string
			SilencedBy  []string `json:"silenced_by"`
		}
	}
	vigiltest.Eventually(t, 30*time.Second, "both alerts firing", func() bool {
		getJSONInto(t, base+"/api/v1/alerts", &state)
		n := 0
		for _, a := range state.Alerts {
			if a.State == "firing" {
				n++
			}
		}
		return n == 2
	})
	for _, a := range state.Alerts {
		if (a.Rule == "Silenced") != (len(a.SilencedBy) == 1) {
			t.Fatalf("alerts %+v: want Silenced silenced, Control not", state.Alerts)
		}
	}
	vigiltest.Eventually(t, 15*time.Second, "the control's webhook", func() bool { return len(rc.Requests()) >= 1 })
	time.Sleep(500 * time.Millisecond) // the dispatcher's next pass, for a webhook that should not come
	got := rc.Requests()
	if len(got) != 1 {
		t.Fatalf("the receiver got %d webhooks, want the control's alone", len(got))
	}
	var hook struct {
		Type string
		Data struct{ Rule string }
	}
	json.Unmarshal(got[0].Body, &hook)
	if hook.Type != alerts.EventFiring || hook.Data.Rule != "Control" {
		t.Fatalf("the webhook: %s", got[0].Body)
	}
	// The page marks the silenced alert, and says by whom.
	waitFor(t, ctx, "the silenced alert marked", `[...document.querySelectorAll('[data-testid=silenced]')].some(e => e.textContent.includes('silenced by ana'))`, 10*time.Second)
	if !strings.Contains(evalString(t, ctx, `document.querySelector('[data-testid=silences]').textContent`), `alertname="Silenced"`) {
		t.Fatal("the silence is not listed")
	}
}
