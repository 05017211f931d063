package dashboard

import (
	"context"
	"net/http"
	"strings"

	"vigil/alerts"
)

// Pushers are the receivers a browser subscribes itself as, for Web Push
// (alerts.Receivers).
type Pushers interface {
	Subscribe(ctx context.Context, in alerts.PushInput) (alerts.Receiver, error)
	Unsubscribe(ctx context.Context, endpoint string) error
}

// pushRoutes serves what the page's "Notify me" needs: the key a browser
// subscribes with, and its subscription.
func (s *Server) pushRoutes() {
	p, ok := s.opts.Receivers.(Pushers)
	if !ok || s.opts.PushKey == nil {
		return
	}
	s.mux.HandleFunc("GET /api/v1/push/key", func(w http.ResponseWriter, r *http.Request) {
		key := s.opts.PushKey()
		if key == "" {
			writeError(w, http.StatusServiceUnavailable, "the web push keys are not read yet (a replica reads them from NATS)")
			return
		}
		writeJSON(w, http.StatusOK, struct {
			PublicKey string `json:"public_key"`
		}{key})
	})
	s.mux.HandleFunc("POST /api/v1/push/subscriptions", s.writeAuth(func(w http.ResponseWriter, r *http.Request) {
		var in alerts.PushInput
		if !decode(w, r, &in) {
			return
		}
		if strings.TrimSpace(in.Description) == "" {
			in.Description = "the browser of " + s.actor(r)
		}
		rcv, err := p.Subscribe(r.Context(), in)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.opts.Logger.Info("browser subscribed to pushes", "receiver", rcv.ID, "by", s.actor(r), "match", rcv.Match)
		redactReceiver(&rcv) // the endpoint is the browser's credential
		writeJSON(w, http.StatusCreated, rcv)
	}))
	s.mux.HandleFunc("DELETE /api/v1/push/subscriptions", s.writeAuth(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Endpoint string `json:"endpoint"`
		}
		if !decode(w, r, &in) {
			return
		}
		if err := p.Unsubscribe(r.Context(), in.Endpoint); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}
