package alerts

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"vigil/stream"
)

// TypeMQTT publishes alert transitions to an MQTT broker (MQTT 5, with
// paho.golang's client), for consumers that live on a broker rather than
// on HTTP: plant and edge systems, home automation.
//
//   - A firing is published to <prefix>/alerts/<fingerprint>, QoS 1,
//     retained: a subscriber that comes later sees every alert firing now.
//   - Its resolution is published to the same topic, not retained, and an
//     empty retained message then clears the alert's.
//   - A test goes to <prefix>/test.
//
// (An MQTT receiver must take resolutions: they clear what its firings
// retained.) The body is the event's standard JSON (or the receiver's template). The
// message goes through the outbox as a webhook does: a broker that is
// down holds up nothing else, and the message waits, retried, until the
// broker acknowledges it (PUBACK). Each attempt is a connection of its
// own, through the same address checks as a webhook's.
const TypeMQTT = "mqtt"

// DefaultMQTTPrefix is the topic prefix of a broker URL without a path.
const DefaultMQTTPrefix = "vigil"

// checkMQTT says what is wrong with an MQTT receiver's fields.
func checkMQTT(r Receiver) []error {
	var errs []error
	u, err := url.Parse(r.URL)
	port := 1
	if u != nil && u.Port() != "" {
		port, _ = strconv.Atoi(u.Port())
	}
	if err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || port < 1 || port > 65535 {
		errs = append(errs, errors.New("url: want the broker as mqtt://host:1883 or mqtts://host:8883, its path the topic prefix (mqtt://host/plant-7/vigil), without credentials (username and password are their own fields)"))
	} else if p := mqttPrefix(u); u.Fragment != "" || strings.HasSuffix(r.URL, "#") || strings.ContainsAny(p, "#+") || strings.Contains(p, "//") ||
		strings.HasPrefix(p, "$") || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New("url: the topic prefix (its path) may not hold # or +, an empty level or a control character, nor start with $ (the broker's own topics)"))
	}
	if !r.Wants(EventResolved) {
		errs = append(errs, errors.New("events: an MQTT receiver takes alert.resolved too: a resolution clears its alert's retained firing"))
	}
	if r.CAFile != "" && u != nil && u.Scheme == "mqtt" {
		errs = append(errs, errors.New("ca_file: only for a broker over TLS (mqtts://)"))
	}
	if r.Secret != "" && r.Username == "" {
		errs = append(errs, errors.New("password: give a username with it"))
	}
	if r.Secret != "" && u != nil && u.Scheme == "mqtt" {
		errs = append(errs, errors.New("password: a password is never sent in the clear; use mqtts://"))
	}
	if r.CAFile != "" {
		if _, err := CAPool(r.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("ca_file: %w", err))
		}
	}
	return errs
}

// mqttPrefix is the topic prefix a broker URL names.
func mqttPrefix(u *url.URL) string {
	if p := strings.Trim(u.Path, "/"); p != "" {
		return p
	}
	return DefaultMQTTPrefix
}

// mqttMessage is one message of a delivery: a topic, a body, retained or
// not.
type mqttMessage struct {
	topic   string
	payload []byte
	retain  bool
}

// mqttMessages are the messages of a delivery, in order.
func mqttMessages(rcv Receiver, d Delivery) ([]mqttMessage, error) {
	u, _ := url.Parse(rcv.URL)
	prefix := mqttPrefix(u)
	body := d.Payload
	if rcv.Template != "" {
		var err error
		if body, err = applyTemplate(rcv.Template, d.Payload); err != nil {
			return nil, err
		}
	}
	var n notice
	if err := json.Unmarshal(d.Payload, &n); err != nil {
		return nil, fmt.Errorf("read the event: %w", err)
	}
	switch {
	case n.test():
		return []mqttMessage{{prefix + "/test", body, false}}, nil
	case n.Data.Fingerprint == "":
		return nil, errors.New("an alert's event without its fingerprint")
	case n.resolved():
		// The retained firing is cleared first: a retry after a failure
		// between the two repeats the clear, which is harmless, and not
		// the resolution.
		topic := prefix + "/alerts/" + n.Data.Fingerprint
		return []mqttMessage{{topic, nil, true}, {topic, body, false}}, nil
	}
	return []mqttMessage{{prefix + "/alerts/" + n.Data.Fingerprint, body, true}}, nil
}

