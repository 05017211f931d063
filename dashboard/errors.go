package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"vigil/alerts"
	"vigil/history"
	"vigil/stream"
)

// errorBody is every error answer: {"error": "…"}.
type errorBody struct {
	Error string `json:"error"`
}

// Errors of the HTTP edge itself.
var (
	errMediaType   = errors.New("the body must be JSON: send Content-Type: application/json")
	errTooLarge    = errors.New("body larger than 1 MiB")
	errBodyTimeout = errors.New("the body did not arrive in time")
	errBadJSON     = errors.New("bad JSON")
	errNoAlerting  = errors.New("no pending, firing or nodata alert has that fingerprint (GET /api/v1/alerts lists them)")
)

// statuses maps the errors a client can cause to the status it gets, in
// one place. msg, when set, replaces the error's own text; otherwise the
// text is shown without its package prefix. An error not listed here is a
// 500 with "internal error", and is logged.
var statuses = []struct {
	err    error
	status int
	msg    string
}{
	{stream.ErrBadFilter, http.StatusBadRequest, ""},
	{stream.ErrClosed, http.StatusServiceUnavailable, "shutting down"},
	{alerts.ErrInvalid, http.StatusBadRequest, ""},
	{alerts.ErrNotFound, http.StatusNotFound, ""},
	{alerts.ErrConfigured, http.StatusConflict, ""},
	{alerts.ErrNotActive, http.StatusNotFound, errNoAlerting.Error()},
	{alerts.ErrNotDead, http.StatusConflict, ""},
	{alerts.ErrStore, http.StatusServiceUnavailable, ""},
	{alerts.ErrNotLeader, http.StatusServiceUnavailable, "another replica evaluates the alerts now; acknowledge there (cluster.name in its /readyz), or try again"},
	{history.ErrUnavailable, http.StatusBadGateway, ""},
	{errMediaType, http.StatusUnsupportedMediaType, ""},
	{errTooLarge, http.StatusRequestEntityTooLarge, ""},
	{errBodyTimeout, http.StatusRequestTimeout, ""},
	{errBadJSON, http.StatusBadRequest, ""},
}

// statusOf is the status and the message safe to show for an error.
func statusOf(err error) (int, string) {
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			if s.msg != "" {
				return s.status, s.msg
			}
			return s.status, shown(err)
		}
	}
	return http.StatusInternalServerError, "internal error"
}

// shown is an error's text without the "package: " prefix of its sentinel.
func shown(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"stream: ", "alerts: ", "invalid: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

// fail answers a request with an error: its status from statuses, and a
// 500 for anything unforeseen, which is logged with the request.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusOf(err)
	if status == http.StatusInternalServerError {
		s.opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, msg)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
