package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"vigil/collector"
)

// Comparisons a rule can make.
var Ops = []string{">", ">=", "<", "<=", "==", "!="}

// Aggregations over a rule's window.
var Aggregates = []string{"last", "avg", "min", "max", "rate"}

// Bounds of a rule's durations.
const (
	MaxFor    = 7 * 24 * time.Hour // for and keep_firing_for
	MaxWindow = 24 * time.Hour     // window and no_data
)

// DefaultNoData is how long a source may be silent before its alerts
// are in the "nodata" state.
const DefaultNoData = time.Minute

// A Rule raises an alert when a metric of matching sources crosses a
// threshold.
type Rule struct {
	Name      string  `json:"name"`
	Source    string  `json:"source"` // glob, as in ?source=
	Metric    string  `json:"metric"` // glob: "fs.used_percent{*}" matches every filesystem
	Op        string  `json:"op"`
	Threshold float64 `json:"threshold"`
	// Clear, when set, is the value the metric must get back past for a
	// firing alert to resolve (hysteresis): with op ">" and threshold 90,
	// clear 80 resolves below 80, not below 90.
	Clear         *float64          `json:"clear,omitempty"`
	For           time.Duration     `json:"for"`             // pending this long before firing
	KeepFiringFor time.Duration     `json:"keep_firing_for"` // firing this long after it cleared
	Aggregate     string            `json:"aggregate"`       // over Window
	Window        time.Duration     `json:"window"`
	NoData        time.Duration     `json:"no_data"` // silence before "nodata"; DefaultNoData
	Severity      string            `json:"severity"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"` // text/template: .Rule .Source .Metric .Value .Threshold .Labels

	templates map[string]*template.Template
}

var ruleNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

// Validate checks a rule and prepares its templates. Errors name the
// field: "metric: …".
func (r *Rule) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !ruleNameRe.MatchString(r.Name) {
		bad("name: %q must start with a letter and hold letters, digits, '_', '.' or '-'", r.Name)
	}
	if r.Source == "" {
		r.Source = "*"
	}
	if r.Metric == "" {
		bad("metric: required")
	}
	if !slices.Contains(Ops, r.Op) {
		bad("op: %q is not one of %s", r.Op, strings.Join(Ops, " "))
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		bad("threshold: must be a finite number")
	}
	if r.Clear != nil {
		c := *r.Clear
		switch {
		case math.IsNaN(c) || math.IsInf(c, 0):
			bad("clear: must be a finite number")
		case (r.Op == ">" || r.Op == ">=") && c > r.Threshold, (r.Op == "<" || r.Op == "<=") && c < r.Threshold:
			bad("clear: %v is on the firing side of the threshold %v", c, r.Threshold)
		case r.Op == "==" || r.Op == "!=":
			bad("clear: only with <, <=, > or >=")
		}
	}
	if r.Aggregate == "" {
		r.Aggregate = "last"
	}
	if !slices.Contains(Aggregates, r.Aggregate) {
		bad("aggregate: %q is not one of %s", r.Aggregate, strings.Join(Aggregates, ", "))
	}
	if r.Aggregate != "last" && r.Window <= 0 {
		bad("window: %s needs a window", r.Aggregate)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		max  time.Duration
	}{{"for", r.For, MaxFor}, {"keep_firing_for", r.KeepFiringFor, MaxFor}, {"window", r.Window, MaxWindow}, {"no_data", r.NoData, MaxWindow}} {
		if d.v < 0 {
			bad("%s: %s must not be negative", d.name, d.v)
		} else if d.v > d.max {
			bad("%s: %s is outside 0s to %s", d.name, d.v, d.max)
		}
	}
	if r.NoData == 0 {
		r.NoData = DefaultNoData
	}
	if r.Severity == "" {
		r.Severity = "warning"
	}
	r.templates = map[string]*template.Template{}
	for k, text := range r.Annotations {
		t, err := template.New(k).Option("missingkey=zero").Parse(text)
		if err != nil {
			bad("annotations.%s: %v", k, err)
			continue
		}
		r.templates[k] = t
	}
	return errors.Join(errs...)
}

