package collector

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Metrics are a sample's values by metric name: its Names, and a value
// for each, in their order. A Metrics is not changed once made, and is
// copied as a pointer and a slice.
//
// A hub takes a thousand agents' samples of about forty metrics a second.
// Held as a map, each sample was a map of forty entries made, hashed into,
// and looked up in by the ring, the history and the rules, and a
// kilobyte and a half for the collector. A source's samples share one
// Names while their names stay the same — as do every source's with the
// same names (internNames) — so the ring and the history, which keep a
// source's metrics in columns, take a sample's values by their places,
// not by looking up each name.
type Metrics struct {
	names  *Names
	values []float64
}

// Names are metric names in an order, each once: the names of a sample's
// Metrics. Not changed once made.
type Names struct {
	list  []string
	index map[string]int
}

// MetricsOf makes Metrics of a map, names sorted. Samples with the same
// names share their Names.
func MetricsOf(m map[string]float64) Metrics {
	if len(m) == 0 {
		return Metrics{}
	}
	names := slices.Sorted(maps.Keys(m))
	n := internNames(names)
	values := make([]float64, len(names))
	for i, name := range n.list {
		values[i] = m[name]
	}
	return Metrics{names: n, values: values}
}

// MetricsIn makes Metrics of names and their values, in that order, as
// a source sent them; a name that comes twice keeps its last value, as in
// a map. values is kept, and must not be changed.
func MetricsIn(names []string, values []float64) Metrics {
	if len(names) != len(values) {
		panic(fmt.Sprintf("collector.MetricsIn: %d names, %d values", len(names), len(values)))
	}
	var none *nameCache
	return none.metrics(names, values)
}

// Len is how many metrics there are.
func (m Metrics) Len() int { return len(m.values) }

// Get returns a metric's value, and whether the sample has it.
func (m Metrics) Get(name string) (float64, bool) {
	if m.names == nil {
		return 0, false
	}
	i, ok := m.names.index[name]
	if !ok {
		return 0, false
	}
	return m.values[i], true
}

// Value returns a metric's value, 0 when the sample does not have it.
func (m Metrics) Value(name string) float64 {
	v, _ := m.Get(name)
	return v
}

// Has says whether the sample has a metric.
func (m Metrics) Has(name string) bool {
	_, ok := m.Get(name)
	return ok
}

// All yields every metric and its value, in the Names' order.
func (m Metrics) All() iter.Seq2[string, float64] {
	return func(yield func(string, float64) bool) {
		if m.names == nil {
			return
		}
		for i, name := range m.names.list {
			if !yield(name, m.values[i]) {
				return
			}
		}
	}
}

// Names are the metrics' names: the same Names for samples with the
// same names in the same order, so that a reader that keeps a source's
// metrics by place can tell its places still hold (Names.List).
func (m Metrics) Names() *Names { return m.names }

// Values are the metrics' values, in the order of their Names: not to be
// changed.
func (m Metrics) Values() []float64 { return m.values }

// Map returns the metrics as a new map.
func (m Metrics) Map() map[string]float64 {
	out := make(map[string]float64, m.Len())
	for name, v := range m.All() {
		out[name] = v
	}
	return out
}

// MarshalJSON writes the metrics as a JSON object, names sorted, as
// encoding/json writes a map.
func (m Metrics) MarshalJSON() ([]byte, error) { return json.Marshal(m.Map()) }

// UnmarshalJSON reads a JSON object of names to numbers.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = Metrics{}
		return nil
	}
	var raw map[string]float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = MetricsOf(raw)
	return nil
}

// String is the metrics as JSON.
func (m Metrics) String() string {
	b, _ := m.MarshalJSON()
	return string(b)
}

// List is the names in order (none for nil): not to be changed.
func (n *Names) List() []string {
	if n == nil {
		return nil
	}
	return n.list
}

// Places are where a reader that keeps a source's metrics in columns —
// the ring, the history — has each name of the last Names it was given,
// so that the samples that share their Names are placed without a lookup
// a name. The zero value is ready to use.
type Places struct {
	seen *Names
	of   []int32 // the column of each of seen's names; -1: none
	have int     // seen's names that have a column
}

// Of returns the column in cols of each of n's names (-1: none), and how
// many have one. The slice is the Places' own, good until the next call.
func (p *Places) Of(n *Names, cols map[string]int) (of []int32, have int) {
	if n == p.seen && n != nil {
		return p.of, p.have
	}
	list := n.List()
	if cap(p.of) < len(list) {
		p.of = make([]int32, 0, len(list))
	}
	p.seen, p.of, p.have = n, p.of[:0], 0
	for _, name := range list {
		col, ok := cols[name]
		if !ok {
			col = -1
		} else {
			p.have++
		}
		p.of = append(p.of, int32(col))
	}
	return p.of, p.have
}

// Forget makes the next Of look the names up again: the columns changed.
func (p *Places) Forget() { p.seen = nil }

// same says whether names are the Names' own, in order.
func (n *Names) same(names []string) bool {
	return n != nil && slices.Equal(n.list, names)
}

// namesTable shares one Names among the sources whose samples have the
// same names in the same order (a hub's agents): one index of forty names,
// not one each. It is emptied when its keys reach maxTableBytes, which
// sources that invent names would otherwise grow without end; Names made
// before stay good, only not shared. Names of more than maxSharedNames
// (a scrape's thousands of series) are not shared.
var namesTable = struct {
	sync.Mutex
	m     map[string]*Names
	bytes int
}{m: map[string]*Names{}}

const (
	maxTableBytes  = 4 << 20
	maxSharedNames = 1000
)

// internNames returns the Names of names, in their order, or nil when a
// name comes twice. names are not kept.
func internNames(names []string) *Names {
	if len(names) > maxSharedNames {
		return newNames(names)
	}
	var key strings.Builder
	for _, name := range names {
		key.WriteString(strconv.Itoa(len(name)))
		key.WriteByte(':')
		key.WriteString(name)
	}
	k := key.String()
	namesTable.Lock()
	defer namesTable.Unlock()
	if n := namesTable.m[k]; n != nil {
		return n
	}
	n := newNames(names)
	if n == nil {
		return nil
	}
	if namesTable.bytes+len(k) > maxTableBytes {
		clear(namesTable.m)
		namesTable.bytes = 0
	}
	namesTable.m[k] = n
	namesTable.bytes += len(k)
	return n
}

// newNames makes Names of names, or nil when a name comes twice.
func newNames(names []string) *Names {
	n := &Names{list: slices.Clone(names), index: make(map[string]int, len(names))}
	for i, name := range n.list {
		n.index[name] = i
	}
	if len(n.index) < len(n.list) {
		return nil
	}
	return n
}
