package stream

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Event types.
const (
	TypeSample = "sample" // one source at one tick
	TypeSource = "source" // a source appeared, failed, recovered or went away
	TypeAlert  = "alert"  // a rule's state changed
	TypeReset  = "reset"  // the client's position was lost; carries a snapshot
)

// Types lists the event types a client may filter on.
var Types = []string{TypeSample, TypeSource, TypeAlert, TypeReset}

// Limits on a filter, so that a request cannot make every publish expensive.
const (
	MaxFilterPatterns = 32
	MaxPatternLen     = 256
)

// A Filter selects events by source and type. Its zero value selects every
// event. Reset events are always delivered.
type Filter struct {
	// Sources are glob patterns: '*' matches any run of characters,
	// slashes included, and '?' matches one character.
	Sources []string
	Types   []string
}

// ErrBadFilter is wrapped by every error ParseFilter returns.
var ErrBadFilter = errors.New("stream: bad filter")

// ParseFilter reads ?source= and ?type= from a query. Both may be repeated
// or hold comma-separated lists.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	for _, v := range q["source"] {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				return Filter{}, fmt.Errorf("%w: empty source pattern", ErrBadFilter)
			}
			if len(p) > MaxPatternLen {
				return Filter{}, fmt.Errorf("%w: source pattern longer than %d bytes", ErrBadFilter, MaxPatternLen)
			}
			f.Sources = append(f.Sources, p)
		}
	}
	if len(f.Sources) > MaxFilterPatterns {
		return Filter{}, fmt.Errorf("%w: more than %d source patterns", ErrBadFilter, MaxFilterPatterns)
	}
	for _, v := range q["type"] {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(Types, t) {
				return Filter{}, fmt.Errorf("%w: unknown event type %s (want one of %s)", ErrBadFilter, strconv.Quote(Clip(t, 64)), strings.Join(Types, ", "))
			}
			if !slices.Contains(f.Types, t) {
				f.Types = append(f.Types, t)
			}
		}
	}
	return f, nil
}

// Match reports whether the filter selects an event of the given type and
// source.
func (f Filter) Match(typ, source string) bool {
	if typ == TypeReset || typ == "" {
		return true
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, typ) {
		return false
	}
	if len(f.Sources) == 0 {
		return true
	}
	for _, p := range f.Sources {
		if Glob(p, source) {
			return true
		}
	}
	return false
}

// IsZero reports whether the filter selects everything.
func (f Filter) IsZero() bool { return len(f.Sources) == 0 && len(f.Types) == 0 }

// Glob reports whether s matches pattern, where '*' matches any run of
// characters (slashes included) and '?' matches exactly one character. It
// runs in O(len(pattern)·len(s)) time at worst, whatever the pattern.
func Glob(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			starP, starI = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case starP >= 0:
			starI++
			p, i = starP+1, starI
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
