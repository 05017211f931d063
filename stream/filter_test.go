package stream

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"host/*", "host/web-1", true},
		{"host/*", "host/", true},
		{"host/*", "hosts/web-1", false},
		{"*", "service/api/eu-1", true},
		{"*/web-1", "host/web-1", true},
		{"host/web-?", "host/web-1", true},
		{"host/web-?", "host/web-10", false},
		{"host/*-1", "host/a/b-1", true},
		{"host/web-1", "host/web-1", true},
		{"host/web-1", "host/web-12", false},
		{"", "", true},
		{"", "x", false},
		{"**", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		query   string
		sources []string
		types   []string
		err     bool
	}{
		{"", nil, nil, false},
		{"source=host/*", []string{"host/*"}, nil, false},
		{"source=host/*&source=service/api", []string{"host/*", "service/api"}, nil, false},
		{"source=host/a,host/b", []string{"host/a", "host/b"}, nil, false},
		{"type=sample", nil, []string{"sample"}, false},
		{"type=sample,alert&type=sample", nil, []string{"sample", "alert"}, false},
		{"type=samples", nil, nil, true},
		{"type=", nil, nil, true},
		{"source=", nil, nil, true},
		{"source=a,,b", nil, nil, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		f, err := ParseFilter(q)
		if (err != nil) != tt.err {
			t.Errorf("ParseFilter(%q) error = %v, want error %v", tt.query, err, tt.err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Errorf("ParseFilter(%q) error %v does not wrap ErrBadFilter", tt.query, err)
			}
			continue
		}
		if !slices.Equal(f.Sources, tt.sources) || !slices.Equal(f.Types, tt.types) {
			t.Errorf("ParseFilter(%q) = %+v, want sources %v types %v", tt.query, f, tt.sources, tt.types)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	f := Filter{Sources: []string{"host/*"}, Types: []string{TypeSample}}
	tests := []struct {
		typ, source string
		want        bool
	}{
		{TypeSample, "host/a", true},
		{TypeSource, "host/a", false},
		{TypeSample, "service/api", false},
		{TypeReset, "", true}, // always delivered
	}
	for _, tt := range tests {
		if got := f.Match(tt.typ, tt.source); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.typ, tt.source, got, tt.want)
		}
	}
	if !(Filter{}).Match(TypeAlert, "x") {
		t.Error("the zero filter must match everything")
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"source=host/*", "type=sample", "source=a,b&type=alert,source", "source=%00", "type=%2C"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		flt, err := ParseFilter(q)
		if err != nil {
			if !errors.Is(err, ErrBadFilter) {
				t.Fatalf("error %v does not wrap ErrBadFilter", err)
			}
			return
		}
		if len(flt.Sources) > MaxFilterPatterns {
			t.Fatalf("%d patterns accepted", len(flt.Sources))
		}
		for _, p := range flt.Sources {
			if p == "" || len(p) > MaxPatternLen {
				t.Fatalf("pattern %q accepted", p)
			}
			// A pattern without wildcards matches exactly itself.
			if !Glob(p, p) {
				t.Fatalf("pattern %q does not match itself", p)
			}
		}
		for _, typ := range flt.Types {
			if !slices.Contains(Types, typ) {
				t.Fatalf("type %q accepted", typ)
			}
		}
	})
}

func FuzzGlob(f *testing.F) {
	f.Add("host/*", "host/web-1")
	f.Add("a*b?c", "aXXbYc")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := Glob(pattern, s)
		// '*' alone matches everything; a literal pattern matches itself.
		if pattern == "*" && !got {
			t.Fatalf("* did not match %q", s)
		}
		if pattern == s && !got {
			t.Fatalf("%q did not match itself", s)
		}
		// Prefixing both sides with the same literal changes nothing.
		if Glob("x"+pattern, "x"+s) != got {
			t.Fatalf("prefix changed the result for %q, %q", pattern, s)
		}
	})
}

// TestFilterErrorsBounded: a bad filter's error quotes the client's input,
// cut short.
func TestFilterErrorsBounded(t *testing.T) {
	_, err := ParseFilter(url.Values{"type": {strings.Repeat("x", 100_000)}})
	if err == nil || len(err.Error()) > 512 || !utf8.ValidString(err.Error()) {
		t.Fatalf("error of %d bytes", len(fmt.Sprint(err)))
	}
}
