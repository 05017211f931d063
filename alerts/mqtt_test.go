package alerts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"vigil/stream"
)

// broker runs an MQTT broker (mochi-mqtt, in the test's process) on addr
// until stop, open to all.
func broker(t *testing.T, addr string) (stop func()) {
	t.Helper()
	return brokerWith(t, listeners.Config{ID: "tcp", Address: addr}, nil)
}

// brokerWith runs a broker with a listener and, when set, a ledger of
// who may connect.
func brokerWith(t *testing.T, lc listeners.Config, ledger *auth.Ledger) (stop func()) {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	var err error
	if ledger != nil {
		err = s.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	} else {
		err = s.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(lc)); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { s.Close() }) }
	t.Cleanup(stop)
	return stop
}

// freeAddr is a loopback address no one listens on, for a broker that
// stops and starts again on it.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type mqttGot struct {
	topic   string
	payload string
	retain  bool
}

// subscribe follows topic on the broker at addr and returns what came so
// far, each time it is called.
func subscribe(t *testing.T, addr, topic string) func() []mqttGot {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []mqttGot
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) {
			mu.Lock()
			got = append(got, mqttGot{p.Packet.Topic, string(p.Packet.Payload), p.Packet.Retain})
			mu.Unlock()
			return true, nil
		}}})
	ctx := context.Background()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "sub-" + strings.ReplaceAll(t.Name(), "/", "-") + time.Now().Format("150405.000000"), KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return func() []mqttGot {
		mu.Lock()
		defer mu.Unlock()
		return append([]mqttGot(nil), got...)
	}
}

// An MQTT receiver publishes a firing retained on its alert's topic, so a
// subscriber that comes later sees it; its resolution goes to the same
// topic, and an empty retained message then clears the alert's.
func TestMQTTReceiver(t *testing.T) {
	addr := freeAddr(t)
	broker(t, addr)
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "plant", Type: TypeMQTT, URL: "mqtt://" + addr + "/plant-7/vigil"})
	live := subscribe(t, addr, "plant-7/vigil/#")
	ctx := context.Background()
	hot := firing("Hot")
	if err := db.SaveTransitions(ctx, []Transition{hot}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	topic := "plant-7/vigil/alerts/" + hot.Alert.Fingerprint
	if !within(5*time.Second, func() bool { return len(live()) == 1 }) {
		t.Fatalf("live subscriber got %+v", live())
	}
	var body struct {
		Type string
		Data struct{ Rule, Fingerprint string }
	}
	if m := live()[0]; m.topic != topic || json.Unmarshal([]byte(m.payload), &body) != nil || body.Type != EventFiring || body.Data.Rule != "Hot" {
		t.Fatalf("the firing: %+v", m)
	}
	late := subscribe(t, addr, "plant-7/vigil/alerts/#")
	if !within(5*time.Second, func() bool { return len(late()) == 1 }) || !late()[0].retain || late()[0].topic != topic {
		t.Fatalf("a late subscriber got %+v, want the firing, retained", late())
	}
	res := hot
	res.Kind, res.Alert.State, res.Alert.EndedAt = StateResolved, StateInactive, hot.Alert.StartedAt.Add(time.Minute)
	if err := db.SaveTransitions(ctx, []Transition{res}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	if !within(5*time.Second, func() bool { return len(live()) == 3 }) {
		t.Fatalf("live subscriber got %+v", live())
	}
	if g := live(); g[1].payload != "" || !strings.Contains(g[2].payload, `"type":"alert.resolved"`) {
		t.Fatalf("after the resolution: %+v, want the empty message that clears the firing, then the resolution", g[1:])
	}
	later := subscribe(t, addr, "plant-7/vigil/alerts/#")
	time.Sleep(300 * time.Millisecond) // a retained message comes at once, if there is one
	if g := later(); len(g) != 0 {
		t.Fatalf("a subscriber after the resolution got %+v, want nothing retained", g)
	}
	if ds, _ := db.Deliveries(ctx, "cfg-plant", 10); len(ds) != 2 || ds[0].State != DeliveryDelivered || ds[1].State != DeliveryDelivered {
		t.Fatalf("deliveries %+v", ds)
	}
}

// A broker that restarts during a burst loses nothing: the messages it did
// not acknowledge wait in the outbox, retried, and arrive once it is back.
func TestMQTTBrokerRestart(t *testing.T) {
	addr := freeAddr(t)
	stop := broker(t, addr)
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "plant", Type: TypeMQTT, URL: "mqtt://" + addr})
	ctx := context.Background()
	stop()
	var fps []string
	const burst = 4 // under the five failures in a row that open a receiver's breaker for 30 s
	for i := range burst {
		f := hostFiring("Hot", "host/"+string(rune('a'+i)), "edge")
		fps = append(fps, f.Alert.Fingerprint)
		if err := db.SaveTransitions(ctx, []Transition{f}); err != nil {
			t.Fatal(err)
		}
	}
	d.Wake()
	if !within(10*time.Second, func() bool {
		ds, _ := db.Deliveries(ctx, "cfg-plant", 20)
		for _, dl := range ds {
			if len(dl.Attempts) > 0 && dl.State == DeliveryQueued {
				return true
			}
		}
		return false
	}) {
		t.Fatal("the deliveries were not tried while the broker was down")
	}
	broker(t, addr)
	// Backed off, and, should five fail in a row, after the receiver's
	// breaker's 30 s: all within 45 s.
	if !within(45*time.Second, func() bool {
		ds, _ := db.Deliveries(ctx, "cfg-plant", 20)
		n := 0
		for _, dl := range ds {
			if dl.State == DeliveryDelivered {
				n++
			}
		}
		return n == burst
	}) {
		ds, _ := db.Deliveries(ctx, "cfg-plant", 20)
		t.Fatalf("after the broker came back: %+v", ds)
	}
	got := subscribe(t, addr, "vigil/alerts/#")
	if !within(5*time.Second, func() bool { return len(got()) == burst }) {
		t.Fatalf("a subscriber got %d retained alerts, want %d", len(got()), burst)
	}
	for _, fp := range fps {
		found := false
		for _, m := range got() {
			found = found || m.topic == "vigil/alerts/"+fp
		}
		if !found {
			t.Fatalf("alert %s missing", fp)
		}
	}
}

