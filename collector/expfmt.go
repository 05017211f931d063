package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// The Prometheus text exposition format is parsed here rather than with
// github.com/prometheus/common/expfmt: vigil needs samples only (no
// metadata, exemplars or protobuf), the format is small, and this keeps
// the protobuf and client_model modules out of the binary. The parser is
// fuzzed (FuzzParseExposition) and never panics on garbage.

// A PromSample is one line of an exposition: a series and its value.
type PromSample struct {
	Name   string
	Labels []Label // sorted by name
	Value  float64
}

// A Label is one name="value" pair.
type Label struct{ Name, Value string }

// Label returns the value of a label, or "".
func (s PromSample) Label(name string) string {
	for _, l := range s.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Limits that keep a hostile or broken target from costing much. The
// number of series is a scrape option (ScrapeOptions.MaxSeries).
const (
	MaxExpositionLine  = 64 << 10 // bytes
	MaxLabels          = 64       // per series
	MaxLabelNameBytes  = 128
	MaxLabelValueBytes = 1 << 10
)

// ErrExposition wraps every error about a line of an exposition.
var ErrExposition = errors.New("malformed exposition")

// A SeriesLimitError says an exposition holds more series than a scrape
// accepts. Parsing stops there, so memory is bounded by the limit, not by
// what the target sends.
type SeriesLimitError struct{ Max int }

func (e *SeriesLimitError) Error() string {
	return fmt.Sprintf("more than %d series; raise scrape.max_series", e.Max)
}

// ParseExposition reads Prometheus text format (version 0.0.4) and returns
// its samples, at most maxSeries of them (DefaultMaxSeries when 0 or
// less); one more is a *SeriesLimitError. Comments and metadata lines are
// skipped. The first malformed line stops parsing with an error that says
// where (line and column) and what was wanted; errors never quote the
// body, which is the target's to write. Label names and values are
// bounded (MaxLabelNameBytes, MaxLabelValueBytes), and a bucket bound
// that is NaN (le="NaN", or in a vmrange) is refused: NaN is never equal
// to itself, so every such bucket would be a new one.
func ParseExposition(r io.Reader, maxSeries int) ([]PromSample, error) {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxExpositionLine)
	var out []PromSample
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		trimmed := strings.TrimLeftFunc(raw, unicode.IsSpace)
		line := strings.TrimRightFunc(trimmed, unicode.IsSpace)
		if line == "" || line[0] == '#' {
			continue
		}
		p := lineParser{line: line, col0: len(raw) - len(trimmed) + 1}
		s, err := p.sample()
		if err != nil {
			if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
				return out, err // the read failed within the line: the line is cut, not malformed
			}
			return out, fmt.Errorf("%w: line %d, %v", ErrExposition, n, err)
		}
		if len(out) == maxSeries {
			return out, &SeriesLimitError{Max: maxSeries}
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, fmt.Errorf("%w: line %d longer than %d bytes", ErrExposition, n+1, MaxExpositionLine)
		}
		return out, err
	}
	return out, nil
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// lineParser reads one sample line, keeping its place for errors.
type lineParser struct {
	line string
	i    int // the next byte to read
	col0 int // the column of line[0] in the body's line
}

// syntaxError says where a line went wrong and what was wanted there.
type syntaxError struct {
	col  int
	want string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.col, e.want) }

func (p *lineParser) errorAt(i int, format string, a ...any) error {
	return &syntaxError{col: p.col0 + i, want: fmt.Sprintf(format, a...)}
}

func (p *lineParser) skipBlanks() {
	for p.i < len(p.line) && (p.line[p.i] == ' ' || p.line[p.i] == '\t') {
		p.i++
	}
}

func (p *lineParser) sample() (PromSample, error) {
	var s PromSample
	for p.i < len(p.line) && isNameChar(p.line[p.i], p.i == 0) {
		p.i++
	}
	if p.i == 0 {
		return s, p.errorAt(0, "want a metric name")
	}
	s.Name = p.line[:p.i]
	if p.i < len(p.line) && p.line[p.i] == '{' {
		p.i++
		labels, err := p.labels()
		if err != nil {
			return s, err
		}
		s.Labels = labels
	}
	fields, at := fieldsAt(p.line[p.i:], 3)
	if len(fields) < 1 || len(fields) > 2 {
		col := len(p.line) // the value is missing at the end of the line
		if len(fields) > 2 {
			col = p.i + at[2]
		}
		return s, p.errorAt(col, "want a value and an optional timestamp after the series")
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, p.errorAt(p.i+at[0], "want a number as the value")
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, p.errorAt(p.i+at[1], "want a timestamp (integer milliseconds) or the end of the line")
		}
	}
	s.Value = v
	return s, nil
}

