package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"vigil/internal/vigiltest"
)

// A firing alert reaches a browser the whole way: vigil encrypts it for
// a subscription and signs it; a push service on loopback (what FCM or
// Mozilla's would be) takes it and hands the browser what it decrypts
// with the subscription's keys; the page's service worker shows it as a
// notification, which names the alert, and its resolution would replace
// (one per alert). (Headless Chromium reaches no real push service, so
// the subscription's keys are the test's and the hand-over is the
// DevTools protocol's deliverPushMessage.)
func TestBrowserShowsAPushedAlert(t *testing.T) {
	br := vigiltest.NewPushBrowser(t)
	plain := make(chan []byte, 4)
	push := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := br.Decrypt(body)
		if err != nil {
			t.Errorf("the push does not decrypt with the subscription's keys: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		plain <- m
		w.WriteHeader(http.StatusCreated)
	}))
	defer push.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(`alerts:
  allow_networks: [127.0.0.0/8]
  rules:
    - {name: Hot, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0, for: 4s, severity: critical}
`), 0o600)
	base, _ := startVigil(t, "--data", filepath.Join(dir, "data"), "--config", cfg)
	p256dh, auth := br.Keys()
	resp, err := http.Post(base+"/api/v1/push/subscriptions", "application/json", strings.NewReader(fmt.Sprintf(
		`{"endpoint": %q, "keys": {"p256dh": %q, "auth": %q}, "match": ["severity=\"critical\""]}`, push.URL+"/wpush/1", p256dh, auth)))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("subscribe: %v %v", resp, err)
	}
	resp.Body.Close()

	ctx := browser(t)
	var mu sync.Mutex
	var reg serviceworker.RegistrationID
	chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*serviceworker.EventWorkerRegistrationUpdated); ok {
			for _, r := range e.Registrations {
				if strings.HasSuffix(r.ScopeURL, "/static/") && !r.IsDeleted {
					mu.Lock()
					reg = r.RegistrationID
					mu.Unlock()
				}
			}
		}
	})
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted, Origin: base}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, serviceworker.Enable, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`[data-testid=notify]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the service worker active", `window.__sw = window.__sw || navigator.serviceWorker.getRegistration('/static/').then(r => { window.__active = !!(r && r.active); }); window.__active === true`, 10*time.Second)
	vigiltest.Eventually(t, 5*time.Second, "the registration's id", func() bool { mu.Lock(); defer mu.Unlock(); return reg != "" })

	var m []byte
	select {
	case m = <-plain:
	case <-time.After(30 * time.Second):
		t.Fatal("no push from vigil")
	}
	var sent struct{ Title, Tag, Status string }
	if err := json.Unmarshal(m, &sent); err != nil || !strings.HasPrefix(sent.Title, "[FIRING] Hot on host/") || sent.Status != "firing" || sent.Tag == "" {
		t.Fatalf("the push: %s", m)
	}
	mu.Lock()
	id := reg
	mu.Unlock()
	if _, err := chromedp.Call(ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{Origin: base, RegistrationID: id, Data: string(m)}); err != nil {
		t.Fatal(err)
	}
	shown := `navigator.serviceWorker.getRegistration('/static/').then(r => r.getNotifications()).then(ns => { window.__shown = ns.map(n => n.title + '|' + n.tag + '|' + n.requireInteraction + '|' + n.data.url); }); JSON.stringify(window.__shown || [])`
	var got string
	vigiltest.Eventually(t, 10*time.Second, "the notification", func() bool {
		got = evalString(t, ctx, shown)
		return got != "[]"
	})
	want := sent.Title + "|" + sent.Tag + "|true|"
	if !strings.Contains(got, want) || bytes.Count([]byte(got), []byte("|true|")) != 1 {
		t.Fatalf("notifications %s, want one with %q (a critical alert stays until seen)", got, want)
	}
}
