package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
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

// sessionCookie names the cookie.
const sessionCookie = "vigil_session"

// SessionLifetime is how long a session lasts after signing in.
const SessionLifetime = 12 * time.Hour

// A login is who signed in, and whether they may write (they signed in
// with a token of auth.tokens) or only read (auth.read_tokens).
type login struct {
	Name    string `json:"n"`
	Write   bool   `json:"w"`
	Expires int64  `json:"e"` // unix seconds
}

// sessionKey is the key that signs the sessions of one token.
func sessionKey(token string) []byte {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("vigil session v1"))
	return mac.Sum(nil)
}

func sign(key, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	return mac.Sum(nil)
}

// cookieValue is a session, signed with its token's key.
func cookieValue(s login, token string) string {
	payload, _ := json.Marshal(s)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sign(sessionKey(token), payload))
}

// sessionOf is the request's session, if its cookie is signed with the
// key of a token still configured and has not expired. A session signed
// with a read token never writes, whatever it says.
func (s *Server) sessionOf(r *http.Request) (login, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return login{}, false
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
		if hmac.Equal(mac, sign(sessionKey(tok), payload)) {
			return ses, true
		}
	}
	for _, tok := range s.opts.ReadTokens {
		if hmac.Equal(mac, sign(sessionKey(tok), payload)) {
			ses.Write = false
			return ses, true
		}
	}
	return login{}, false
}

// mayWrite says why a request may not write, or nil when it may: its
// Authorization header, or else its session.
func (s *Server) mayWrite(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" && len(s.opts.Tokens) > 0 {
		if ses, ok := s.sessionOf(r); ok && ses.Write {
			return nil
		}
	}
	return s.authorize(h)
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
	w.WriteHeader(status)
	s.render(w, r, templates.SignInPage(p, templates.SignIn{Next: localPath(r.FormValue("next")), Problem: problem, Needed: s.signInNeeded()}))
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
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: cookieValue(login{Name: name, Write: write, Expires: exp.Unix()}, token),
		Path: "/", Expires: exp, MaxAge: int(SessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.opts.Logger.Info("signed in", "name", name, "writes", write, "remote", r.RemoteAddr)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

// handleSignOut ends the session in this browser.
func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// localPath is a path on this vigil to go back to, "/" for anything else:
// never another site (//evil.example, /\evil.example, https://…).
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}