// fieldsAt splits s as strings.Fields does, up to max fields, and says
// where each starts.
func fieldsAt(s string, max int) (fields []string, at []int) {
	i := 0
	for len(fields) < max {
		start := strings.IndexFunc(s[i:], func(r rune) bool { return !unicode.IsSpace(r) })
		if start < 0 {
			break
		}
		start += i
		end := strings.IndexFunc(s[start:], unicode.IsSpace)
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		fields, at = append(fields, s[start:end]), append(at, start)
		i = end
	}
	return fields, at
}

func parseValue(f string) (float64, error) {
	switch f {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(f, 64)
}

// labels reads `a="x",b="y"}`, just after the opening brace, and returns
// the labels sorted, leaving p after the closing brace.
func (p *lineParser) labels() ([]Label, error) {
	var labels []Label
	for {
		p.skipBlanks()
		if p.i < len(p.line) && p.line[p.i] == '}' {
			break
		}
		start := p.i
		for p.i < len(p.line) && isNameChar(p.line[p.i], p.i == start) && p.line[p.i] != ':' {
			p.i++
		}
		if p.i == start {
			return nil, p.errorAt(p.i, "want a label name")
		}
		if p.i-start > MaxLabelNameBytes {
			return nil, p.errorAt(start, "label name longer than %d bytes", MaxLabelNameBytes)
		}
		name := p.line[start:p.i]
		p.skipBlanks()
		if p.i >= len(p.line) || p.line[p.i] != '=' {
			return nil, p.errorAt(p.i, "want = after a label name")
		}
		p.i++
		p.skipBlanks()
		if p.i >= len(p.line) || p.line[p.i] != '"' {
			return nil, p.errorAt(p.i, "want a quoted label value")
		}
		value, err := p.quoted()
		if err != nil {
			return nil, err
		}
		switch {
		case name == "le" && isNaNBound(value):
			return nil, p.errorAt(start, `le="NaN" is not a bucket bound`)
		case name == "vmrange" && vmrangeHasNaN(value):
			return nil, p.errorAt(start, "a vmrange bound is NaN")
		}
		labels = append(labels, Label{name, value})
		if len(labels) > MaxLabels {
			return nil, p.errorAt(start, "at most %d labels", MaxLabels)
		}
		p.skipBlanks()
		if p.i < len(p.line) && p.line[p.i] == ',' {
			p.i++
			continue
		}
		if p.i >= len(p.line) || p.line[p.i] != '}' {
			return nil, p.errorAt(p.i, "want , or } after a label")
		}
		break
	}
	p.i++ // the closing brace
	sort.Slice(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name })
	return labels, nil
}

// quoted reads a label value from its opening quote to its closing one,
// undoing the escapes.
func (p *lineParser) quoted() (string, error) {
	open := p.i
	var b strings.Builder
	tooLong := func() error { return p.errorAt(open, "label value longer than %d bytes", MaxLabelValueBytes) }
	for j := open + 1; j < len(p.line); {
		if b.Len() > MaxLabelValueBytes {
			return "", tooLong()
		}
		c := p.line[j]
		if c == '"' {
			p.i = j + 1
			return b.String(), nil
		}
		if c == '\\' && j+1 < len(p.line) {
			switch p.line[j+1] {
			case 'n':
				b.WriteByte('\n')
			case '\\', '"':
				b.WriteByte(p.line[j+1])
			default:
				b.WriteByte('\\')
				b.WriteByte(p.line[j+1])
			}
			j += 2
			continue
		}
		b.WriteByte(c)
		j++
	}
	if b.Len() > MaxLabelValueBytes {
		return "", tooLong()
	}
	return "", p.errorAt(open, "label value not terminated")
}

func isNaNBound(s string) bool {
	v, err := parseValue(s)
	return err == nil && math.IsNaN(v)
}

func vmrangeHasNaN(s string) bool {
	lo, hi, _ := strings.Cut(s, "...")
	return isNaNBound(lo) || isNaNBound(hi)
}

// seriesKey identifies a series by its labels, leaving out the ones named.
func seriesKey(labels []Label, skip ...string) string {
	var b strings.Builder
	for _, l := range labels {
		if len(skip) > 0 && (l.Name == skip[0] || (len(skip) > 1 && l.Name == skip[1])) {
			continue
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
		b.WriteByte(',')
	}
	return b.String()
}
