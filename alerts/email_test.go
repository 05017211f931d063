package alerts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// relay is an SMTP server in the test's process (go-smtp's), as a mail
// relay: STARTTLS with a certificate of its own, PLAIN sign-in only over
// TLS, and the mails it took.
type relay struct {
	addr, caFile string
	mu           sync.Mutex
	mails        []relayed
}

type relayed struct {
	from string
	to   []string
	tls  bool
	user string
	msg  *mail.Message
	body string
}

type relaySession struct {
	r    *relay
	conn *smtp.Conn
	m    relayed
}

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *relaySession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "vigil" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.m.user = user
		return nil
	}), nil
}
func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	if s.m.user == "" {
		return &smtp.SMTPError{Code: 530, Message: "sign in first"}
	}
	s.m.from = from
	return nil
}
func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.to = append(s.m.to, to)
	return nil
}
func (s *relaySession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	var br io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		br = quotedprintable.NewReader(br)
	}
	body, _ := io.ReadAll(br)
	_, s.m.tls = s.conn.TLSConnectionState()
	s.m.msg, s.m.body = msg, string(body)
	s.r.mu.Lock()
	s.r.mails = append(s.r.mails, s.m)
	s.r.mu.Unlock()
	s.m = relayed{user: s.m.user}
	return nil
}
func (s *relaySession) Reset()        {}
func (s *relaySession) Logout() error { return nil }

// selfSigned is a certificate for 127.0.0.1, and a PEM file of it to trust
// (ca_file).
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// startRelay starts the relay; starttls false makes one that offers no
// STARTTLS.
func startRelay(t *testing.T, starttls bool) *relay {
	t.Helper()
	cert, caFile := selfSigned(t)
	r := &relay{caFile: caFile}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &relaySession{r: r, conn: c}, nil }))
	srv.Domain = "relay.test"
	if starttls {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	} else {
		srv.AllowInsecureAuth = true
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *relay) taken() []relayed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayed(nil), r.mails...)
}

// An email receiver gets a firing and its resolution through the outbox:
// over STARTTLS, signed in, to every recipient, plain text that says what
// fired; the resolution is a reply to the firing.
func TestEmailReceiver(t *testing.T) {
	r := startRelay(t, true)
	rc := ConfiguredReceiver{Name: "ops-mail", Type: TypeEmail, URL: "smtp://" + r.addr, From: "vigil <vigil@example.com>",
		To: []string{"ops@example.com", "Oncall <oncall@example.com>"}, Username: "vigil", Secret: "s3cret", CAFile: r.caFile}
	if errs := rc.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	db, d := runOutbox(t, nil, rc)
	db.DashboardURL = "https://vigil.example.com"
	ctx := context.Background()
	for _, tr := range []Transition{firing("Hot"), resolvedT("Hot")} {
		if err := db.SaveTransitions(ctx, []Transition{tr}); err != nil {
			t.Fatal(err)
		}
		d.Wake()
	}
	within(10*time.Second, func() bool { return len(r.taken()) >= 2 })
	got := r.taken()
	if len(got) != 2 {
		ds, _ := db.Deliveries(ctx, "cfg-ops-mail", 10)
		t.Fatalf("the relay took %d mails; deliveries %+v", len(got), ds)
	}
	dec := new(mime.WordDecoder)
	for i, want := range []string{"[FIRING] Hot on host/a", "[RESOLVED] Hot on host/a"} {
		m := got[i]
		subject, _ := dec.DecodeHeader(m.msg.Header.Get("Subject"))
		if !m.tls || m.user != "vigil" || m.from != "vigil@example.com" || strings.Join(m.to, ",") != "ops@example.com,oncall@example.com" || subject != want {
			t.Errorf("mail %d: tls %v, user %q, from %q, to %v, subject %q", i, m.tls, m.user, m.from, m.to, subject)
		}
	}
	if !strings.Contains(got[0].body, "cpu.percent = 97 (> 90)") || !strings.Contains(got[0].body, "https://vigil.example.com/source/host/a") {
		t.Errorf("firing body:\n%s", got[0].body)
	}
	if irt := got[1].msg.Header.Get("In-Reply-To"); irt == "" || irt != got[0].msg.Header.Get("Message-ID") {
		t.Errorf("resolution In-Reply-To %q, firing Message-ID %q", irt, got[0].msg.Header.Get("Message-ID"))
	}
}

// A relay that offers no STARTTLS gets no mail (no password in the
// clear): the delivery is dead at once and says why. A refused address is
// refused for mail as for webhooks.
func TestEmailNeedsTLS(t *testing.T) {
	r := startRelay(t, false)
	rcv := Receiver{ID: "cfg-m", Type: TypeEmail, URL: "smtp://" + r.addr, From: "vigil@example.com", To: []string{"ops@example.com"},
		Username: "vigil", Secret: "s3cret"}
	payload, _ := renderTransition(firing("Hot"), "", 1)
	send := func(s Sender) Outcome {
		_, o := s.Send(context.Background(), rcv, Delivery{ID: "msg_1", EventType: EventFiring, Payload: payload.standard})
		return o
	}
	if o := send(Sender{Client: NewClient(loopback, 5*time.Second)}); o.Retry || !strings.Contains(o.Err, "does not offer STARTTLS") {
		t.Errorf("without STARTTLS: %+v", o)
	}
	if len(r.taken()) != 0 {
		t.Errorf("the relay took a mail in the clear")
	}
	if o := send(Sender{Client: NewClient([]netip.Prefix{}, 5*time.Second)}); o.Retry || !strings.Contains(o.Err, "not allowed") {
		t.Errorf("to a loopback relay not allowed: %+v", o)
	}
	rcv.NoTLS = true // require_tls: false
	if o := send(Sender{Client: NewClient(loopback, 5*time.Second)}); o.Err != "" || len(r.taken()) != 1 {
		t.Errorf("require_tls false: %+v, %d mails", o, len(r.taken()))
	}
}

// Recipients are written again from their parsed addresses: a line
// break in one (net/mail takes it in a comment) adds no header, a name is
// encoded, and a long list is folded.
func TestEmailRecipientsWrittenSafely(t *testing.T) {
	var to []string
	for i := range 40 {
		to = append(to, "ops"+strings.Repeat("x", 10)+string(rune('a'+i%26))+"@example.com")
	}
	to = append(to, "ops@example.com (x\r\nReply-To: evil@example.com)", "Jörg <jorg@example.com>")
	payload, _ := renderTransition(firing("Hot"), "", 1)
	msg, err := emailMessage(Receiver{From: "vigil@example.com", To: to}, Delivery{ID: "msg_1", Payload: payload.standard}, t0)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(line, "Reply-To:") || len(line) > 998 || strings.ContainsFunc(line, func(r rune) bool { return r > 127 }) {
			t.Errorf("header line %q", line)
		}
	}
	m, err := mail.ReadMessage(strings.NewReader(string(msg)))
	if err != nil {
		t.Fatal(err)
	}
	list, err := m.Header.AddressList("To")
	if err != nil || len(list) != 42 || list[41].Name != "Jörg" {
		t.Fatalf("To: %v, %v", list, err)
	}
}
