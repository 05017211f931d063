package alerts

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// A Matcher picks alerts by a label, as Alertmanager's do:
// severity="critical", team=~"ops|db", env!="dev", source!~"host/test-.*".
// A regular expression matches the whole value. The labels an alert is
// matched on are its own (the rule's, an upstream's) and alertname (its
// rule), severity, source and metric.
type Matcher struct {
	Name, Op, Value string
	re              *regexp.Regexp
}

var matcherRe = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$`)

// ParseMatcher reads one matcher; the value may be quoted ("…", with Go's
// escapes) or bare.
func ParseMatcher(s string) (Matcher, error) {
	p := matcherRe.FindStringSubmatch(s)
	if p == nil {
		return Matcher{}, fmt.Errorf("%q: want label=\"value\", with =, !=, =~ or !~", s)
	}
	m := Matcher{Name: p[1], Op: p[2], Value: p[3]}
	if strings.HasPrefix(m.Value, "=") || strings.HasPrefix(m.Value, "~") { // severity==x: a typo, not the value "=x"
		return Matcher{}, fmt.Errorf("%q: want label=\"value\", with =, !=, =~ or !~", s)
	}
	if !strings.HasPrefix(m.Value, `"`) && strings.ContainsAny(m.Value, ", \t\"{}") { // a=x,b=y: two matchers written as one
		return Matcher{}, fmt.Errorf("%q: quote a value with spaces or commas, and give one matcher an item", s)
	}
	if strings.HasPrefix(m.Value, `"`) {
		v, err := strconv.Unquote(m.Value)
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: the value's quotes do not close", s)
		}
		m.Value = v
	}
	if m.Op == "=~" || m.Op == "!~" {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: %v", s, err)
		}
		m.re = re
	}
	return m, nil
}

// Matches reports whether labels pass the matcher (a missing label is
// the empty value, as in Alertmanager).
func (m Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case "=":
		return v == m.Value
	case "!=":
		return v != m.Value
	case "=~":
		return m.re.MatchString(v)
	}
	return !m.re.MatchString(v)
}

func (m Matcher) String() string { return m.Name + m.Op + strconv.Quote(m.Value) }

// MatchLabels are the labels an alert is matched on.
func MatchLabels(a Alert) map[string]string {
	out := maps.Clone(a.Labels)
	if out == nil {
		out = map[string]string{}
	}
	out["alertname"], out["severity"], out["source"], out["metric"] = a.Rule, a.Severity, a.Source, a.Metric
	return out
}

// parsed keeps matchers parsed once: a receiver's are asked of every
// event.
var parsed sync.Map // string → Matcher

func matcher(s string) (Matcher, error) {
	if m, ok := parsed.Load(s); ok {
		return m.(Matcher), nil
	}
	m, err := ParseMatcher(s)
	if err == nil {
		parsed.Store(s, m)
	}
	return m, err
}

// Takes reports whether the receiver takes an alert's webhooks: every
// one of its matchers passes (none: every alert). An event that is not
// an alert's (a test) is taken.
func (r Receiver) Takes(labels map[string]string) bool {
	for _, s := range r.Match {
		m, err := matcher(s)
		if err != nil || (labels != nil && !m.Matches(labels)) {
			return false
		}
	}
	return true
}

// maxMatchers bounds a receiver's matchers.
const maxMatchers = 16

func checkMatch(match []string) error {
	if len(match) > maxMatchers {
		return fmt.Errorf("match: at most %d matchers", maxMatchers)
	}
	for _, s := range match {
		if _, err := ParseMatcher(s); err != nil {
			return fmt.Errorf("match: %w", err)
		}
	}
	return nil
}
