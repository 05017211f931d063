package alerts

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
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
// The body is the event's standard JSON (or the receiver's template). The
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
	if err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" {
		errs = append(errs, errors.New("url: want the broker as mqtt://host:1883 or mqtts://host:8883, its path the topic prefix (mqtt://host/plant-7/vigil), without credentials (username and password are their own fields)"))
	} else if p := mqttPrefix(u); u.Fragment != "" || strings.HasSuffix(r.URL, "#") || strings.ContainsAny(p, "#+") || strings.Contains(p, "//") {
		errs = append(errs, errors.New("url: the topic prefix (its path) may not hold # or + or an empty level"))
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
		topic := prefix + "/alerts/" + n.Data.Fingerprint
		return []mqttMessage{{topic, body, false}, {topic, nil, true}}, nil // then the retained firing is cleared
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
	c, closeConn, err := s.mqttConnect(ctx, rcv, "")
	if err != nil {
		var r *mqttRefused
		if errors.As(err, &r) {
			return int(r.code), r.outcome
		}
		return 0, Outcome{Retry: !errors.Is(err, ErrBlockedAddress), Err: redact(err, "")}
	}
	defer closeConn()
	for _, m := range msgs {
		res, err := c.Publish(ctx, &paho.Publish{Topic: m.topic, QoS: 1, Retain: m.retain, Payload: m.payload,
			Properties: &paho.PublishProperties{ContentType: "application/json"}})
		switch {
		case res != nil && res.ReasonCode >= 0x80:
			return int(res.ReasonCode), mqttRefusal("publish to "+m.topic, res.ReasonCode, nil)
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

// mqttConnect connects to a receiver's broker, through the sender's
// checked dialer (and TLS for mqtts://), as a client whose id is made from
// the receiver's and role; close ends it.
func (s Sender) mqttConnect(ctx context.Context, rcv Receiver, role string) (c *paho.Client, close func(), err error) {
	u, _ := url.Parse(rcv.URL)
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"mqtt": "1883", "mqtts": "8883"}[u.Scheme]
	}
	conn, err := s.dial()(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) }) // a stop or the timeout cuts it short
	fail := func(err error) (*paho.Client, func(), error) {
		stop()
		conn.Close()
		return nil, nil, err
	}
	if u.Scheme == "mqtts" {
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if rcv.CAFile != "" {
			if cfg.RootCAs, err = CAPool(rcv.CAFile); err != nil {
				return fail(&mqttRefused{outcome: Outcome{Err: "ca_file: " + err.Error()}})
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		conn = packets.NewThreadSafeConn(tc)
	}
	c = paho.NewClient(paho.ClientConfig{Conn: conn, PacketTimeout: s.timeout()})
	h := sha256.Sum256([]byte(rcv.ID))
	cp := &paho.Connect{ClientID: "vigil-" + hex.EncodeToString(h[:6]) + role, KeepAlive: 30, CleanStart: true}
	if rcv.Username != "" {
		cp.Username, cp.UsernameFlag = rcv.Username, true
	}
	if rcv.Secret != "" {
		cp.Password, cp.PasswordFlag = []byte(rcv.Secret), true
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		if ack != nil && ack.ReasonCode >= 0x80 {
			return fail(&mqttRefused{code: ack.ReasonCode, outcome: mqttRefusal("connect", ack.ReasonCode, ack.Properties)})
		}
		return fail(fmt.Errorf("connect: %w", err))
	}
	stop()
	conn.SetDeadline(time.Time{})
	return c, func() { c.Disconnect(&paho.Disconnect{ReasonCode: 0}); conn.Close() }, nil
}

// mqttRefusal judges a broker's reason code (MQTT 5, 0x80 and up): bad
// credentials, not authorized, a topic refused are permanent; the rest
// (busy, unavailable, quota) is retried.
func mqttRefusal(what string, code byte, props *paho.ConnackProperties) Outcome {
	msg := fmt.Sprintf("%s: the broker refused (reason 0x%02x)", what, code)
	if props != nil && props.ReasonString != "" {
		msg += ": " + props.ReasonString
	}
	switch code {
	case 0x84, 0x85, 0x86, 0x87, 0x8C, 0x90, 0x99: // protocol, client id, credentials, not authorized, bad auth method, topic name, payload format
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
	c, closeConn, err := m.Sender.mqttConnect(cctx, m.Receiver, "-samples")
	cancel()
	if err != nil {
		return 0, err
	}
	defer closeConn()
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
		case <-sub.Done():
			return sent, fmt.Errorf("the hub dropped the subscription: %w", sub.Err())
		case ev := <-sub.C():
			if ev.IsHeartbeat() || ev.Type != stream.TypeSample || (m.Leading != nil && !m.Leading()) {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := c.Publish(pctx, &paho.Publish{Topic: prefix + "/" + clean.Replace(ev.Source) + "/sample", QoS: 0, Payload: ev.JSON()})
			cancel()
			if err != nil {
				return sent, err
			}
			sent++
		}
	}
}
