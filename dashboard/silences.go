package dashboard

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"vigil/alerts"
	"vigil/templates"
)

// silenceRoutes serves the silences API under /api/v1/silences, and the
// page's buttons: acknowledge, silence an alert, expire a silence.
func (s *Server) silenceRoutes() {
	if s.opts.Alerts != nil {
		s.mux.HandleFunc("POST /alerts/{fingerprint}/ack", s.pageWrite(s.pageAck))
	}
	if s.opts.Silences == nil {
		return
	}
	w := s.writeAuth
	s.mux.HandleFunc("GET /api/v1/silences", s.listSilences)
	s.mux.HandleFunc("POST /api/v1/silences", w(s.createSilence))
	s.mux.HandleFunc("GET /api/v1/silences/{id}", s.getSilence)
	s.mux.HandleFunc("PUT /api/v1/silences/{id}", w(s.updateSilence))
	s.mux.HandleFunc("DELETE /api/v1/silences/{id}", w(s.expireSilence))
	if s.opts.Alerts != nil {
		s.mux.HandleFunc("POST /alerts/{fingerprint}/silence", s.pageWrite(s.pageSilence))
	}
	s.mux.HandleFunc("POST /silences/{id}/expire", s.pageWrite(s.pageExpire))
}

// silenceView is a silence as the API shows it: with its state now.
type silenceView struct {
	alerts.Silence
	State string `json:"state"`
}

func (s *Server) silenceView(sl alerts.Silence) silenceView {
	return silenceView{Silence: sl, State: sl.State(s.opts.Now())}
}

// listSilences lists the silences kept: active, then pending, then
// expired; ?state= keeps one of those.
func (s *Server) listSilences(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state != "" && state != alerts.SilenceActive && state != alerts.SilencePending && state != alerts.SilenceExpired {
		writeError(w, http.StatusBadRequest, "state: want active, pending or expired")
		return
	}
	list, err := alerts.ListSilences(r.Context(), s.opts.Silences, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []silenceView{}
	for _, sl := range list {
		if v := s.silenceView(sl); state == "" || v.State == state {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Silences []silenceView `json:"silences"`
	}{out})
}

// createSilence makes a silence; a person signed in is its author unless
// the body names one.
func (s *Server) createSilence(w http.ResponseWriter, r *http.Request) {
	in, ok := s.silenceInput(w, r)
	if !ok {
		return
	}
	sl, err := alerts.CreateSilence(r.Context(), s.opts.Silences, in, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Logger.Info("silence created", "id", sl.ID, "matchers", sl.Matchers, "ends_at", sl.EndsAt, "by", sl.CreatedBy)
	w.Header().Set("Location", "/api/v1/silences/"+sl.ID)
	writeJSON(w, http.StatusCreated, s.silenceView(sl))
}

// silenceInput reads a silence from a request's body: its author, unless
// the body names one, is who signed in.
func (s *Server) silenceInput(w http.ResponseWriter, r *http.Request) (alerts.SilenceInput, bool) {
	var in alerts.SilenceInput
	if !decode(w, r, &in) {
		return in, false
	}
	if strings.TrimSpace(in.CreatedBy) == "" {
		if ses, ok := s.sessionOf(r); ok {
			in.CreatedBy = ses.Name
		}
	}
	return in, true
}

func (s *Server) getSilence(w http.ResponseWriter, r *http.Request) {
	sl, err := alerts.FindSilence(r.Context(), s.opts.Silences, r.PathValue("id"), s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.silenceView(sl))
}

// updateSilence changes a silence (alerts.UpdateSilence): its answer is
// the silence as it is now, under a new id if its matchers changed while
// it was active.
func (s *Server) updateSilence(w http.ResponseWriter, r *http.Request) {
	in, ok := s.silenceInput(w, r)
	if !ok {
		return
	}
	sl, err := alerts.UpdateSilence(r.Context(), s.opts.Silences, r.PathValue("id"), in, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Logger.Info("silence changed", "id", r.PathValue("id"), "now", sl.ID, "matchers", sl.Matchers, "ends_at", sl.EndsAt, "by", sl.CreatedBy)
	writeJSON(w, http.StatusOK, s.silenceView(sl))
}

// expireSilence ends a silence now; it stays listed, expired, for
// alerts.SilenceRetention.
func (s *Server) expireSilence(w http.ResponseWriter, r *http.Request) {
	sl, err := alerts.ExpireSilence(r.Context(), s.opts.Silences, r.PathValue("id"), s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Logger.Info("silence expired", "id", sl.ID)
	writeJSON(w, http.StatusOK, s.silenceView(sl))
}

// pageWrite wraps a button's handler: a person who may not write is sent
// to sign in (and back); one who may is sent back to the page (or where
// do says) once the change is made, or shown why it was not.
func (s *Server) pageWrite(do func(r *http.Request) (to string, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		back := localPath(r.FormValue("next"))
		if err := s.mayWrite(r); err != nil {
			if s.signInNeeded() {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(back), http.StatusSeeOther)
				return
			}
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		to, err := do(r)
		if err != nil {
			status, msg := statusOf(err)
			if status == http.StatusInternalServerError {
				s.opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			s.renderStatus(w, r, status, templates.NoticePage(s.page(r, "Not done · vigil", 0, templates.ViewState{}, ""), msg, back))
			return
		}
		http.Redirect(w, r, cmp.Or(to, back), http.StatusSeeOther)
	}
}

func (s *Server) pageAck(r *http.Request) (string, error) {
	_, err := s.ack(r.Context(), r.PathValue("fingerprint"), s.actor(r))
	return "", err
}

// DefaultPageSilence is how long the page's "silence" button silences.
const DefaultPageSilence = time.Hour

// pageSilence silences one alert, by its rule, source and metric, for
// the form's "for" (1 h by default), with the form's comment.
func (s *Server) pageSilence(r *http.Request) (string, error) {
	fp := r.PathValue("fingerprint")
	var a *alerts.Alert
	for _, x := range s.opts.Alerts.Active() {
		if x.Fingerprint == fp {
			a = &x
			break
		}
	}
	if a == nil {
		return "", alerts.ErrNotActive
	}
	d := DefaultPageSilence
	if f := r.PostForm.Get("for"); f != "" {
		v, err := time.ParseDuration(f)
		if err != nil {
			return "", fmt.Errorf("%w: for: %v", alerts.ErrInvalid, err)
		}
		d = v
	}
	comment := strings.TrimSpace(r.PostForm.Get("comment"))
	if comment == "" {
		comment = "silenced from the page"
	}
	in := alerts.SilenceInput{Matchers: []string{
		"alertname=" + strconv.Quote(a.Rule), "source=" + strconv.Quote(a.Source), "metric=" + strconv.Quote(a.Metric)},
		Duration: alerts.Duration(d), CreatedBy: s.actor(r), Comment: comment}
	sl, err := alerts.CreateSilence(r.Context(), s.opts.Silences, in, s.opts.Now())
	if err == nil {
		s.opts.Logger.Info("silence created", "id", sl.ID, "matchers", sl.Matchers, "ends_at", sl.EndsAt, "by", sl.CreatedBy)
	}
	return "", err
}

func (s *Server) pageExpire(r *http.Request) (string, error) {
	sl, err := alerts.ExpireSilence(r.Context(), s.opts.Silences, r.PathValue("id"), s.opts.Now())
	if err == nil {
		s.opts.Logger.Info("silence expired", "id", sl.ID, "by", s.actor(r))
	}
	return "", err
}
