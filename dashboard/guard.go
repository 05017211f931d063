package dashboard

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"
)

// DefaultBodyTimeout bounds reading a request body: a client that sends
// its body slower than this is cut off and holds nothing.
const DefaultBodyTimeout = 5 * time.Second

// edge wraps the routes in what every request passes through, outermost
// first: a panic is logged and counted; the Host must be one vigil answers
// to (DNS rebinding); a read needs a token once read tokens are set; a
// body must arrive in time; a write must come from vigil's own origin
// (CSRF).
func (s *Server) edge(routes http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: vigil accepts writes only from its own pages and from clients that are not browsers")
	}))
	h := cop.Handler(routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverPanic(r)
		if msg, ok := s.hostAllowed(r.Host); !ok {
			writeError(w, http.StatusMisdirectedRequest, msg)
			return
		}
		if !s.readGate(w, r) {
			return
		}
		if r.ContentLength != 0 {
			// A deadline on the connection, not on the handler: it also
			// covers the body the server discards after a 401.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
		}
		h.ServeHTTP(w, r)
	})
}

// recoverPanic logs a handler's panic at error level with its stack and
// counts it, then lets net/http close the connection. A deliberate abort
// (a slow stream client) is not a crash.
func (s *Server) recoverPanic(r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v != http.ErrAbortHandler {
		s.panics.Inc()
		s.opts.Logger.Error("panic serving a request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
	}
	panic(http.ErrAbortHandler) // logged once, here; net/http aborts the connection quietly
}

// hostAllowed checks a request's Host against DNS rebinding: a page on an
// attacker's name that resolves to vigil's address sends that name. An IP
// address cannot be rebound, and loopback names are always this machine;
// on a loopback listener those are all that is accepted, plus
// server.allowed_hosts. Elsewhere any name is accepted unless
// allowed_hosts says which.
func (s *Server) hostAllowed(hostport string) (string, bool) {
	if hostport == "" {
		return "", true // HTTP/1.0 without Host: not a browser
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().IsLoopback() || !s.opts.Loopback {
			return "", true
		}
	} else if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return "", true
	}
	for _, pat := range s.opts.AllowedHosts {
		if pat == "*" || pat == host || (strings.HasPrefix(pat, "*.") && strings.HasSuffix(host, pat[1:])) {
			return "", true
		}
	}
	if !s.opts.Loopback && len(s.opts.AllowedHosts) == 0 {
		return "", true
	}
	msg := "host " + quote(hostport) + " is not allowed"
	if s.opts.Loopback {
		also := ""
		if len(s.opts.AllowedHosts) > 0 {
			also = " and to the names in server.allowed_hosts"
		}
		return msg + ": vigil listens on a loopback address and answers only to loopback names (localhost, 127.0.0.1, [::1])" + also +
			"; add this name to server.allowed_hosts if a proxy sends it", false
	}
	return msg + ": add it to server.allowed_hosts", false
}

// isJSON reports whether a request declares a JSON body.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}
