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

// Limits that keep a hostile or broken target from costing much.
const (
	MaxExpositionLine = 64 << 10
	MaxLabels         = 64
)

// ErrExposition wraps every parse error.
var ErrExposition = errors.New("malformed exposition")

// ParseExposition reads Prometheus text format (version 0.0.4) and returns
// its samples. Comments and metadata lines are skipped. The first
// malformed line stops parsing with an error naming the line.
func ParseExposition(r io.Reader) ([]PromSample, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxExpositionLine)
	var out []PromSample
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSampleLine(line)
		if err != nil {
			return out, fmt.Errorf("%w: line %d: %v", ErrExposition, n, err)
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

func parseSampleLine(line string) (PromSample, error) {
	var s PromSample
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return s, fmt.Errorf("want a metric name, got %q", truncate(line, 20))
	}
	s.Name = line[:i]
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		labels, after, err := parseLabels(rest[1:])
		if err != nil {
			return s, err
		}
		s.Labels, rest = labels, after
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("want a value (and an optional timestamp) after %s", s.Name)
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, err
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q", truncate(fields[1], 20))
		}
	}
	s.Value = v
	return s, nil
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
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", truncate(f, 20))
	}
	return v, nil
}

// parseLabels reads `a="x",b="y"}` and returns the labels, sorted, and what
// follows the closing brace.
func parseLabels(s string) ([]Label, string, error) {
	var labels []Label
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "}") {
			break
		}
		i := 0
		for i < len(s) && isNameChar(s[i], i == 0) && s[i] != ':' {
			i++
		}
		if i == 0 {
			return nil, "", errors.New("want a label name")
		}
		name := s[:i]
		s = strings.TrimLeft(s[i:], " \t")
		if !strings.HasPrefix(s, "=") {
			return nil, "", fmt.Errorf("want = after label %s", name)
		}
		s = strings.TrimLeft(s[1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return nil, "", fmt.Errorf("want a quoted value for label %s", name)
		}
		var b strings.Builder
		j := 1
		closed := false
		for j < len(s) {
			c := s[j]
			if c == '"' {
				closed = true
				j++
				break
			}
			if c == '\\' && j+1 < len(s) {
				switch s[j+1] {
				case 'n':
					b.WriteByte('\n')
				case '\\', '"':
					b.WriteByte(s[j+1])
				default:
					b.WriteByte('\\')
					b.WriteByte(s[j+1])
				}
				j += 2
				continue
			}
			b.WriteByte(c)
			j++
		}
		if !closed {
			return nil, "", fmt.Errorf("unterminated value for label %s", name)
		}
		labels = append(labels, Label{name, b.String()})
		if len(labels) > MaxLabels {
			return nil, "", fmt.Errorf("more than %d labels", MaxLabels)
		}
		s = strings.TrimLeft(s[j:], " \t")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
			continue
		}
		if !strings.HasPrefix(s, "}") {
			return nil, "", errors.New("want , or } after a label")
		}
		break
	}
	sort.Slice(labels, func(i, j int) bool { return labels[i].Name < labels[j].Name })
	return labels, s[1:], nil
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
