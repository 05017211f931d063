package dashboard

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
)

// authorize says why an Authorization header value may not write, or nil
// when it may: any value when no tokens are configured and reads are
// open; with read tokens only, nothing may write.
func (s *Server) authorize(header string) error {
	if len(s.opts.Tokens) == 0 {
		if len(s.opts.ReadTokens) > 0 {
			return errors.New("writes need a token of auth.tokens, and this vigil has only read tokens")
		}
		return nil
	}
	if header == "" {
		return errors.New("this request needs Authorization: Bearer <token> (auth.tokens)")
	}
	tok, err := tokenOf(header)
	if err != nil {
		return err
	}
	if !oneOf(tok, s.opts.Tokens) {
		return errors.New("the token is not one of auth.tokens")
	}
	return nil
}

// authorizeRead says why a request may not read, or nil when it may:
// reads are open unless read tokens are set; then a read or write token
// is needed.
func (s *Server) authorizeRead(header string) error {
	if len(s.opts.ReadTokens) == 0 {
		return nil
	}
	if header == "" {
		return errors.New("reading needs a token: Authorization: Bearer <token> (auth.read_tokens)")
	}
	tok, err := tokenOf(header)
	if err != nil {
		return err
	}
	if !oneOf(tok, s.opts.ReadTokens) && !oneOf(tok, s.opts.Tokens) {
		return errors.New("the token is not one of auth.read_tokens or auth.tokens")
	}
	return nil
}

// mayRead says why a request may not read, or nil when it may: a read or
// write token, or a session without an Authorization header.
func (s *Server) mayRead(r *http.Request) error {
	h := r.Header.Get("Authorization")
	err := s.authorizeRead(h)
	if err != nil && h == "" {
		if _, ok := s.sessionOf(r); ok {
			return nil
		}
	}
	return err
}

// openToAll are the paths anyone may read: health checks for load
// balancers, the page's static files and the sign-in form (no data in
// them).
func openToAll(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/login" || path == "/logout" || strings.HasPrefix(path, "/static/")
}

// readGate refuses a read without a read token or a session, once read
// tokens are set. Browsers are asked for Basic credentials, the token as
// the password (or sign in at /login).
func (s *Server) readGate(w http.ResponseWriter, r *http.Request) bool {
	if openToAll(r.URL.Path) || s.isRPC(r.URL.Path) { // the RPCs answer in their own protocol (rpc.go)
		return true
	}
	if err := s.mayRead(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="vigil", charset="UTF-8"`)
		if r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			// A person at a browser that asks for the token as a password:
			// who cancels that prompt sees the way to sign in instead.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Sign in · vigil</title>`+
				`<p>This vigil needs a token to read (auth.read_tokens). <a href="/login?next=%s">Sign in</a>, or give the token as the password.</p></html>`,
				html.EscapeString(url.QueryEscape(localPath(r.URL.RequestURI()))))
			return false
		}
		writeError(w, http.StatusUnauthorized, err.Error())
		return false
	}
	return true
}

// tokenOf reads the token of "Bearer <token>" (the scheme is
// case-insensitive, RFC 7235) or of Basic credentials, as the password.
func tokenOf(header string) (string, error) {
	scheme, rest, _ := strings.Cut(header, " ")
	rest = strings.TrimLeft(rest, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && rest != "":
		return rest, nil
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if _, pw, ok := strings.Cut(string(b), ":"); err == nil && ok {
			return pw, nil
		}
	}
	return "", errors.New("Authorization must be Bearer <token>, or Basic with the token as the password")
}

// oneOf compares a token with each of the tokens in constant time.
func oneOf(tok string, tokens []string) bool {
	ok := false
	for _, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(t)) == 1 {
			ok = true
		}
	}
	return ok
}
