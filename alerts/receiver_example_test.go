package alerts

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeVerify is the receiver in README.md, word for word (TestREADME
// ReceiverIsThisOne reads README.md to hold it so), so that what the README
// shows is what vigil's signatures pass.
func readmeVerify(r *http.Request, body []byte, secret string) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || math.Abs(time.Since(time.Unix(sec, 0)).Seconds()) > 300 {
		return errors.New("stale or missing timestamp") // refuse replays
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil // and deduplicate on webhook-id: delivery is at least once
		}
	}
	return errors.New("bad signature")
}

func TestREADMEReceiverVerifies(t *testing.T) {
	secret, old := NewSecret(), NewSecret()
	body := []byte(`{"type":"alert.firing"}`)
	now := time.Now()
	sig, err := Sign([]string{secret, old}, "msg_abc", now, body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://receiver/hook", bytes.NewReader(body))
	req.Header.Set("webhook-id", "msg_abc")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	for _, s := range []string{secret, old} {
		if err := readmeVerify(req, body, s); err != nil {
			t.Errorf("README receiver rejects a real signature: %v", err)
		}
	}
	if readmeVerify(req, []byte(`{"type":"alert.resolved"}`), secret) == nil {
		t.Error("README receiver accepts a changed body")
	}
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Add(-time.Hour).Unix(), 10))
	if readmeVerify(req, body, secret) == nil {
		t.Error("README receiver accepts an old timestamp")
	}
}

// TestREADMEReceiverIsThisOne: the receiver README.md shows is readmeVerify,
// word for word.
func TestREADMEReceiverIsThisOne(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```go\nfunc verify(")
	block, _, closed := strings.Cut(block, "\n```")
	if !ok || !closed {
		t.Fatal("README.md shows no receiver (a ```go block with func verify)")
	}
	self, err := os.ReadFile("receiver_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, fn, _ := strings.Cut(string(self), "\nfunc readmeVerify(")
	fn, _, _ = strings.Cut(fn, "\n}\n")
	if block != fn+"\n}" {
		t.Fatalf("README.md's receiver is not the one tested here:\n%s\n--- tested:\n%s\n}", block, fn)
	}
}
