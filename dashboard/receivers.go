package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"

	"vigil/alerts"
	"vigil/collector"
)

// MaxBodyBytes bounds every request body the API reads.
const MaxBodyBytes = 1 << 20

// Receivers is what the server needs of alerts.Receivers.
type Receivers interface {
	Create(ctx context.Context, in alerts.ReceiverInput) (alerts.Receiver, error)
	Update(ctx context.Context, id string, in alerts.ReceiverInput) (alerts.Receiver, error)
	Rotate(ctx context.Context, id string) (alerts.Receiver, error)
	Test(ctx context.Context, id string) (string, error)
	Delete(ctx context.Context, id string) error
	Retry(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (alerts.Receiver, error)
	List(ctx context.Context) ([]alerts.Receiver, error)
	Delivery(ctx context.Context, id string) (alerts.Delivery, error)
	Backlog(ctx context.Context, id string) (int, error)
	Deliveries(ctx context.Context, receiverID string, limit int) ([]alerts.Delivery, error)
}

var _ Receivers = (*alerts.Receivers)(nil)

// receiverRoutes serves the receivers API under /api/v1/receivers, and
// under /api/v1/subscriptions, its name before "receiver" was the one
// name, kept as an alias for clients written against it.
func (s *Server) receiverRoutes() {
	if s.opts.Receivers == nil {
		return
	}
	w := s.writeAuth
	for _, base := range []string{"/api/v1/receivers", "/api/v1/subscriptions"} {
		s.mux.HandleFunc("GET "+base, s.listReceivers)
		s.mux.HandleFunc("POST "+base, w(s.createReceiver))
		s.mux.HandleFunc("GET "+base+"/{id}", s.getReceiver)
		s.mux.HandleFunc("PUT "+base+"/{id}", w(s.updateReceiver))
		s.mux.HandleFunc("DELETE "+base+"/{id}", w(s.deleteReceiver))
		s.mux.HandleFunc("POST "+base+"/{id}/rotate-secret", w(s.rotateSecret))
		s.mux.HandleFunc("POST "+base+"/{id}/test", w(s.testReceiver))
		s.mux.HandleFunc("GET "+base+"/{id}/deliveries", s.listDeliveries)
	}
	s.mux.HandleFunc("GET /receivers", s.handleReceiversPage)
	s.mux.HandleFunc("POST /receivers/{id}/test", s.pageWrite(s.pageTest))
	s.mux.HandleFunc("GET /api/v1/deliveries/{id}", s.getDelivery)
	s.mux.HandleFunc("POST /api/v1/deliveries/{id}/retry", w(s.retryDelivery))
}

// writeAuth requires a bearer token, or a session signed in with one, for
// writes once tokens are configured.
func (s *Server) writeAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.mayWrite(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next(w, r)
	}
}

// mayReadSecrets reports whether a read may see webhook URLs whole: only
// with a valid token (so never when no tokens are configured, since reads
// are open to anyone then).
func (s *Server) mayReadSecrets(r *http.Request) bool {
	return len(s.opts.Tokens) > 0 && s.mayWrite(r) == nil
}

// redactReceiver hides what may hold a secret: the URL's path and query,
// and a body template (a service's key may be written in it).
func redactReceiver(r *alerts.Receiver) {
	r.URL = redactTarget(r.URL)
	if r.Template != "" {
		r.Template = collector.Redacted
	}
}

// redactTarget shows a webhook URL without what may be its secret: user
// and password, path (Slack and Discord keep their tokens there) and
// query. The scheme and host stay, to tell receivers apart.
func redactTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return collector.UnparseableURL
	}
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		shown.Path += collector.Redacted
	}
	return shown.String()
}

// decode reads a JSON body strictly (see decodeStrict), at most
// MaxBodyBytes, declared as application/json, or answers the error and
// returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decodeBody(w, r, v); err != nil {
		status, msg := statusOf(err)
		writeError(w, status, msg)
		return false
	}
	return true
}

// decodeBody reads a request's JSON body: declared as JSON, at most
// MaxBodyBytes, in time, strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if !isJSON(r) {
		return errMediaType
	}
	err := decodeStrict(http.MaxBytesReader(w, r.Body, MaxBodyBytes), v)
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return errTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errBodyTimeout
	}
	return &badJSON{err}
}

