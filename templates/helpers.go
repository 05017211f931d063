package templates

import (
	"strings"
)

func stateOr(s string) string {
	if s == "" {
		return "waiting"
	}
	return s
}

func lastValue(c Chart) string {
	if len(c.Values) == 0 {
		return "–"
	}
	return Format(c.Metric, c.Values[len(c.Values)-1])
}

// hiddenBy reports whether a filter hides a source; the page script applies
// the same rule as the user types.
func hiddenBy(filter, source string) bool {
	return filter != "" && !strings.Contains(strings.ToLower(source), strings.ToLower(filter))
}

func bandRange(i int) string {
	lo := 0.0
	if i > 0 {
		lo = HealthBands[i-1].Below
	}
	if i == len(HealthBands)-1 {
		return "(≥ " + ftoa(lo) + "% errors)"
	}
	return "(" + ftoa(lo) + "–" + ftoa(HealthBands[i].Below) + "%)"
}
