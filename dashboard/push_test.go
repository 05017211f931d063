package dashboard

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"vigil/alerts"
	"vigil/stream"
)

func TestPushSubscriptions(t *testing.T) {
	const tok = "write-token-0123456789"
	db, err := alerts.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := ""
	a := &receiverApp{testApp: newTestApp(t, stream.HubOptions{}, Options{Receivers: &alerts.Receivers{Outbox: db}, Tokens: []string{tok},
		PushKey: func() string { return key }}), db: db}
	if code, _ := a.do(t, "GET", "/api/v1/push/key", ""); code != 503 {
		t.Fatalf("the key before there is one: %d", code)
	}
	if _, page := get(t, a.srv.URL, "/"); strings.Contains(page, `data-testid="notify"`) {
		t.Fatal(`"Notify me" offered without keys`)
	}
	v, _ := alerts.NewVAPID()
	key = v.Public
	if code, got := a.do(t, "GET", "/api/v1/push/key", ""); code != 200 || got["public_key"] != v.Public {
		t.Fatalf("the key: %d %v", code, got)
	}
	br, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	rand.Read(auth)
	const endpoint = "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91b"
	sub := `{"endpoint":"` + endpoint + `","expirationTime":null,"keys":{"p256dh":"` + base64.RawURLEncoding.EncodeToString(br.PublicKey().Bytes()) +
		`","auth":"` + base64.RawURLEncoding.EncodeToString(auth) + `"},"match":["severity=\"critical\""]}`
	bearer := []string{"Authorization", "Bearer " + tok}
	if code, _ := a.do(t, "POST", "/api/v1/push/subscriptions", sub); code != 401 {
		t.Fatalf("subscribing without a token or a session: %d", code)
	}
	code, got := a.do(t, "POST", "/api/v1/push/subscriptions", sub, bearer...)
	if code != 201 || got["type"] != alerts.TypeWebPush || got["id"] != alerts.PushReceiverID(endpoint) || got["url"] != "https://fcm.googleapis.com/xxxxx" ||
		got["status"] != alerts.ReceiverActive {
		t.Fatalf("subscribe: %d %v", code, got)
	}
	if code, got := a.do(t, "POST", "/api/v1/push/subscriptions", `{"endpoint":"`+endpoint+`","keys":{"p256dh":"AAAA","auth":"x"}}`, bearer...); code != 400 ||
		!strings.Contains(got["error"].(string), "keys.p256dh") || !strings.Contains(got["error"].(string), "keys.auth") {
		t.Fatalf("a bad subscription: %d %v", code, got)
	}
	if rs, _ := db.ListReceivers(t.Context()); len(rs) != 1 || rs[0].Secret != base64.RawURLEncoding.EncodeToString(auth) || len(rs[0].Match) != 1 {
		t.Fatalf("receivers %+v", rs)
	}
	if code, _ := a.do(t, "DELETE", "/api/v1/push/subscriptions", `{"endpoint":"`+endpoint+`"}`, bearer...); code != 204 {
		t.Fatalf("unsubscribe: %d", code)
	}
	if rs, _ := db.ListReceivers(t.Context()); len(rs) != 0 {
		t.Fatalf("after unsubscribing: %+v", rs)
	}
	if code, got := a.do(t, "DELETE", "/api/v1/push/subscriptions", `{"endpoint":"`+endpoint+`"}`, bearer...); code != 404 {
		t.Fatalf("unsubscribing again: %d %v", code, got)
	}
}
