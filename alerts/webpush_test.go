package alerts

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"vigil/internal/vigiltest"
)

func pushInput(b *vigiltest.PushBrowser, endpoint string) PushInput {
	var in PushInput
	in.Endpoint = endpoint
	in.Keys.P256dh, in.Keys.Auth = b.Keys()
	return in
}

// checkVAPID verifies the Authorization header's JWT (ES256) with the
// key it names, which must be vigil's, and its audience.
func checkVAPID(t *testing.T, header, public, audience string) {
	t.Helper()
	rest, ok := strings.CutPrefix(header, "vapid t=")
	jwt, k, ok2 := strings.Cut(rest, ", k=")
	if !ok || !ok2 || k != public {
		t.Fatalf("Authorization %q: want vapid t=…, k=%s", header, public)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT %q", jwt)
	}
	kb, _ := base64.RawURLEncoding.DecodeString(k)
	x, y := elliptic.Unmarshal(elliptic.P256(), kb)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if x == nil || len(sig) != 64 || !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, digest[:],
		new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("the VAPID signature does not verify with vigil's public key")
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Aud string
		Exp int64
		Sub string
	}
	json.Unmarshal(claims, &c)
	if c.Aud != audience || c.Exp <= time.Now().Unix() || !strings.HasPrefix(c.Sub, "mailto:") {
		t.Fatalf("VAPID claims %s, want aud %s", claims, audience)
	}
}

// A firing alert reaches a browser's subscription through a push
// service: the body the push service receives is encrypted so that only
// the subscription's private key and auth secret open it (RFC 8291), the
// request is signed with vigil's VAPID key (RFC 8292), and what it
// carries is the alert. When the push service says the subscription is
// gone, it is removed.
func TestWebPush(t *testing.T) {
	vapid, err := LoadVAPID(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vapid.Subject = "ops@example.com"
	br := vigiltest.NewPushBrowser(t)
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	gone := false
	push := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b.Bytes())
		g := gone
		mu.Unlock()
		if g {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer push.Close()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := &PushKeys{}
	keys.Set(vapid)
	d := &Dispatcher{DB: db, Client: NewClient(loopback, 5*time.Second), VAPID: keys}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	rs := &Receivers{Outbox: db, Wake: d.Wake}
	in := pushInput(br, push.URL+"/push/v2/abc")
	in.Match = []string{`severity="critical"`}
	rcv, err := rs.Subscribe(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := rs.Subscribe(ctx, in); err != nil || again.ID != rcv.ID {
		t.Fatalf("subscribing again: %v %v, want the same receiver", again.ID, err)
	}
	hot := firing("Hot")
	hot.Alert.StartedAt, hot.Alert.UpdatedAt = time.Now(), time.Now()
	warn := firing("Warm")
	warn.Alert.Severity = "warning"
	if err := db.SaveTransitions(ctx, []Transition{warn, hot}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	if !within(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 1 }) {
		t.Fatal("no push")
	}
	time.Sleep(300 * time.Millisecond) // for the warning's, if it came
	mu.Lock()
	r, body := got[0], bodies[0]
	n := len(got)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d pushes, want the critical alert's alone", n)
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") != "86400" || r.Header.Get("Urgency") != "high" ||
		len(r.Header.Get("Topic")) != 32 || r.URL.Path != "/push/v2/abc" {
		t.Fatalf("push headers %v path %s", r.Header, r.URL.Path)
	}
	checkVAPID(t, r.Header.Get("Authorization"), vapid.Public, push.URL)
	if bytes.Contains(body, []byte("Hot")) {
		t.Fatal("the body is readable without the browser's key")
	}
	plain, err := br.Decrypt(body)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	var m pushMessage
	if err := json.Unmarshal(plain, &m); err != nil || m.Title != "[FIRING] Hot on host/a" || m.Status != "firing" ||
		m.Tag != hot.Alert.Fingerprint || !strings.Contains(m.Body, "cpu.percent = 97 (> 90)") {
		t.Fatalf("the push says %s (%v)", plain, err)
	}
	// Another browser's keys do not open it.
	if _, err := vigiltest.NewPushBrowser(t).Decrypt(body); err == nil {
		t.Fatal("another subscription's keys opened the push")
	}

	// The push service says the subscription is gone: it is removed.
	mu.Lock()
	gone = true
	mu.Unlock()
	if _, err := rs.Test(ctx, rcv.ID); err != nil {
		t.Fatal(err)
	}
	if !within(5*time.Second, func() bool { _, err := db.Receiver(ctx, rcv.ID); return errors.Is(err, ErrNotFound) }) {
		t.Fatal("a subscription the push service says is gone is still there")
	}
}

func TestPushInput(t *testing.T) {
	br := vigiltest.NewPushBrowser(t)
	ok := pushInput(br, "https://fcm.googleapis.com/fcm/send/abc")
	if r, err := ok.Receiver(time.Now()); err != nil || r.Type != TypeWebPush || r.Status != ReceiverActive || r.Secret != ok.Keys.Auth {
		t.Fatalf("%+v %v", r, err)
	}
	for _, tc := range []struct {
		edit func(*PushInput)
		want string
	}{
		{func(in *PushInput) { in.Endpoint = "fcm.googleapis.com/x" }, "endpoint:"},
		{func(in *PushInput) { in.Keys.P256dh = "AAAA" }, "keys.p256dh:"},
		{func(in *PushInput) { in.Keys.Auth = "" }, "keys.auth:"},
		{func(in *PushInput) { in.Match = []string{"critical"} }, "match:"},
	} {
		in := ok
		tc.edit(&in)
		if _, err := in.Receiver(time.Now()); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// A subscription the browser renews (pushsubscriptionchange) replaces the
// old one, and keeps its choice.
func TestPushSubscriptionRenewed(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	rs := &Receivers{Outbox: db}
	br := vigiltest.NewPushBrowser(t)
	old := pushInput(br, "https://fcm.googleapis.com/fcm/send/old")
	old.Match, old.Description = []string{`severity="critical"`}, "the browser of ana"
	if _, err := rs.Subscribe(ctx, old); err != nil {
		t.Fatal(err)
	}
	renewed := pushInput(vigiltest.NewPushBrowser(t), "https://fcm.googleapis.com/fcm/send/new")
	renewed.Replaces = old.Endpoint
	r, err := rs.Subscribe(ctx, renewed)
	if err != nil || len(r.Match) != 1 || r.Description != "the browser of ana" {
		t.Fatalf("renewed: %+v %v", r, err)
	}
	if list, _ := db.ListReceivers(ctx); len(list) != 1 || list[0].ID != PushReceiverID(renewed.Endpoint) {
		t.Fatalf("receivers %+v, want the renewed subscription alone", list)
	}
}
