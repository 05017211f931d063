package dashboard

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/stream"
)

type seriesList struct {
	Interval string                 `json:"interval"`
	Capacity int                    `json:"capacity"` // points kept per series
	Series   []collector.SeriesInfo `json:"series"`
}

func (s *Server) handleSeriesList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, seriesList{
		Interval: s.opts.Interval.String(),
		Capacity: s.opts.Store.Capacity(),
		Series:   s.opts.Store.Series(),
	})
}

type seriesPoints struct {
	Source string `json:"source"`
	Metric string `json:"metric"`
	Window string `json:"window"`
	// Points are [unix milliseconds, value] pairs, oldest first.
	Points [][2]float64 `json:"points"`
}

// DefaultWindow is the history a series request returns without ?window=.
const DefaultWindow = 5 * time.Minute

func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	source, metric, ok := s.opts.Store.SplitSeriesPath(path)
	if !ok {
		writeError(w, http.StatusNotFound, "no such series: "+path+" (GET /api/v1/series lists them)")
		return
	}
	window := DefaultWindow
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad window "+quote(v)+": want a positive duration such as 30s, 5m or 1h")
			return
		}
		window = d
	}
	pts, ok := s.opts.Store.Range(source, metric, s.opts.Now().Add(-window))
	if !ok {
		writeError(w, http.StatusNotFound, "no such series: "+path)
		return
	}
	out := seriesPoints{Source: source, Metric: metric, Window: window.String(), Points: make([][2]float64, len(pts))}
	for i, p := range pts {
		out.Points[i] = [2]float64{float64(p.T.UnixMilli()), p.V}
	}
	writeJSON(w, http.StatusOK, out)
}

// quote shows a client's input back in an error, cut to a readable length.
func quote(s string) string {
	return strconv.Quote(stream.Clip(s, 64))
}

func (s *Server) handleAlerts(w http.ResponseWriter, r *http.Request) {
	list := []alerts.Alert{}
	if s.opts.Alerts != nil {
		list = append(list, s.opts.Alerts.Active()...)
	}
	writeJSON(w, http.StatusOK, struct {
		Alerts []alerts.Alert `json:"alerts"`
	}{list})
}

// ackInput is the optional body of an acknowledgement.
type ackInput struct {
	By string `json:"by"`
}

// handleAck acknowledges an active alert: POST
// /api/v1/alerts/{fingerprint}/ack, with an optional {"by": "alice"}.
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	var in ackInput
	if r.ContentLength != 0 && !decode(w, r, &in) {
		return
	}
	a, err := s.ack(r.Context(), r.PathValue("fingerprint"), in.By)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) ack(ctx context.Context, fingerprint, by string) (alerts.Alert, error) {
	if s.opts.Alerts == nil {
		return alerts.Alert{}, alerts.ErrNotActive
	}
	return s.opts.Alerts.Ack(ctx, fingerprint, by)
}

// ruleView shows durations as text ("5m0s"), as they are written.
type ruleView struct {
	alerts.Rule
	For           string `json:"for"`
	KeepFiringFor string `json:"keep_firing_for"`
	Window        string `json:"window"`
	NoData        string `json:"no_data"`
}

func (s *Server) handleRules(w http.ResponseWriter, r *http.Request) {
	list := []ruleView{}
	if s.opts.Alerts != nil {
		for _, rule := range s.opts.Alerts.RuleList() {
			list = append(list, ruleView{Rule: rule, For: rule.For.String(), KeepFiringFor: rule.KeepFiringFor.String(),
				Window: rule.Window.String(), NoData: rule.NoData.String()})
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Rules []ruleView `json:"rules"`
	}{list})
}

// handleUpstreams lists the agents a hub follows; a vigil that is not a
// hub follows none.
func (s *Server) handleUpstreams(w http.ResponseWriter, r *http.Request) {
	list := []collector.UpstreamStatus{}
	if s.opts.Fleet != nil {
		list = append(list, s.opts.Fleet.Status()...)
	}
	writeJSON(w, http.StatusOK, struct {
		Upstreams []collector.UpstreamStatus `json:"upstreams"`
	}{list})
}
