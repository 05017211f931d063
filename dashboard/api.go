package dashboard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"vigil/alerts"
	"vigil/collector"
	"vigil/history"
	"vigil/internal/decimal"
	"vigil/internal/duration"
	"vigil/stream"
	"vigil/templates"
)

type seriesList struct {
	Interval string                 `json:"interval"`
	Capacity int                    `json:"capacity"` // the most points a series keeps
	Series   []collector.SeriesInfo `json:"series"`
}

func (s *Server) handleSeriesList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, seriesList{
		Interval: s.opts.Interval.String(),
		Capacity: s.opts.Store.Capacity(),
		Series:   s.opts.Store.Series(),
	})
}

// History is what the series API reads of the past beyond the ring
// (history.DB).
type History interface {
	Query(ctx context.Context, source string, metrics []string, from, to time.Time, step time.Duration) (history.Result, error)
	Tiers() []history.Tier
}

type seriesPoints struct {
	Source string `json:"source"`
	Metric string `json:"metric"`
	From   string `json:"from"`
	To     string `json:"to"`
	Window string `json:"window"` // to - from
	// Step is the time between points: the sampling interval from the
	// ring, a tier's (or a whole number of them) from the history.
	Step string `json:"step"`
	// Store says where the points come from: "ring" (every sample of the
	// last minutes), "history" (each step's mean, with its min and max),
	// or "history+ring" (the ring's samples after the history's steps:
	// the ring is short after a restart).
	Store string `json:"store"`
	// Points are [unix milliseconds, value] pairs, oldest first: from the
	// history, each step's start and mean.
	Points [][2]float64 `json:"points"`
	Min    []float64    `json:"min,omitempty"` // from the history: each point's step's least value
	Max    []float64    `json:"max,omitempty"` // and its greatest
}

// DefaultWindow is the history a series request returns without ?window=
// or ?from=.
const DefaultWindow = 5 * time.Minute

