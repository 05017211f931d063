package collector

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// A parse error says where (line and column) and what was wanted; it never
// quotes the body, which is the target's to write.
func TestParseErrorsDoNotQuoteTheBody(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{zq="1"} 2`, "line 2, column 1: want a metric name"},
		{`x zqvalue`, "line 2, column 3: want a number as the value"},
		{`x 1 zqtime`, "line 2, column 5: want a timestamp"},
		{`zqname{a="1"}`, "line 2, column 14: want a value"},
		{`zqname 1 2 3`, "line 2, column 12: want a value"},
		{`x{zqlabel 1}`, "line 2, column 11: want = after a label name"},
		{`x{zqlabel=1} 2`, "line 2, column 11: want a quoted label value"},
		{`x{zqlabel="1} 2`, "line 2, column 11: label value not terminated"},
		{`x{a="zq" zq="1"} 2`, "line 2, column 10: want , or } after a label"},
		{`x{1zq="1"} 2`, "line 2, column 3: want a label name"},
		{"  \tzqname{a=\"1\" 2", "line 2, column 17: want , or } after a label"}, // columns count the leading blanks
	} {
		_, err := ParseExposition(strings.NewReader("ok 1\n"+tc.line+"\n"), 0)
		if !errors.Is(err, ErrExposition) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "zq") {
			t.Errorf("%q: error quotes the body: %v", tc.line, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	name := func(n int) string { return strings.Repeat("n", n) }
	value := func(n int) string { return strings.Repeat("v", n) }
	for _, ok := range []string{
		`x{` + name(MaxLabelNameBytes) + `="1"} 1`,
		`x{a="` + value(MaxLabelValueBytes) + `"} 1`,
		`x{a="` + strings.Repeat(`\\`, MaxLabelValueBytes) + `"} 1`, // escapes count once unescaped
		`x_bucket{le="+Inf"} 1`,
		`x_bucket{le="0.5"} 1`,
		`x_bucket{vmrange="1.000e-03...1.136e-03"} 1`,
		`x{other="NaN"} 1`, // only bucket bounds must be numbers
		`x NaN`,            // a NaN value is a value (a counter's NaN is skipped later)
	} {
		if _, err := ParseExposition(strings.NewReader(ok+"\n"), 0); err != nil {
			t.Errorf("%.60q refused: %v", ok, err)
		}
	}
	for _, tc := range []struct{ line, want string }{
		{`x{` + name(MaxLabelNameBytes+1) + `="1"} 1`, "line 1, column 3: label name longer than 128 bytes"},
		{`x{a="` + value(MaxLabelValueBytes+1) + `"} 1`, "line 1, column 5: label value longer than 1024 bytes"},
		{`x{a="` + strings.Repeat(`\\`, MaxLabelValueBytes+1) + `"} 1`, "label value longer than 1024 bytes"},
		{`x{a="` + value(MaxLabelValueBytes+1), "label value longer than 1024 bytes"}, // too long before it is known to be unterminated
		{`x_bucket{le="NaN"} 1`, `line 1, column 10: le="NaN" is not a bucket bound`},
		{`x_bucket{a="1",le="nan"} 1`, `line 1, column 16: le="NaN" is not a bucket bound`},
		{`x_bucket{vmrange="NaN...1"} 1`, "line 1, column 10: a vmrange bound is NaN"},
		{`x_bucket{vmrange="1...NaN"} 1`, "a vmrange bound is NaN"},
	} {
		_, err := ParseExposition(strings.NewReader(tc.line+"\n"), 0)
		if !errors.Is(err, ErrExposition) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.60q: error %v, want %q", tc.line, err, tc.want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("%.60q: error of %d bytes", tc.line, len(err.Error()))
		}
	}
}

func TestParseCapsSeries(t *testing.T) {
	body := "# HELP a x\na 1\nb 2\n\nc 3\n"
	got, err := ParseExposition(strings.NewReader(body), 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("three series under a limit of three: %d, %v", len(got), err)
	}
	got, err = ParseExposition(strings.NewReader(body+"d 4\ne 5\n"), 3)
	var limit *SeriesLimitError
	if !errors.As(err, &limit) || limit.Max != 3 || err.Error() != "more than 3 series; raise scrape.max_series" || len(got) != 3 {
		t.Fatalf("five series under a limit of three: %d, %v", len(got), err)
	}
	var b strings.Builder
	for i := range DefaultMaxSeries + 1 {
		fmt.Fprintf(&b, "x{i=\"%d\"} 1\n", i)
	}
	if _, err := ParseExposition(strings.NewReader(b.String()), 0); err == nil || err.Error() != "more than 10000 series; raise scrape.max_series" {
		t.Fatalf("default limit: %v", err)
	}
}

// TestExpositionReadError: a reader that fails within a line (a target
// that went away, a timeout) gives its error, not a malformed line.
func TestExpositionReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseExposition(io.MultiReader(strings.NewReader("a 1\nb{x=\"y"), iotest.ErrReader(boom)), 0)
	if !errors.Is(err, boom) || errors.Is(err, ErrExposition) {
		t.Fatalf("error %v, want the reader's", err)
	}
}
