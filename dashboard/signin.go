package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vigil/stream"
	"vigil/templates"
)

// Signing in: a person exchanges a token for a session cookie, so the
// page can acknowledge and silence without the token ever being where a
// script reads it. The cookie is HttpOnly (scripts cannot read it),
// SameSite=Strict (no other site's page sends it) and Secure over TLS;
// writes from a page also pass the cross-origin check every write does
// (guard.go). The session is signed, not stored: its key is made from the
// token it was signed in with, so it holds on every replica and across
// restarts, and removing that token from auth.tokens ends every session
// made with it.

// The cookie's names: with the __Host- prefix where it is Secure (the
// browser then takes it from this host alone, over HTTPS, for the whole
// site), and without it over plain HTTP (loopback).
const (
	sessionCookie       = "vigil_session"
	secureSessionCookie = "__Host-vigil_session"
)

// SessionLifetime is how long a session lasts after signing in.
const SessionLifetime = 12 * time.Hour

// A login is who signed in, and whether they may write (they signed in
// with a token of auth.tokens) or only read (auth.read_tokens).
type login struct {
	Name    string `json:"n"`
	Write   bool   `json:"w"`
	Expires int64  `json:"e"` // unix seconds
}

// sessionKey is the key that signs the sessions of one token: made from
// the token and this vigil's session secret (so a cookie is no test of a
// guessed token without the secret as well).
func sessionKey(secret []byte, token string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("vigil session v1\x00" + token))
	return mac.Sum(nil)
}

// sessionSecret is the secret sessions are signed with; nil until it is
// known (a replica reads it from NATS).
func (s *Server) sessionSecret() []byte { return s.opts.SessionSecret() }

func sign(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// cookieValue is a session, signed with its token's key.
func cookieValue(secret []byte, l login, token string) string {
	payload, _ := json.Marshal(l)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sign(sessionKey(secret, token), payload))
}

