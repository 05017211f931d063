package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// TestKill9LosesNoDelivery is the outbox's promise, with a real vigil
// process: an alert fires while its receiver is down; vigil is killed with
// SIGKILL while the delivery waits; vigil starts again; the receiver comes
// back and gets the delivery — once, with the same webhook-id, signed.
func TestKill9LosesNoDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vigil")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A port for the receiver, which is down for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	receiverAddr := ln.Addr().String()
	ln.Close()
	secret := alerts.NewSecret()
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`alerts:
  allow_networks: [127.0.0.0/8]
  rules:
    - name: AlwaysFiring
      source: host/*
      metric: host.uptime_seconds
      op: ">"
      threshold: 0
  receivers:
    - name: ops
      url: http://%s/hook
      secret: %s
`, receiverAddr, secret)), 0o600)
	data := filepath.Join(dir, "data")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", data, "--config", cfg)
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, bufio.NewReader(stderr))
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}

	vigil := start()
	// Wait until the delivery is in the outbox and has failed once.
	var db *alerts.DB
	var id string
	vigiltest.Eventually(t, 20*time.Second, "a delivery attempted", func() bool {
		if db == nil {
			if _, err := os.Stat(filepath.Join(data, "vigil.db")); err != nil {
				return false
			}
			var err error
			if db, err = alerts.Open(data); err != nil {
				t.Fatal(err)
			}
		}
		ds, _ := (&alerts.Receivers{Outbox: db}).Deliveries(context.Background(), "cfg-ops", 10)
		if len(ds) == 1 && len(ds[0].Attempts) >= 1 {
			id = ds[0].ID
			if !strings.Contains(ds[0].Attempts[0].Error, "refused") {
				t.Fatalf("first attempt: %+v", ds[0].Attempts[0])
			}
		}
		return id != ""
	})
	defer db.Close()
	vigil.Process.Signal(syscall.SIGKILL)
	vigil.Wait()

	// The receiver comes back; so does vigil.
	rl, err := net.Listen("tcp", receiverAddr)
	if err != nil {
		t.Fatal(err)
	}
	rc := vigiltest.NewReceiverOn(t, rl, nil)
	start()
	// Once the delivery is recorded as delivered nothing sends it again;
	// a duplicate would have arrived before.
	vigiltest.Eventually(t, 30*time.Second, "the delivery delivered after the restart", func() bool {
		ds, _ := (&alerts.Receivers{Outbox: db}).Deliveries(context.Background(), "cfg-ops", 10)
		return len(ds) == 1 && ds[0].State == alerts.DeliveryDelivered
	})
	got := rc.Requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d deliveries, want exactly 1", len(got))
	}
	r := got[0]
	if r.Header.Get("webhook-id") != id {
		t.Fatalf("webhook-id %q after the restart, want %q", r.Header.Get("webhook-id"), id)
	}
	ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	if want, _ := alerts.Sign([]string{secret}, id, time.Unix(ts, 0), r.Body); !slices.Contains(strings.Fields(r.Header.Get("webhook-signature")), want) {
		t.Fatalf("signature %q, want %q", r.Header.Get("webhook-signature"), want)
	}
	if !strings.Contains(string(r.Body), `"type":"alert.firing"`) {
		t.Fatalf("body %s", r.Body)
	}
	if ds, _ := (&alerts.Receivers{Outbox: db}).Deliveries(context.Background(), "cfg-ops", 10); len(ds) != 1 || ds[0].State != alerts.DeliveryDelivered {
		t.Fatalf("outbox after the restart: %+v", ds)
	}
}

