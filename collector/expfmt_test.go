package collector

import (
	"errors"
	"strings"
	"testing"
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
		_, err := ParseExposition(strings.NewReader("ok 1\n" + tc.line + "\n"))
		if !errors.Is(err, ErrExposition) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.line, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "zq") {
			t.Errorf("%q: error quotes the body: %v", tc.line, err)
		}
	}
}