func TestMQTTConfig(t *testing.T) {
	for _, tc := range []struct {
		c    ConfiguredReceiver
		want string
	}{
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "http://broker:1883"}, "url: want the broker as mqtt://"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker/a/#"}, "may not hold # or +"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker", Username: "u", Secret: "p"}, "never sent in the clear; use mqtts://"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtts://broker", Secret: "p"}, "password: give a username"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker", GroupWait: time.Second}, "group_wait: an MQTT receiver"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker:99999/x"}, "url: want the broker"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker/$SYS/x"}, "nor start with $"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker/a%00b"}, "control character"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker", Events: []string{EventFiring}}, "events: an MQTT receiver takes alert.resolved too"},
		{ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtt://broker", CAFile: "ca.pem"}, "ca_file: only for a broker over TLS"},
	} {
		errs := tc.c.Validate()
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, errs, tc.want)
		}
	}
	if errs := (ConfiguredReceiver{Name: "m", Type: TypeMQTT, URL: "mqtts://broker:8883/site", Username: "u", Secret: "p"}).Validate(); len(errs) != 0 {
		t.Fatal(errs)
	}
}

// An MQTT receiver with samples gets every sample on <prefix>/<source>/
// sample; while the broker is away they are dropped, and once it is back
// they come again, without anyone asking.
func TestMQTTSamples(t *testing.T) {
	addr := freeAddr(t)
	stop := broker(t, addr)
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	m := &MQTTSamples{Receiver: Receiver{ID: "cfg-plant", Type: TypeMQTT, URL: "mqtt://" + addr + "/site"}, Hub: hub,
		Sender: Sender{Client: NewClient(loopback, 2*time.Second)}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	publish := func(v float64) {
		hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"metrics": map[string]float64{"cpu.percent": v}}})
	}
	got := subscribe(t, addr, "site/#")
	if !within(5*time.Second, func() bool { publish(1); return len(got()) > 0 }) {
		t.Fatal("no sample on the broker")
	}
	if g := got()[0]; g.topic != "site/host/a/sample" || !strings.Contains(g.payload, `"cpu.percent":1`) || g.retain {
		t.Fatalf("a sample: %+v", g)
	}
	stop()
	publish(2) // dropped: the broker is away
	broker(t, addr)
	again := subscribe(t, addr, "site/#")
	if !within(15*time.Second, func() bool { publish(3); return len(again()) > 0 }) {
		t.Fatal("no sample after the broker came back")
	}
	if g := again()[0]; !strings.Contains(g.payload, `"cpu.percent":3`) {
		t.Fatalf("after the restart: %+v", g)
	}
}

