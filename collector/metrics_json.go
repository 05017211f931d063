package collector

import (
	"encoding/json"
	"errors"
	"strconv"
	"unique"
)

// errNotMetrics is a metrics object that is not {"name": number, ...}.
var errNotMetrics = errors.New(`metrics: want an object of "name": number`)

// A nameCache keeps the names an agent sends — its metrics', its event
// types', its sources' — so that the forty names of each sample are not
// forty new strings each second. An agent sends its names in the same
// order every time: the cache keeps the order of the last event and
// compares each name with the one at its place there, which a hub's
// thousand caches make much cheaper than a lookup in a map. A name not
// at its place is interned (unique.Make), and the cache holds its handle,
// which keeps it interned: a hub's agents send the same names, which are
// then one string for all of them, not a map and forty strings for each
// (5 MB of a hub of 1,000 agents).
//
// The cache also keeps whether each name is one a hub takes for a
// metric's (metricName), so that a hub checks a name once, not forty
// times a second: odd says a name of the event is not, or was not read
// through the cache.
type nameCache struct {
	order []unique.Handle[string] // the last event's names, in order
	ok    []bool                  // metricName of each, a byte, not a word beside each handle
	next  int                     // the place of the next name in order
	odd   bool
	names *Names // the last sample's metrics' names
}

// maxNames bounds a cache: an agent that invents names does not grow it
// for ever.
const maxNames = 10000

// begin starts an event's names.
func (c *nameCache) begin() {
	if c != nil {
		c.next, c.odd = 0, false
	}
}

// checked says whether every name of the event so far was read through
// the cache and is one a hub takes for a metric's.
func (c *nameCache) checked() bool { return c != nil && !c.odd }

// name returns b as a string, the cached one when seen before.
func (c *nameCache) name(b []byte) string {
	if c == nil {
		return string(b)
	}
	i := c.next
	c.next++
	if i < len(c.order) {
		if s := c.order[i].Value(); s == string(b) {
			c.odd = c.odd || !c.ok[i]
			return s
		}
	}
	h := unique.Make(string(b))
	ok := metricName(h.Value())
	c.odd = c.odd || !ok
	switch {
	case i < len(c.order):
		c.order[i], c.ok[i] = h, ok
	case i == len(c.order) && i < maxNames:
		c.order, c.ok = append(c.order, h), append(c.ok, ok)
	}
	return h.Value()
}

// parseMetrics reads a sample's metrics — a JSON object of names to
// numbers. It is what encoding/json would make of it (the tests compare
// the two), without reflection: on a hub, decoding agents' metrics is
// most of the work. compact says raw has no whitespace.
func parseMetrics(raw []byte, names *nameCache) (m Metrics, compact bool, err error) {
	names.begin()
	p := metricsParser{b: raw, compact: true}
	p.space()
	m, ok := p.metrics(names)
	if !ok {
		return Metrics{}, false, errNotMetrics
	}
	return m, p.end(), p.err()
}

// metrics reads an object of names to numbers.
func (p *metricsParser) metrics(names *nameCache) (Metrics, bool) {
	if !p.eat('{') {
		return Metrics{}, false
	}
	var buf [64]string // a sample's names as read: on the stack, not a buffer an agent
	keys := buf[:0]
	var values []float64
	if names != nil && names.names != nil {
		values = make([]float64, 0, len(names.names.list))
	}
	p.space()
	if p.eat('}') {
		return Metrics{}, true
	}
	for {
		p.space()
		key, ok := p.str(names)
		if !ok {
			return Metrics{}, false
		}
		p.space()
		if !p.eat(':') {
			return Metrics{}, false
		}
		p.space()
		v, ok := p.number()
		if !ok {
			return Metrics{}, false
		}
		keys, values = append(keys, key), append(values, v)
		p.space()
		if p.eat(',') {
			continue
		}
		if !p.eat('}') {
			return Metrics{}, false
		}
		return names.metrics(keys, values), true
	}
}