// breaches reports whether v is on the firing side of the threshold.
func (r *Rule) breaches(v float64) bool { return compare(v, r.Op, r.Threshold) }

// cleared reports whether a firing alert's value is back past the clear
// threshold (or the threshold without one).
func (r *Rule) cleared(v float64) bool {
	if r.Clear == nil {
		return !r.breaches(v)
	}
	return !compare(v, r.Op, *r.Clear)
}

func compare(v float64, op string, t float64) bool {
	switch op {
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "<":
		return v < t
	case "<=":
		return v <= t
	case "==":
		return v == t
	case "!=":
		return v != t
	}
	return false
}

// aggregate reduces the points of a window. ok is false without points
// (or, for rate, with fewer than two).
func aggregate(how string, pts []collector.Point) (float64, bool) {
	if len(pts) == 0 {
		return 0, false
	}
	switch how {
	case "avg":
		s := 0.0
		for _, p := range pts {
			s += p.V
		}
		return s / float64(len(pts)), true
	case "min", "max":
		m := pts[0].V
		for _, p := range pts[1:] {
			if (how == "min") == (p.V < m) {
				m = p.V
			}
		}
		return m, true
	case "rate":
		if len(pts) < 2 {
			return 0, false
		}
		first, last := pts[0], pts[len(pts)-1]
		dt := last.T.Sub(first.T).Seconds()
		if dt <= 0 {
			return 0, false
		}
		return (last.V - first.V) / dt, true
	}
	return pts[len(pts)-1].V, true
}

// annotate renders the rule's annotations for one alert.
func (r *Rule) annotate(a *Alert) map[string]string {
	if len(r.templates) == 0 {
		return nil
	}
	data := struct {
		Rule, Source, Metric string
		Value, Threshold     float64
		Labels               map[string]string
	}{r.Name, a.Source, a.Metric, a.Value, r.Threshold, r.Labels}
	out := make(map[string]string, len(r.templates))
	for k, t := range r.templates {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			out[k] = "(annotation error: " + err.Error() + ")"
			continue
		}
		out[k] = b.String()
	}
	return out
}

func f64(v float64) *float64 { return &v }

// DefaultRules watch hosts when no rules are configured.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "HostHighCPU", Source: "host/*", Metric: "cpu.percent", Op: ">", Threshold: 90, Clear: f64(80),
			For: 5 * time.Minute, Aggregate: "avg", Window: time.Minute, Severity: "warning",
			Annotations: map[string]string{"summary": `CPU on {{.Source}} at {{printf "%.0f" .Value}}% (over {{.Threshold}}%)`}},
		{Name: "HostHighMemory", Source: "host/*", Metric: "mem.used_percent", Op: ">", Threshold: 90, Clear: f64(85),
			For: 5 * time.Minute, Severity: "warning",
			Annotations: map[string]string{"summary": `Memory on {{.Source}} at {{printf "%.0f" .Value}}%`}},
		{Name: "HostDiskFull", Source: "host/*", Metric: "fs.used_percent{*}", Op: ">", Threshold: 90, Clear: f64(85),
			For: 10 * time.Minute, Severity: "critical",
			Annotations: map[string]string{"summary": `{{.Metric}} on {{.Source}} at {{printf "%.0f" .Value}}%`}},
		{Name: "HostHighLoad", Source: "host/*", Metric: "load.5_per_core", Op: ">", Threshold: 2, Clear: f64(1.5),
			For: 10 * time.Minute, Severity: "warning",
			Annotations: map[string]string{"summary": `Load on {{.Source}} at {{printf "%.1f" .Value}} per core`}},
	}
}

// DefaultAgentDownFor is how long a hub's upstream stays unreachable before
// AgentDown fires.
const DefaultAgentDownFor = time.Minute

// AgentDownRule fires when a hub cannot reach an agent for the time given:
// its source upstream/<name> reports upstream.up 0 while it is down.
func AgentDownRule(after time.Duration) Rule {
	return Rule{Name: "AgentDown", Source: "upstream/*", Metric: "upstream.up", Op: "<", Threshold: 1,
		For: after, Severity: "critical",
		Annotations: map[string]string{"summary": `{{.Source}} is unreachable: the hub gets nothing from this agent`}}
}