// handleSeries answers GET /api/v1/series/{source}/{metric} with
// ?window= (back from now), or ?from= and ?to= (RFC 3339 or Unix seconds,
// as Prometheus' query API takes them; to defaults to now) and ?step=:
// from the ring while it holds from and no step longer than the
// history's first is asked, else from the history.
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	path := r.PathValue("path")
	source, metric, ok := s.opts.Store.SplitSeriesPath(path)
	if !ok {
		writeError(w, http.StatusNotFound, "no such series: "+path+" (GET /api/v1/series lists them)")
		return
	}
	from, to, step, err := s.seriesRange(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	got, err := s.points(r.Context(), source, []string{metric}, from, to, step)
	if errors.Is(err, history.ErrUnavailable) {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := seriesPoints{Source: source, Metric: metric, From: from.UTC().Format(time.RFC3339Nano), To: to.UTC().Format(time.RFC3339Nano),
		Window: to.Sub(from).String(), Step: got.step.String(), Store: got.store, Points: [][2]float64{},
		Min: got.min[metric], Max: got.max[metric]}
	for _, p := range got.series[metric] {
		out.Points = append(out.Points, [2]float64{float64(p.T.UnixMilli()), p.V})
	}
	writeJSON(w, http.StatusOK, out)
}

// pointSet is some of a source's series over a range, from one store.
type pointSet struct {
	store    string        // "ring" or "history"
	step     time.Duration // between points
	series   map[string][]templates.Point
	min, max map[string][]float64 // from the history: each point's step's least and greatest value
}

// ringPoints reads metrics of source over [from, to] from the ring, and
// says when the ring's first point of them is (to when it has none).
func (s *Server) ringPoints(source string, metrics []string, from, to time.Time) (pointSet, time.Time) {
	out := pointSet{store: "ring", step: s.opts.Interval, series: map[string][]templates.Point{}}
	ringStart := to
	for _, metric := range metrics {
		pts, _ := s.opts.Store.Range(source, metric, from)
		pts = upTo(pts, to)
		list := make([]templates.Point, 0, len(pts))
		for _, p := range pts {
			list = append(list, templates.Point{T: p.T, V: p.V})
		}
		out.series[metric] = list
		if len(list) > 0 && list[0].T.Before(ringStart) {
			ringStart = list[0].T
		}
	}
	return out, ringStart
}

// beforeRing puts the history's points of [from, ringStart) before the
// ring's in out: the ring is short after a restart, and a history that
// could not be read into it (VictoriaMetrics) still has those minutes.
func (s *Server) beforeRing(ctx context.Context, source string, metrics []string, from, ringStart time.Time, out pointSet) (pointSet, error) {
	res, err := s.opts.History.Query(ctx, source, metrics, from, ringStart, 0)
	if err != nil || len(res.Series) == 0 {
		return out, nil // the ring's is still an answer
	}
	merged := false
	for _, metric := range metrics {
		var list []templates.Point
		for _, a := range res.Series[metric] {
			if !a.T.Add(res.Step).After(ringStart) { // whole steps before the ring
				list = append(list, templates.Point{T: a.T, V: decimal.Significant(a.Mean(), 6)})
			}
		}
		if len(list) > 0 {
			out.series[metric] = append(list, out.series[metric]...)
			merged = true
		}
	}
	if merged {
		out.store = "history+ring"
	}
	return out, nil
}

// points reads metrics of source over [from, to]: from the ring while it
// holds from and no step longer than the history's first is asked, else
// from the history (each step's mean).
func (s *Server) points(ctx context.Context, source string, metrics []string, from, to time.Time, step time.Duration) (pointSet, error) {
	// The ring holds from if it is no more than an interval before the
	// ring's oldest place: a 10-minute range of a 10-minute ring, asked a
	// moment after its from was taken, is the ring's.
	ringFrom := s.opts.Now().Add(-time.Duration(s.opts.Store.Capacity()+1) * s.opts.Interval)
	if s.opts.History == nil || !from.Before(ringFrom) && step < s.opts.History.Tiers()[0].Step {
		out, ringStart := s.ringPoints(source, metrics, from, to)
		if s.opts.History != nil && ringStart.Sub(from) > 2*s.opts.Interval { // the ring starts late: after a restart
			return s.beforeRing(ctx, source, metrics, from, ringStart, out)
		}
		return out, nil
	}
	out := pointSet{series: map[string][]templates.Point{}}
	res, err := s.opts.History.Query(ctx, source, metrics, from, to, step)
	if err != nil {
		return out, err
	}
	out.store, out.step = "history", res.Step
	out.min, out.max = map[string][]float64{}, map[string][]float64{}
	for _, metric := range metrics {
		aggs := res.Series[metric]
		list := make([]templates.Point, len(aggs))
		lo, hi := make([]float64, len(aggs)), make([]float64, len(aggs))
		for i, a := range aggs {
			list[i] = templates.Point{T: a.T, V: decimal.Significant(a.Mean(), 6)}
			lo[i], hi[i] = a.Min, a.Max
		}
		out.series[metric], out.min[metric], out.max[metric] = list, lo, hi
	}
	return out, nil
}

// MaxSeriesRange bounds what a series request may ask for.
const MaxSeriesRange = 5 * 365 * 24 * time.Hour

// seriesRange reads a series request's range and step.
func (s *Server) seriesRange(q url.Values) (from, to time.Time, step time.Duration, err error) {
	now := s.opts.Now()
	to = now
	if v := q.Get("to"); v != "" {
		if to, err = parseTime(v); err != nil {
			return from, to, 0, fmt.Errorf("bad to %s: %v", quote(v), err)
		}
	}
	window := DefaultWindow
	switch v, f := q.Get("window"), q.Get("from"); {
	case v != "" && f != "":
		return from, to, 0, errors.New("give window or from, not both")
	case v != "":
		d, perr := duration.Parse(v)
		if perr != nil || d <= 0 {
			return from, to, 0, fmt.Errorf("bad window %s: want a positive duration such as 30s, 5m, 1h or 7d", quote(v))
		}
		window = d
		fallthrough
	case f == "":
		from = to.Add(-window)
	default:
		if from, err = parseTime(f); err != nil {
			return from, to, 0, fmt.Errorf("bad from %s: %v", quote(f), err)
		}
	}
	if !from.Before(to) {
		return from, to, 0, fmt.Errorf("from %s is not before to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if to.Sub(from) > MaxSeriesRange {
		return from, to, 0, fmt.Errorf("a range of %s: at most five years", to.Sub(from).Round(time.Hour))
	}
	if v := q.Get("step"); v != "" {
		if step, err = parseStep(v); err != nil {
			return from, to, 0, fmt.Errorf("bad step %s: %v", quote(v), err)
		}
	}
	return from, to, step, nil
}

// parseTime reads a time as Prometheus' API does: RFC 3339, or Unix
// seconds with a fraction.
func parseTime(v string) (time.Time, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, errors.New("out of range")
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, errors.New("want RFC 3339 (2026-12-01T03:12:00Z) or Unix seconds")
	}
	return t, nil
}

// parseStep reads a step: a duration (10s, 1m) or seconds (15).
func parseStep(v string) (time.Duration, error) {
	d, err := duration.Parse(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || math.IsNaN(f) || f > MaxSeriesRange.Seconds() {
			return 0, errors.New("want a duration such as 10s, 1m or 1d, or seconds")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
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

// handleTransitions answers GET /api/v1/alerts/transitions?source= with
// the transitions of that source's alerts over the range the series API
// takes (from, to or window), oldest first: what the charts mark.
func (s *Server) handleTransitions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	source := q.Get("source")
	if source == "" {
		writeError(w, http.StatusBadRequest, "give ?source= (GET /api/v1/series lists them)")
		return
	}
	from, to, _, err := s.seriesRange(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	marks, err := s.marks(r.Context(), source, from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Transitions []alerts.Mark `json:"transitions"`
	}{marks})
}

func (s *Server) marks(ctx context.Context, source string, from, to time.Time) ([]alerts.Mark, error) {
	if s.opts.Journal == nil {
		return []alerts.Mark{}, nil
	}
	return s.opts.Journal.Marks(ctx, source, from, to)
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
	if in.By == "" { // who signed in, when it is a person at the page
		if ses, ok := s.sessionOf(r); ok {
			in.By = ses.Name
		}
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