// Over mqtts://, vigil checks the broker's certificate against ca_file
// and signs in; a broker that refuses the credentials is a permanent
// failure, whose error does not name the password.
func TestMQTTOverTLSWithCredentials(t *testing.T) {
	cert, caFile := selfSigned(t)
	addr := freeAddr(t)
	brokerWith(t, listeners.Config{ID: "tls", Address: addr, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}},
		&auth.Ledger{Auth: auth.AuthRules{{Username: "vigil", Password: "right-password", Allow: true}}})
	db, d := runOutbox(t, nil,
		ConfiguredReceiver{Name: "ok", Type: TypeMQTT, URL: "mqtts://" + addr + "/site", Username: "vigil", Secret: "right-password", CAFile: caFile},
		ConfiguredReceiver{Name: "wrong", Type: TypeMQTT, URL: "mqtts://" + addr + "/site", Username: "vigil", Secret: "wrong-password", CAFile: caFile},
		ConfiguredReceiver{Name: "untrusting", Type: TypeMQTT, URL: "mqtts://" + addr + "/site"})
	ctx := context.Background()
	if err := db.SaveTransitions(ctx, []Transition{firing("Hot")}); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	state := func(id string) Delivery {
		ds, _ := db.Deliveries(ctx, id, 1)
		if len(ds) == 0 {
			return Delivery{}
		}
		return ds[0]
	}
	if !within(10*time.Second, func() bool {
		return state("cfg-ok").State == DeliveryDelivered && state("cfg-wrong").State == DeliveryDead && len(state("cfg-untrusting").Attempts) > 0
	}) {
		t.Fatalf("ok %+v; wrong %+v; untrusting %+v", state("cfg-ok"), state("cfg-wrong"), state("cfg-untrusting"))
	}
	if e := state("cfg-wrong").LastError; !strings.Contains(e, "refused (reason 0x86)") || strings.Contains(e, "wrong-password") {
		t.Fatalf("wrong credentials: %q", e)
	}
	if e := state("cfg-untrusting").LastError; !strings.Contains(e, "certificate") {
		t.Fatalf("a broker's certificate not trusted: %q", e)
	}
}

// Alerts that fire together go on connections of their own at once (the
// dispatcher runs two a receiver): each gets its id from the broker, and
// none knocks another off (an outside review found one id a receiver
// doing so, against mosquitto).
func TestMQTTAlertsTogether(t *testing.T) {
	addr := freeAddr(t)
	broker(t, addr)
	db, d := runOutbox(t, nil, ConfiguredReceiver{Name: "plant", Type: TypeMQTT, URL: "mqtt://" + addr})
	ctx := context.Background()
	const n = 12
	var ts []Transition
	for i := range n {
		ts = append(ts, hostFiring("Hot", "host/"+string(rune('a'+i)), "edge"))
	}
	if err := db.SaveTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	d.Wake()
	if !within(10*time.Second, func() bool {
		ds, _ := db.Deliveries(ctx, "cfg-plant", 2*n)
		done := 0
		for _, dl := range ds {
			if dl.State == DeliveryDelivered {
				done++
			}
		}
		return done == n
	}) {
		t.Fatal("not all delivered")
	}
	ds, _ := db.Deliveries(ctx, "cfg-plant", 2*n)
	for _, dl := range ds {
		if len(dl.Attempts) != 1 {
			t.Fatalf("a delivery took %d attempts (%s), want 1 each", len(dl.Attempts), dl.LastError)
		}
	}
}

// A broker that drops the connection while vigil waits for its PUBACK is
// noticed at once, not at the attempt's timeout, and retried.
func TestMQTTConnectionLostMidPublish(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.Read(buf)                                   // CONNECT
			c.Write([]byte{0x20, 0x03, 0x00, 0x00, 0x00}) // CONNACK: accepted, no properties
			c.Read(buf)                                   // PUBLISH
			c.Close()                                     // and gone, without a PUBACK
		}
	}()
	rcv := Receiver{ID: "cfg-m", Type: TypeMQTT, URL: "mqtt://" + ln.Addr().String()}
	s := Sender{Client: NewClient(loopback, 10*time.Second)}
	start := time.Now()
	_, o := s.Send(context.Background(), rcv, Delivery{ID: "msg_1", EventType: EventFiring, Payload: mustPayload(t, firing("Hot"))})
	if took := time.Since(start); took > 3*time.Second || !o.Retry || o.Err == "" {
		t.Fatalf("after %v: %+v, want a retry at once", took, o)
	}
}

func mustPayload(t *testing.T, tr Transition) []byte {
	b, err := payload(FormatStandard, tr, "", 1, tr.Alert.UpdatedAt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
