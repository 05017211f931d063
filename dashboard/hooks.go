package dashboard

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"vigil/alerts"
	"vigil/collector"
)

// MaxBodyBytes bounds every request body the API reads.
const MaxBodyBytes = 1 << 20

// Hooks is what the server needs of alerts.Hooks and the outbox.
type Hooks interface {
	Create(ctx context.Context, in alerts.SubscriptionInput) (alerts.Subscription, error)
	Update(ctx context.Context, id string, in alerts.SubscriptionInput) (alerts.Subscription, error)
	Rotate(ctx context.Context, id string) (alerts.Subscription, error)
	Test(ctx context.Context, id string) (string, error)
	Delete(ctx context.Context, id string) error
	Retry(ctx context.Context, id string) error
	Subscription(ctx context.Context, id string) (alerts.Subscription, error)
	Subscriptions(ctx context.Context) ([]alerts.Subscription, error)
	Delivery(ctx context.Context, id string) (alerts.Delivery, error)
	Backlog(ctx context.Context, id string) (int, error)
	Deliveries(ctx context.Context, subscriptionID string, limit int) ([]alerts.Delivery, error)
}

func (s *Server) hookRoutes() {
	if s.opts.Hooks == nil {
		return
	}
	w := s.writeAuth
	s.mux.HandleFunc("GET /api/v1/subscriptions", s.listSubscriptions)
	s.mux.HandleFunc("POST /api/v1/subscriptions", w(s.createSubscription))
	s.mux.HandleFunc("GET /api/v1/subscriptions/{id}", s.getSubscription)
	s.mux.HandleFunc("PUT /api/v1/subscriptions/{id}", w(s.updateSubscription))
	s.mux.HandleFunc("DELETE /api/v1/subscriptions/{id}", w(s.deleteSubscription))
	s.mux.HandleFunc("POST /api/v1/subscriptions/{id}/rotate-secret", w(s.rotateSecret))
	s.mux.HandleFunc("POST /api/v1/subscriptions/{id}/test", w(s.testSubscription))
	s.mux.HandleFunc("GET /api/v1/subscriptions/{id}/deliveries", s.listDeliveries)
	s.mux.HandleFunc("GET /api/v1/deliveries/{id}", s.getDelivery)
	s.mux.HandleFunc("POST /api/v1/deliveries/{id}/retry", w(s.retryDelivery))
}

// writeAuth requires a bearer token for writes once tokens are configured.
func (s *Server) writeAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			writeError(w, http.StatusUnauthorized, "this request needs Authorization: Bearer <token> (auth.tokens)")
			return
		}
		next(w, r)
	}
}

// authorized reports whether an Authorization header value ("Bearer
// <token>"; the scheme is case-insensitive, RFC 7235) may write: any value
// when no tokens are configured.
func (s *Server) authorized(header string) bool {
	if len(s.opts.Tokens) == 0 {
		return true
	}
	scheme, got, ok := strings.Cut(header, " ")
	ok = ok && strings.EqualFold(scheme, "Bearer")
	got = strings.TrimLeft(got, " ")
	valid := false
	for _, t := range s.opts.Tokens {
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
			valid = true
		}
	}
	return valid
}

// mayReadSecrets reports whether a read may see webhook URLs whole: only
// with a valid token (so never when no tokens are configured, since reads
// are open to anyone then).
func (s *Server) mayReadSecrets(r *http.Request) bool {
	return len(s.opts.Tokens) > 0 && s.authorized(r.Header.Get("Authorization"))
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

func (e *badJSON) Error() string        { return "bad JSON: " + strings.TrimPrefix(e.err.Error(), "json: ") }
func (e *badJSON) Is(target error) bool { return target == errBadJSON }

// subscriptionView is a subscription as the API shows it: never its secret,
// except the response that creates or rotates it.
type subscriptionView struct {
	alerts.Subscription
	Secret  string `json:"secret,omitempty"`
	Backlog *int   `json:"backlog,omitempty"` // events waiting that vigil has not started sending (GET of one subscription)
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := s.opts.Hooks.Subscriptions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if subs == nil {
		subs = []alerts.Subscription{}
	}
	if !s.mayReadSecrets(r) {
		for i := range subs {
			subs[i].URL = redactTarget(subs[i].URL)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Subscriptions []alerts.Subscription `json:"subscriptions"`
	}{subs})
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	var in alerts.SubscriptionInput
	if !decode(w, r, &in) {
		return
	}
	sub, err := s.opts.Hooks.Create(r.Context(), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/subscriptions/"+sub.ID)
	writeJSON(w, http.StatusCreated, subscriptionView{Subscription: sub, Secret: sub.Secret})
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := s.opts.Hooks.Subscription(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.opts.Hooks.Backlog(r.Context(), sub.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.mayReadSecrets(r) {
		sub.URL = redactTarget(sub.URL)
	}
	writeJSON(w, http.StatusOK, subscriptionView{Subscription: sub, Backlog: &n})
}

func (s *Server) updateSubscription(w http.ResponseWriter, r *http.Request) {
	var in alerts.SubscriptionInput
	if !decode(w, r, &in) {
		return
	}
	sub, err := s.opts.Hooks.Update(r.Context(), r.PathValue("id"), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Hooks.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) {
	sub, err := s.opts.Hooks.Rotate(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, subscriptionView{Subscription: sub, Secret: sub.Secret})
}

func (s *Server) testSubscription(w http.ResponseWriter, r *http.Request) {
	id, err := s.opts.Hooks.Test(r.Context(), r.PathValue("id"))
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
	if _, err := s.opts.Hooks.Subscription(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	ds, err := s.opts.Hooks.Deliveries(r.Context(), id, limit)
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
	d, err := s.opts.Hooks.Delivery(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Hooks.Retry(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"delivery_id": id, "status_url": "/api/v1/deliveries/" + id})
}