// secure reports whether the browser reached vigil over HTTPS: directly,
// or through a proxy that says so (a client that lies only makes its
// cookie stricter).
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// sessionOf is the request's session, if its cookie is signed with the
// key of a token still configured and has not expired. A session signed
// with a read token never writes, whatever it says.
func (s *Server) sessionOf(r *http.Request) (login, bool) {
	secret := s.sessionSecret()
	if len(secret) == 0 {
		return login{}, false
	}
	c, err := r.Cookie(secureSessionCookie)
	if err != nil {
		if c, err = r.Cookie(sessionCookie); err != nil {
			return login{}, false
		}
	}
	p, sig, ok := strings.Cut(c.Value, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil {
		return login{}, false
	}
	var ses login
	if json.Unmarshal(payload, &ses) != nil || s.opts.Now().Unix() >= ses.Expires {
		return login{}, false
	}
	for _, tok := range s.opts.Tokens {
		if hmac.Equal(mac, sign(sessionKey(secret, tok), payload)) {
			return ses, true
		}
	}
	for _, tok := range s.opts.ReadTokens {
		if hmac.Equal(mac, sign(sessionKey(secret, tok), payload)) {
			ses.Write = false
			return ses, true
		}
	}
	return login{}, false
}

// mayWrite says why a request may not write, or nil when it may: its
// Authorization header or its session (a browser that was given a read
// token for the read gate sends it with everything, beside the session).
func (s *Server) mayWrite(r *http.Request) error {
	err := s.authorize(r.Header.Get("Authorization"))
	if err != nil && len(s.opts.Tokens) > 0 {
		if ses, ok := s.sessionOf(r); ok && ses.Write {
			return nil
		}
	}
	return err
}

// signInNeeded reports whether this vigil has tokens to sign in with.
func (s *Server) signInNeeded() bool { return len(s.opts.Tokens) > 0 || len(s.opts.ReadTokens) > 0 }

// viewer is who looks at a page, for its header and its buttons.
func (s *Server) viewer(r *http.Request) templates.Viewer {
	v := templates.Viewer{SignIn: s.signInNeeded(), CanWrite: s.mayWrite(r) == nil}
	if _, ok := s.opts.Receivers.(Pushers); ok && s.opts.PushKey != nil && s.opts.PushKey() != "" {
		v.Push = v.CanWrite
	}
	if ses, ok := s.sessionOf(r); ok {
		v.Name = ses.Name
	}
	return v
}

// actor names who made a change from the page: the person signed in, or
// "anonymous" where writes are open.
func (s *Server) actor(r *http.Request) string {
	if ses, ok := s.sessionOf(r); ok {
		return ses.Name
	}
	return "anonymous"
}

func (s *Server) handleSignInForm(w http.ResponseWriter, r *http.Request) {
	s.renderSignIn(w, r, http.StatusOK, "")
}

func (s *Server) renderSignIn(w http.ResponseWriter, r *http.Request, status int, problem string) {
	p := s.page(r, "Sign in · vigil", 0, templates.ViewState{}, "")
	s.renderStatus(w, r, status, templates.SignInPage(p, templates.SignIn{Next: localPath(r.FormValue("next")), Problem: problem, Needed: s.signInNeeded()}))
}

// maxNameBytes bounds the name a person signs in as.
const maxNameBytes = 100

// handleSignIn exchanges a name and a token, sent by the sign-in form,
// for a session cookie, and goes back to the page it came from.
func (s *Server) handleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderSignIn(w, r, http.StatusBadRequest, "The form did not arrive whole; try again.")
		return
	}
	name := stream.Clip(strings.TrimSpace(r.PostForm.Get("name")), maxNameBytes)
	token := r.PostForm.Get("token")
	if !s.signInNeeded() {
		s.renderSignIn(w, r, http.StatusConflict, "")
		return
	}
	if len(s.sessionSecret()) == 0 {
		s.renderSignIn(w, r, http.StatusServiceUnavailable, "Signing in is not ready yet: this replica has not read the session key from NATS. Try again in a moment.")
		return
	}
	var write bool
	switch {
	case name == "":
		s.renderSignIn(w, r, http.StatusBadRequest, "Say who you are: your name goes on what you acknowledge and silence.")
		return
	case token != "" && oneOf(token, s.opts.Tokens):
		write = true
	case token != "" && oneOf(token, s.opts.ReadTokens):
	default:
		s.opts.Logger.Warn("sign-in refused: the token is not one of auth.tokens or auth.read_tokens", "name", name, "remote", r.RemoteAddr)
		s.renderSignIn(w, r, http.StatusUnauthorized, "That token is not one of this vigil's (auth.tokens, or auth.read_tokens to read only).")
		return
	}
	exp := s.opts.Now().Add(SessionLifetime)
	name2 := sessionCookie
	if secure(r) {
		name2 = secureSessionCookie
	}
	http.SetCookie(w, &http.Cookie{Name: name2, Value: cookieValue(s.sessionSecret(), login{Name: name, Write: write, Expires: exp.Unix()}, token),
		Path: "/", Expires: exp, MaxAge: int(SessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	s.opts.Logger.Info("signed in", "name", name, "writes", write, "remote", r.RemoteAddr)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

// handleSignOut ends the session in this browser.
// (A session signed out of stays valid until it expires, for whoever
// copied its cookie: sessions are signed, not kept. Removing the token
// from auth.tokens ends them all.)
func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(secureSessionCookie); err == nil || secure(r) {
		http.SetCookie(w, &http.Cookie{Name: secureSessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: true})
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// localPath is a path on this vigil to go back to, "/" for anything else:
// never another site. Browsers drop tabs and line breaks from a URL and
// read a backslash as a slash, so /<tab>/evil.example and /\evil.example
// are //evil.example to them: any control character or backslash is
// refused, and what is left must be a path alone.
func localPath(p string) string {
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "/"
	}
	return p
}

// sessionFile is where LoadSessionSecret keeps the secret, under --data.
const sessionFile = "session.key"

// LoadSessionSecret reads this vigil's session secret from dir, making it
// (readable by vigil's user only) the first time.
func LoadSessionSecret(dir string) ([]byte, error) {
	path := filepath.Join(dir, sessionFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, 32)
		rand.Read(b)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("session secret: %w", err)
		}
		return b, nil
	}
	if err != nil || len(b) < 32 {
		return nil, fmt.Errorf("session secret: %s is not vigil's (remove it to make a new one; everyone then signs in again)", path)
	}
	return b, nil
}