// badJSON is a body that is not the JSON asked for: a 400.
type badJSON struct{ err error }

// Error says what is wrong: the JSON itself, a field of the wrong kind,
// or a field's value (a duration without its unit), or an unknown field.
func (e *badJSON) Error() string {
	msg := strings.TrimPrefix(e.err.Error(), "json: ")
	var syntax *json.SyntaxError
	var kind *json.UnmarshalTypeError
	switch {
	case errors.As(e.err, &syntax) || errors.Is(e.err, io.ErrUnexpectedEOF) || errors.Is(e.err, io.EOF):
		return "bad JSON: " + msg
	case errors.As(e.err, &kind) && kind.Field != "":
		want := map[reflect.Kind]string{reflect.Slice: "a list", reflect.Array: "a list", reflect.String: "a string", reflect.Bool: "true or false",
			reflect.Map: "an object", reflect.Struct: "an object"}[kind.Type.Kind()]
		if want == "" {
			want = "a number"
		}
		return fmt.Sprintf("%s: want %s, not a JSON %s", kind.Field, want, kind.Value)
	}
	return msg
}
func (e *badJSON) Is(target error) bool { return target == errBadJSON }

// receiverView is a receiver as the API shows it: never its secret,
// except the response that creates or rotates it.
type receiverView struct {
	alerts.Receiver
	Secret  string `json:"secret,omitempty"`
	Backlog *int   `json:"backlog,omitempty"` // events waiting that vigil has not started sending (GET of one receiver)
}

func (s *Server) listReceivers(w http.ResponseWriter, r *http.Request) {
	rcvs, err := s.opts.Receivers.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if rcvs == nil {
		rcvs = []alerts.Receiver{}
	}
	if !s.mayReadSecrets(r) {
		for i := range rcvs {
			redactReceiver(&rcvs[i])
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Receivers []alerts.Receiver `json:"receivers"`
	}{rcvs})
}

func (s *Server) createReceiver(w http.ResponseWriter, r *http.Request) {
	var in alerts.ReceiverInput
	if !decode(w, r, &in) {
		return
	}
	rcv, err := s.opts.Receivers.Create(r.Context(), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/receivers/"+rcv.ID)
	writeJSON(w, http.StatusCreated, receiverView{Receiver: rcv, Secret: rcv.Secret})
}

func (s *Server) getReceiver(w http.ResponseWriter, r *http.Request) {
	rcv, err := s.opts.Receivers.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.opts.Receivers.Backlog(r.Context(), rcv.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.mayReadSecrets(r) {
		redactReceiver(&rcv)
	}
	writeJSON(w, http.StatusOK, receiverView{Receiver: rcv, Backlog: &n})
}

func (s *Server) updateReceiver(w http.ResponseWriter, r *http.Request) {
	var in alerts.ReceiverInput
	if !decode(w, r, &in) {
		return
	}
	rcv, err := s.opts.Receivers.Update(r.Context(), r.PathValue("id"), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rcv)
}

func (s *Server) deleteReceiver(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Receivers.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	rcv, err := s.opts.Receivers.Rotate(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, receiverView{Receiver: rcv, Secret: rcv.Secret})
}

func (s *Server) testReceiver(w http.ResponseWriter, r *http.Request) {
	id, err := s.opts.Receivers.Test(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/deliveries/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"delivery_id": id, "status_url": "/api/v1/deliveries/" + id})
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 1000")
			return
		}
		limit = n
	}
	id := r.PathValue("id")
	if _, err := s.opts.Receivers.Get(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	ds, err := s.opts.Receivers.Deliveries(r.Context(), id, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if ds == nil {
		ds = []alerts.Delivery{}
	}
	writeJSON(w, http.StatusOK, struct {
		Deliveries []alerts.Delivery `json:"deliveries"`
	}{ds})
}

func (s *Server) getDelivery(w http.ResponseWriter, r *http.Request) {
	d, err := s.opts.Receivers.Delivery(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Receivers.Retry(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"delivery_id": id, "status_url": "/api/v1/deliveries/" + id})
}
