package templates

import "testing"

func TestViewLink(t *testing.T) {
	hub := ViewState{Fleet: true, Sort: "error", HostSort: "worst", Filter: "role=web", Group: "dc"}
	for _, c := range []struct {
		v          ViewState
		key, value string
		want       string
	}{
		{hub, "sort", "cpu", "?group=dc&q=role%3Dweb&sort=cpu"},
		{hub, "sort", "worst", "?group=dc&q=role%3Dweb"}, // the default is left out
		{hub, "group", "", "?q=role%3Dweb"},
		{ViewState{Fleet: true, Sort: "rate", HostSort: "name", Paused: true}, "tiles", "error", "?paused=1&sort=name"},
		{ViewState{Fleet: true, Sort: "error", HostSort: "worst"}, "sort", "worst", "/"},
		{ViewState{Sort: "error"}, "sort", "rate", "?sort=rate"}, // not a hub: ?sort= is the tiles'
	} {
		if got := c.v.Link(c.key, c.value); got != c.want {
			t.Errorf("%+v Link(%s, %s) = %q, want %q", c.v, c.key, c.value, got, c.want)
		}
	}
}

func TestHostMatches(t *testing.T) {
	r := HostRow{Name: "web-1", Upstream: "10.0.0.1:8080", Labels: []Label{{"dc", "FRA"}, {"role", "web"}}}
	for filter, want := range map[string]bool{
		"":                true,
		"web":             true,
		"WEB-1":           true,
		"10.0.0.1":        true,
		"fra":             true, // part of a label's value
		"role=web":        true,
		"Role=WEB dc=fra": true,
		"role=we":         false, // a label matches exactly
		"role=":           false,
		"team=":           true,  // no such label: its value is empty
		"web db":          false, // every word
		"=web":            false, // no key: a word like any other, part of nothing here
	} {
		if got := HostMatches(filter, r); got != want {
			t.Errorf("HostMatches(%q) = %v", filter, got)
		}
	}
}