// sendMQTT makes one attempt of a delivery to an MQTT receiver: connect,
// publish each message at QoS 1 and wait for its PUBACK, disconnect. A
// network error, a timeout or a broker's transient refusal is retried; a
// refusal of the credentials or the topic is not.
func (s Sender) sendMQTT(ctx context.Context, rcv Receiver, d Delivery) (int, Outcome) {
	msgs, err := mqttMessages(rcv, d)
	if err != nil {
		return 0, Outcome{Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	mc, err := s.mqttConnect(ctx, rcv)
	if err != nil {
		var r *mqttRefused
		if errors.As(err, &r) {
			return int(r.code), r.outcome
		}
		return 0, Outcome{Retry: !errors.Is(err, ErrBlockedAddress), Err: err.Error()} // it names no credentials: the URL has none
	}
	defer mc.close()
	for _, m := range msgs {
		res, err := mc.publish(ctx, &paho.Publish{Topic: m.topic, QoS: 1, Retain: m.retain, Payload: m.payload,
			Properties: &paho.PublishProperties{ContentType: "application/json"}})
		var r *mqttRefused
		switch {
		case res != nil && res.ReasonCode >= 0x80:
			return int(res.ReasonCode), mqttRefusal("publish to "+m.topic, res.ReasonCode, "")
		case errors.As(err, &r):
			return int(r.code), r.outcome
		case errors.Is(err, paho.ErrInvalidArguments): // what this broker cannot take (retained messages, QoS 1): no retry will do
			return 0, Outcome{Err: "publish to " + m.topic + ": " + err.Error()}
		case err != nil:
			return 0, Outcome{Retry: true, Err: "publish to " + m.topic + ": " + err.Error()}
		}
	}
	return 0, Outcome{}
}

// mqttRefused is a broker's refusal of a connection.
type mqttRefused struct {
	code    byte
	outcome Outcome
}

func (e *mqttRefused) Error() string { return e.outcome.Err }

// timeout is an attempt's: the client's.
func (s Sender) timeout() time.Duration {
	if s.Client != nil && s.Client.Timeout > 0 {
		return s.Client.Timeout
	}
	return DefaultAttemptTimeout
}

// mqttConn is a connection to a broker: the client, and the socket under
// it, which a stop closes at once (a broker that stops reading holds up
// nothing).
type mqttConn struct {
	c    *paho.Client
	raw  net.Conn
	gone chan struct{} // closed when the broker sends DISCONNECT
	why  byte          // its reason code, once gone
}

// mqttConnect connects to a receiver's broker, through the sender's
// checked dialer (and TLS for mqtts://). The broker gives the client its
// id (MQTT 5, an empty one with a clean start): two connections of one
// vigil, or two vigils, never knock each other off.
func (s Sender) mqttConnect(ctx context.Context, rcv Receiver) (*mqttConn, error) {
	u, _ := url.Parse(rcv.URL)
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883"}[u.Scheme]
	}
	raw, err := s.dial()(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() }) // a stop or the timeout cuts it short
	fail := func(err error) (*mqttConn, error) {
		stop()
		raw.Close()
		return nil, err
	}
	conn := raw
	if u.Scheme == "mqtts" {
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if rcv.CAFile != "" {
			if cfg.RootCAs, err = CAPool(rcv.CAFile); err != nil {
				return fail(&mqttRefused{outcome: Outcome{Err: "ca_file: " + err.Error()}})
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		conn = packets.NewThreadSafeConn(tc)
	}
	mc := &mqttConn{raw: raw, gone: make(chan struct{})}
	var once sync.Once
	mc.c = paho.NewClient(paho.ClientConfig{Conn: conn, PacketTimeout: s.timeout(),
		OnServerDisconnect: func(d *paho.Disconnect) { once.Do(func() { mc.why = d.ReasonCode; close(mc.gone) }) }})
	cp := &paho.Connect{KeepAlive: 30, CleanStart: true}
	if rcv.Username != "" {
		cp.Username, cp.UsernameFlag = rcv.Username, true
	}
	if rcv.Secret != "" {
		cp.Password, cp.PasswordFlag = []byte(rcv.Secret), true
	}
	ack, err := mc.c.Connect(ctx, cp)
	if err != nil {
		if ack != nil && ack.ReasonCode >= 0x80 {
			reason := ""
			if ack.Properties != nil {
				reason = ack.Properties.ReasonString
			}
			return fail(&mqttRefused{code: ack.ReasonCode, outcome: mqttRefusal("connect", ack.ReasonCode, reason)})
		}
		return fail(fmt.Errorf("connect: %w", err))
	}
	stop()
	return mc, nil
}

// publish publishes, and gives up as soon as the connection is lost (the
// client's own session would only let the wait run out): with the
// broker's reason, when it sent one.
func (mc *mqttConn) publish(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { mc.raw.Close() }) // a stop, or a write that hangs past the attempt
	defer stop()
	go func() {
		select {
		case <-mc.c.Done():
		case <-mc.gone:
		case <-ctx.Done():
		}
		cancel()
	}()
	mc.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	res, err := mc.c.Publish(ctx, p)
	select {
	case <-mc.gone:
		if mc.why >= 0x80 {
			return res, &mqttRefused{code: mc.why, outcome: mqttRefusal("publish to "+p.Topic+": the broker disconnected", mc.why, "")}
		}
		if err == nil {
			err = errors.New("the broker disconnected")
		}
	default:
	}
	return res, err
}

// close ends the connection: DISCONNECT, if the broker still reads.
func (mc *mqttConn) close() {
	mc.raw.SetWriteDeadline(time.Now().Add(time.Second))
	mc.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	mc.raw.Close()
}

// mqttRefusal judges a broker's reason code (MQTT 5, 0x80 and up): bad
// credentials, not authorized, a topic refused are permanent; the rest
// (busy, unavailable, quota) is retried.
func mqttRefusal(what string, code byte, reason string) Outcome {
	msg := fmt.Sprintf("%s: the broker refused (reason 0x%02x)", what, code)
	if reason != "" {
		msg += ": " + reason
	}
	switch code {
	// protocol, client id, credentials, not authorized, bad auth method,
	// topic name, packet too large, payload format, retain or QoS not
	// supported: the same message would be refused again
	case 0x84, 0x85, 0x86, 0x87, 0x8C, 0x90, 0x95, 0x99, 0x9A, 0x9B:
		return Outcome{Err: msg}
	}
	return Outcome{Retry: true, Err: msg}
}

// MQTTSamples publishes every sample on the hub to an MQTT receiver's
// broker, on <prefix>/<source>/sample at QoS 0: the live numbers for a
// consumer on the broker, best effort (a sample missed is superseded by
// the next a second later). It never holds up the hub: while the broker
// is away, or slower than the samples, they are dropped (the hub drops a
// subscriber that falls behind; it subscribes again from now), and it
// connects again with backoff. Alerts do not go this way: they go through
// the outbox (sendMQTT).
type MQTTSamples struct {
	Receiver Receiver // an mqtt receiver: its URL, credentials and CA
	Hub      interface {
		Subscribe(cur stream.Cursor, f stream.Filter) (*stream.Subscriber, error)
	}
	Sender Sender // its dialer (the address checks) and attempt timeout
	Logger *slog.Logger
	// Leading, when set, says whether this vigil publishes now: on
	// replicas, whose hubs carry the same samples, the lease holder alone.
	Leading func() bool
}

// Run publishes samples until ctx is done.
func (m *MQTTSamples) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	wait := time.Second
	for ctx.Err() == nil {
		sent, err := m.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if sent > 0 {
			wait = time.Second // it worked for a while: start the backoff again
		}
		m.Logger.Warn("MQTT samples: the broker connection ended; connecting again", "receiver", m.Receiver.ID, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
	return nil
}

// session connects, and publishes samples until the connection or the
// subscription fails; it says how many it sent.
func (m *MQTTSamples) session(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, m.Sender.timeout())
	mc, err := m.Sender.mqttConnect(cctx, m.Receiver)
	cancel()
	if err != nil {
		return 0, err
	}
	defer mc.close()
	sub, err := m.Hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeSample}})
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	u, _ := url.Parse(m.Receiver.URL)
	prefix := mqttPrefix(u)
	clean := strings.NewReplacer("+", "_", "#", "_")
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return sent, nil
		case <-mc.c.Done():
			return sent, errors.New("the connection was lost")
		case <-mc.gone:
			return sent, fmt.Errorf("the broker disconnected (reason 0x%02x)", mc.why)
		case <-sub.Done():
			return sent, fmt.Errorf("the hub dropped the subscription: %w", sub.Err())
		case ev := <-sub.C():
			if ev.IsHeartbeat() || ev.Type != stream.TypeSample || (m.Leading != nil && !m.Leading()) {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := mc.publish(pctx, &paho.Publish{Topic: prefix + "/" + clean.Replace(ev.Source) + "/sample", QoS: 0, Payload: ev.JSON()})
			cancel()
			if err != nil {
				return sent, err
			}
			sent++
		}
	}
}