// TestSIGTERMWhileReceiverHangs: a receiver that accepts the connection
// and never answers must not hold up a stop beyond the promised 5 s; the
// attempt cut short is sent again after the restart (same webhook-id),
// not lost and not counted as a failure.
func TestSIGTERMWhileReceiverHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildVigil(t)
	dir := t.TempDir()
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := hang.Addr().String()
	hung := make(chan string, 16) // the webhook-id of each request that arrived
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					hung <- req.Header.Get("webhook-id")
				}
				// Never answers; the connection stays open until vigil
				// closes it (read on, so that c stays referenced: a
				// connection the collector finds unreachable is closed,
				// and vigil's attempt would end with EOF).
				io.Copy(io.Discard, c)
			}()
		}
	}()
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`alerts:
  allow_networks: [127.0.0.0/8]
  rules:
    - {name: AlwaysFiring, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0}
  receivers:
    - {name: ops, url: "http://%s/hook", secret: %s}
`, addr, alerts.NewSecret())), 0o600)
	data := filepath.Join(dir, "data")
	vigil := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", data, "--config", cfg)
	vigil.Stderr = io.Discard
	if err := vigil.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vigil.Process.Kill(); vigil.Wait() })
	var id string
	select {
	case id = <-hung:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook attempt within 20 s")
	}
	start := time.Now()
	vigil.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- vigil.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM while a receiver hangs")
	}
	t.Logf("stopped in %s with an attempt hanging", time.Since(start).Round(time.Millisecond))
	hang.Close()

	// The receiver answers now; vigil starts again and sends it again.
	rl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := vigiltest.NewReceiverOn(t, rl, nil)
	again := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", data, "--config", cfg)
	again.Stderr = io.Discard
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Process.Kill(); again.Wait() })
	vigiltest.Eventually(t, 20*time.Second, "the attempt cut short sent after the restart", func() bool { return len(rc.Requests()) > 0 })
	if g := rc.Requests()[0].Header.Get("webhook-id"); g != id {
		t.Fatalf("after the restart webhook-id %q, want the one cut short, %q", g, id)
	}
	again.Process.Signal(syscall.SIGTERM)
	again.Wait()
	db, err := alerts.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ds, _ := (&alerts.Receivers{Outbox: db}).Deliveries(context.Background(), "cfg-ops", 10)
	if len(ds) != 1 || ds[0].State != alerts.DeliveryDelivered || len(ds[0].Attempts) != 1 || ds[0].Attempts[0].Status != 200 {
		t.Fatalf("outbox: %+v", ds)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildVigil builds the binary once for the tests that run it as a
// process.
func buildVigil(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "vigil")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestKill9FilteredClientMissesNoTransition: a client follows only alert
// events; an alert is firing already when it connects, so no event comes
// to it — but it has a position. vigil is killed; it starts again with
// rules under which that alert resolves and another goes pending, then
// firing, before the client is back. The client reconnects with its
// position and is told all three, in order: none lost, none collapsed.
func TestKill9FilteredClientMissesNoTransition(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	bin := buildVigil(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	start := func(rules string) *exec.Cmd {
		cfg := filepath.Join(dir, "vigil.yaml")
		os.WriteFile(cfg, []byte("interval: 200ms\nalerts:\n  rules:\n"+rules), 0o600)
		cmd := exec.Command(bin, "--addr", addr, "--data", filepath.Join(dir, "data"), "--config", cfg)
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	alertStates := func() map[string]string {
		out := map[string]string{}
		resp, err := http.Get(base + "/api/v1/alerts")
		if err != nil {
			return out
		}
		defer resp.Body.Close()
		var body struct {
			Alerts []struct{ Rule, State string }
		}
		json.NewDecoder(resp.Body).Decode(&body)
		for _, a := range body.Alerts {
			out[a.Rule] = a.State
		}
		return out
	}
	first := start(`    - {name: Up, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0}
    - {name: Late, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 1e15}
`)
	vigiltest.Eventually(t, 20*time.Second, "Up fires", func() bool { return alertStates()["Up"] == "firing" })

	// The client connects now: nothing for it yet but its position.
	position := func(last string) (string, []sse.Event) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events?type=alert", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var evs []sse.Event
		for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 1 << 20}) {
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			last = ev.LastEventID
			if ev.Type != "" {
				evs = append(evs, ev)
			}
			if ev.Type == "" && ev.Data == "" && last != "" {
				return last, evs // the position after the replay
			}
		}
		t.Fatal("stream ended")
		return "", nil
	}
	pos, evs := position("")
	if pos == "" || len(evs) != 0 {
		t.Fatalf("on connecting: position %q, events %v", pos, evs)
	}

	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	start(`    - {name: Up, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 1e15}
    - {name: Late, source: host/*, metric: host.uptime_seconds, op: ">", threshold: 0, for: 1s}
`)
	vigiltest.Eventually(t, 20*time.Second, "Late fires after the restart", func() bool {
		s := alertStates()
		return s["Late"] == "firing" && s["Up"] == ""
	})

	_, evs = position(pos)
	if len(evs) != 1 || evs[0].Type != "reset" {
		t.Fatalf("on reconnecting: %v, want one reset", evs)
	}
	var reset struct {
		Reason string
		Events []struct {
			Type, Rule, Transition string
			Seq                    uint64
		}
	}
	if err := json.Unmarshal([]byte(evs[0].Data), &reset); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range reset.Events {
		got = append(got, e.Rule+" "+e.Transition)
	}
	want := []string{"Up resolved", "Late pending", "Late firing"}
	if !slices.Equal(got, want) {
		t.Fatalf("reset (%s) carries %v, want %v in order", reset.Reason, got, want)
	}
}
