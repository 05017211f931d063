package collector

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// TestMetrics: a sample's metrics read as the map they were made of, in
// JSON as encoding/json writes the map, and back.
func TestMetrics(t *testing.T) {
	in := map[string]float64{"cpu.percent": 12.5, "fs.used_percent{mount=/}": 1e-7, "a<b": -3, "load.1": 0}
	m := MetricsOf(in)
	if m.Len() != len(in) || !maps.Equal(m.Map(), in) || !slices.IsSorted(m.Names().List()) {
		t.Fatalf("MetricsOf(%v) = %v", in, m)
	}
	for name, want := range in {
		if v, ok := m.Get(name); !ok || v != want || !m.Has(name) || m.Value(name) != want {
			t.Errorf("%s: %v %v, want %v", name, v, ok, want)
		}
	}
	if v, ok := m.Get("nope"); ok || v != 0 || m.Has("nope") {
		t.Errorf("a metric it has not: %v %v", v, ok)
	}
	got, err := json.Marshal(m)
	want, _ := json.Marshal(in)
	if err != nil || string(got) != string(want) {
		t.Errorf("JSON %s (%v), encoding/json writes the map %s", got, err, want)
	}
	var back Metrics
	if err := json.Unmarshal(got, &back); err != nil || !maps.Equal(back.Map(), in) {
		t.Errorf("read back %v (%v)", back, err)
	}
	var none Metrics
	if none.Len() != 0 || none.Has("a") || none.Names().List() != nil || len(none.Map()) != 0 || none.String() != "{}" {
		t.Errorf("no metrics: %v", none)
	}
	for range none.All() {
		t.Error("no metrics yield one")
	}
}

// TestMetricsIn: metrics in a source's order keep it; a name twice keeps
// its last value, as a map (and encoding/json) would.
func TestMetricsIn(t *testing.T) {
	m := MetricsIn([]string{"b", "a", "c"}, []float64{2, 1, 3})
	var order []string
	for name, v := range m.All() {
		order = append(order, fmt.Sprint(name, "=", v))
	}
	if fmt.Sprint(order) != "[b=2 a=1 c=3]" {
		t.Errorf("in order: %v", order)
	}
	if got, _ := json.Marshal(m); string(got) != `{"a":1,"b":2,"c":3}` {
		t.Errorf("JSON %s: names sorted, as for a map", got)
	}
	twice := MetricsIn([]string{"a", "b", "a"}, []float64{1, 2, 3})
	if twice.Len() != 2 || twice.Value("a") != 3 || twice.Value("b") != 2 {
		t.Errorf("a name twice: %v", twice)
	}
	if MetricsIn(nil, nil).Len() != 0 {
		t.Error("no names")
	}
}

// TestNamesAreShared: samples with the same names in the same order share
// one Names, whoever made them; in another order, another. Names of more
// than maxSharedNames are not kept for sharing, and the table that shares
// them is emptied, not grown, past maxTableBytes.
func TestNamesAreShared(t *testing.T) {
	a := MetricsIn([]string{"x.shared", "y.shared"}, []float64{1, 2})
	b := MetricsOf(map[string]float64{"y.shared": 3, "x.shared": 4})
	c := MetricsIn([]string{"y.shared", "x.shared"}, []float64{5, 6})
	if a.Names() != b.Names() || a.Names() == c.Names() {
		t.Errorf("same names, same order: %p %p; another order: %p", a.Names(), b.Names(), c.Names())
	}
	many := make([]string, maxSharedNames+1)
	for i := range many {
		many[i] = fmt.Sprint("m.", i)
	}
	if MetricsIn(many, make([]float64, len(many))).Names() == MetricsIn(many, make([]float64, len(many))).Names() {
		t.Error("names past maxSharedNames shared")
	}
	for i := range maxTableBytes / 100 {
		MetricsIn([]string{fmt.Sprintf("%0100d", i)}, []float64{1})
		namesTable.Lock()
		size := namesTable.bytes
		namesTable.Unlock()
		if size > maxTableBytes {
			t.Fatalf("the table holds %d bytes of names, more than %d", size, maxTableBytes)
		}
	}
}