// metrics makes Metrics of a sample's names and values as read: the last
// sample's Names when its names are the same, in the same order (as an
// agent sends them every second).
func (c *nameCache) metrics(keys []string, values []float64) Metrics {
	if c != nil && c.names.same(keys) {
		return Metrics{names: c.names, values: values}
	}
	n := internNames(keys)
	if n == nil { // a name twice: its last value, as encoding/json takes it
		m := make(map[string]float64, len(keys))
		for i, k := range keys {
			m[k] = values[i]
		}
		return MetricsOf(m)
	}
	if c != nil {
		c.names = n
	}
	return Metrics{names: n, values: values}
}

// fastSample reads an agent's event as vigil writes a sample with no more
// than metrics — {"seq":…,"type":"…","ts":"…","source":"…","metrics":{…}},
// in that order, without space — which is nearly all a hub reads, without
// reflection. ok is false for any other event, which encoding/json reads.
func fastSample(data []byte, names *nameCache) (ev agentEvent, ok bool) {
	names.begin()
	p := metricsParser{b: data, compact: true}
	if !p.lit(`{"seq":`) {
		return ev, false
	}
	start := p.i
	if !p.digits() || data[start] == '0' && p.i > start+1 { // JSON has no leading zeros
		return ev, false
	}
	seq, err := strconv.ParseUint(string(data[start:p.i]), 10, 64)
	if err != nil || !p.lit(`,"type":`) {
		return ev, false
	}
	if ev.Type, ok = p.str(names); !ok || !p.lit(`,"ts":`) {
		return ev, false
	}
	start = p.i
	if _, ok = p.str(nil); !ok || ev.TS.UnmarshalJSON(data[start:p.i]) != nil || !p.lit(`,"source":`) {
		return ev, false
	}
	if ev.Source, ok = p.str(names); !ok || !p.lit(`,"metrics":`) {
		return ev, false
	}
	start = p.i
	if ev.Metrics, ok = p.metrics(names); !ok || !p.eat('}') || p.i != len(data) || !p.compact {
		return agentEvent{}, false
	}
	ev.Seq, ev.RawMetrics, ev.compact = seq, data[start:p.i-1], true
	return ev, true
}

// lit reads s as it is.
func (p *metricsParser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

type metricsParser struct {
	b       []byte
	i       int
	compact bool
	bad     bool
}

func (p *metricsParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
			p.compact = false
		default:
			return
		}
	}
}

func (p *metricsParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end: nothing but space may follow the object.
func (p *metricsParser) end() bool {
	p.space()
	if p.i != len(p.b) {
		p.bad = true
	}
	return p.compact
}

func (p *metricsParser) err() error {
	if p.bad {
		return errNotMetrics
	}
	return nil
}

// str reads a JSON string; one with escapes is read by encoding/json.
func (p *metricsParser) str(names *nameCache) (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := names.name(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			if names != nil {
				names.odd = true // not through the cache: acceptable reads it
			}
			return p.slowStr(start - 1)
		}
		p.i++
	}
	return "", false
}

// slowStr reads the string starting at its quote at from with
// encoding/json: escapes, and non-ASCII text, which must be valid UTF-8
// (invalid bytes become U+FFFD, as encoding/json makes them).
func (p *metricsParser) slowStr(from int) (string, bool) {
	end := from + 1
	for end < len(p.b) {
		if p.b[end] == '\\' {
			end += 2
			continue
		}
		if p.b[end] == '"' {
			break
		}
		end++
	}
	if end >= len(p.b) {
		return "", false
	}
	var s string
	if json.Unmarshal(p.b[from:end+1], &s) != nil {
		return "", false
	}
	p.i = end + 1
	return s, true
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// or null, which encoding/json reads as 0.
func (p *metricsParser) number() (float64, bool) {
	if len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "null" {
		p.i += 4
		return 0, true
	}
	start := p.i
	p.eat('-')
	switch {
	case p.eat('0'):
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return 0, false
	}
	if p.eat('.') && !p.digits() {
		return 0, false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if !p.digits() {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
	if err != nil { // out of range: encoding/json refuses it too
		return 0, false
	}
	return v, true
}

func (p *metricsParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
