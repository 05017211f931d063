package alerts

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TypeEmail sends a plain-text mail through an SMTP relay
// (smtp://host:587 with STARTTLS, or smtps://host:465), with go-smtp's
// client: a resolution replies to its firing, so a mail client threads
// them.
const TypeEmail = "email"

// maxRecipients bounds an email receiver's To.
const maxRecipients = 50

// checkEmail says what is wrong with an email receiver's fields.
func checkEmail(r Receiver) []error {
	var errs []error
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		errs = append(errs, errors.New("url: want the relay as smtp://host:587 (STARTTLS) or smtps://host:465, without credentials (username and password are their own fields)"))
	}
	if _, err := mail.ParseAddress(r.From); err != nil {
		errs = append(errs, fmt.Errorf("from: want an address such as vigil@example.com"))
	}
	if len(r.To) == 0 || len(r.To) > maxRecipients {
		errs = append(errs, fmt.Errorf("to: want 1 to %d addresses", maxRecipients))
	}
	for _, to := range r.To {
		if _, err := mail.ParseAddress(to); err != nil {
			errs = append(errs, fmt.Errorf("to: %q is not an address", to))
		}
	}
	if (r.Username == "") != (r.Secret == "") {
		errs = append(errs, errors.New("password: give a username and a password, or neither"))
	}
	if r.NoTLS && r.Username != "" && strings.HasPrefix(r.URL, "smtp:") {
		errs = append(errs, errors.New("require_tls: a password is never sent in the clear; sign in over TLS, or relay without signing in"))
	}
	if r.CAFile != "" {
		if _, err := CAPool(r.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("ca_file: %w", err))
		}
	}
	return errs
}

// CAPool reads PEM certificates to trust (an email relay's, a fleet
// upstream's).
func CAPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// dial is the dialer of the sender's HTTP client (NewClient's, which
// checks every address), so a mail relay is held to the same rules; a
// client without one cannot send mail.
func (s Sender) dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.Client != nil {
		if tr, ok := s.Client.Transport.(*http.Transport); ok && tr.DialContext != nil {
			return tr.DialContext
		}
	}
	return func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no checked dialer to reach a mail relay with")
	}
}

// sendEmail makes one attempt of a delivery to an email receiver. Its
// status is the SMTP reply's code; a 4xx reply, a timeout or a network
// error is retried, a 5xx is permanent.
func (s Sender) sendEmail(ctx context.Context, rcv Receiver, d Delivery, now time.Time) (int, Outcome) {
	msg, err := emailMessage(rcv, d, now)
	if err != nil {
		return 0, Outcome{Err: err.Error()}
	}
	u, _ := url.Parse(rcv.URL)
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"smtp": "587", "smtps": "465"}[u.Scheme]
	}
	timeout := DefaultAttemptTimeout
	if s.Client != nil && s.Client.Timeout > 0 {
		timeout = s.Client.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := s.dial()(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return 0, Outcome{Retry: !errors.Is(err, ErrBlockedAddress), Err: redact(err, "")}
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) }) // a stop cuts it short
	defer stop()
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if rcv.CAFile != "" {
		if cfg.RootCAs, err = CAPool(rcv.CAFile); err != nil {
			return 0, Outcome{Err: "ca_file: " + err.Error()}
		}
	}
	var c *smtp.Client
	switch {
	case u.Scheme == "smtps":
		c = smtp.NewClient(tls.Client(conn, cfg))
	case rcv.NoTLS: // in the clear, as asked (require_tls: false)
		c = smtp.NewClient(conn)
	default:
		if c, err = smtp.NewClientStartTLS(conn, cfg); err != nil {
			if strings.Contains(err.Error(), "doesn't support STARTTLS") {
				return 0, Outcome{Err: "the relay does not offer STARTTLS; vigil sends no mail in the clear unless require_tls is false"}
			}
			return smtpOutcome(fmt.Errorf("STARTTLS: %w", err))
		}
	}
	defer c.Close()
	if rcv.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", rcv.Username, rcv.Secret)); err != nil {
			return smtpOutcome(fmt.Errorf("sign in: %w", err))
		}
	}
	from, _ := mail.ParseAddress(rcv.From)
	if err := c.Mail(from.Address, nil); err != nil {
		return smtpOutcome(err)
	}
	for _, to := range rcv.To {
		a, _ := mail.ParseAddress(to)
		if err := c.Rcpt(a.Address, nil); err != nil {
			return smtpOutcome(fmt.Errorf("recipient %s: %w", a.Address, err))
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpOutcome(err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpOutcome(err)
	}
	if err := w.Close(); err != nil {
		return smtpOutcome(err)
	}
	c.Quit()
	return 250, Outcome{} // the reply to the data: accepted

}

// smtpOutcome judges a failed step: a 4xx reply and a broken connection
// are retried, a 5xx is permanent.
func smtpOutcome(err error) (int, Outcome) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, Outcome{Retry: se.Code < 500, Err: err.Error()}
	}
	return 0, Outcome{Retry: true, Err: err.Error()}
}

// emailMessage is the mail of a delivery: the message every service type
// gets, as plain text. A firing's Message-ID is made from the alert and
// its episode, and its resolution is a reply to it.
func emailMessage(rcv Receiver, d Delivery, now time.Time) ([]byte, error) {
	var n notice
	if err := json.Unmarshal(d.Payload, &n); err != nil {
		return nil, fmt.Errorf("read the event: %w", err)
	}
	from, err := mail.ParseAddress(rcv.From)
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	episode := "<" + n.Data.Fingerprint + "." + strconv.FormatInt(n.Data.StartedAt.Unix(), 10) + "@" + domain + ">"
	id := "<" + d.ID + "@" + domain + ">"
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	var to []string
	for _, t := range rcv.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		to = append(to, a.String()) // written again: encoded, and no line breaks from the config
	}
	h("From", from.String())
	h("To", strings.Join(to, ",\r\n "))
	h("Subject", mime.QEncoding.Encode("utf-8", n.title()))
	h("Date", now.UTC().Format(time.RFC1123Z))
	switch {
	case n.test():
		h("Message-ID", id)
	case n.resolved():
		h("Message-ID", id)
		h("In-Reply-To", episode)
		h("References", episode)
	default:
		h("Message-ID", episode)
	}
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(n.text(), "\n", "\r\n") + "\r\n"))
	qp.Close()
	return b.Bytes(), nil
}
