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
	var events []string
	chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*serviceworker.EventWorkerVersionUpdated); ok {
			for _, v := range e.Versions {
				mu.Lock()
				events = append(events, fmt.Sprintf("version %s reg %s %s %s", v.VersionID, v.RegistrationID, v.RunningStatus, v.Status))
				mu.Unlock()
			}
		}
		if e, ok := ev.(*serviceworker.EventWorkerRegistrationUpdated); ok {
			for _, r := range e.Registrations {
				mu.Lock()
				events = append(events, fmt.Sprintf("registration %s %s deleted=%v", r.RegistrationID, r.ScopeURL, r.IsDeleted))
				mu.Unlock()
				if r.ScopeURL == base+"/" && !r.IsDeleted {
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
	await := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	vigiltest.Eventually(t, 10*time.Second, "the service worker active", func() bool {
		return await(`navigator.serviceWorker.getRegistration('/').then(r => String(r && r.active && r.active.state))`) == "activated"
	})
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
	deliver := func() {
		t.Helper()
		if _, err := chromedp.Call(ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{Origin: base, RegistrationID: id, Data: string(m)}); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	shown := `navigator.serviceWorker.getRegistration('/').then(r => r.getNotifications()).then(ns => JSON.stringify(ns.map(n => n.title + '|' + n.tag + '|' + n.requireInteraction + '|' + n.data.url)))`
	var got string
	// A push the DevTools protocol hands a worker that has just started is
	// now and then not dispatched: it is handed again (the same tag: one
	// notification however often).
	deadline, again := time.Now().Add(20*time.Second), time.Now().Add(3*time.Second)
	for got = await(shown); got == "[]"; got = await(shown) {
		if time.Now().After(again) {
			deliver()
			again = time.Now().Add(3 * time.Second)
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("no notification; registration %s; events %v; registrations now %s", id, events,
				await(`navigator.serviceWorker.getRegistrations().then(rs => JSON.stringify(rs.map(r => [r.scope, r.active && r.active.state])))`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := sent.Title + "|" + sent.Tag + "|true|"
	if !strings.Contains(got, want) || bytes.Count([]byte(got), []byte("|true|")) != 1 {
		t.Fatalf("notifications %s, want one with %q (a critical alert stays until seen)", got, want)
	}
}
