// Package yamlmsg reads what yaml.v3's errors say — on which line, an
// unknown key, a value that does not read, a list or a mapping where
// something else goes — so that vigil can say it in the words of the file
// being read, not of the Go types it is decoded into. The config and the
// upstreams file both say it their own way.
package yamlmsg

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// What a Problem is.
const (
	Other      = iota // Msg says it: a syntax error, or a value a decoder refused
	UnknownKey        // Key is not a field of the type
	BadValue          // Value, a scalar, does not read as GoType
	BadShape          // a Tag (seq, map, …), no value, where a GoType goes
)

// A Problem is one thing yaml.v3 found.
type Problem struct {
	Line int // as yaml.v3 gives it; 0 when it gives none
	// Parser says the problem is one of yaml.v3's parser (not its
	// scanner), whose line it counts from 0 and leaves out for line 0.
	Parser bool
	Kind   int
	Msg    string // yaml.v3's words, without "yaml: " and the line
	Key    string // UnknownKey
	Value  string // BadValue
	Tag    string // BadValue, BadShape: what the file has there: seq, map, str, int, …
	GoType string // BadValue, BadShape: what it was decoded into
}

// Problems reads every problem of a yaml.v3 error: each of a
// *yaml.TypeError's, or the error's own.
func Problems(err error) []Problem {
	lines := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	}
	out := make([]Problem, len(lines))
	for i, l := range lines {
		p := Problem{Msg: strings.TrimPrefix(l, "yaml: ")}
		if m := lineRe.FindStringSubmatch(p.Msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
		}
		p.Parser = slices.Contains(parserProblems, p.Msg)
		if m := unknownKeyRe.FindStringSubmatch(p.Msg); m != nil {
			p.Kind, p.Key = UnknownKey, m[1]
		} else if m := unmarshalRe.FindStringSubmatch(p.Msg); m != nil {
			p.Kind, p.Tag, p.GoType = BadShape, m[1], m[3]
			if m[2] != "" {
				p.Kind, p.Value = BadValue, m[2]
			}
		}
		out[i] = p
	}
	return out
}

var (
	lineRe       = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownKeyRe = regexp.MustCompile(`^field (\S+) not found in type `)
	unmarshalRe  = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`([^`]*)` )?into (\\S+(?: \\{.*\\})?)")
)

// parserProblems are the problems yaml.v3's parser (not its scanner)
// reports; their line numbers count from 0.
var parserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'", "did not find expected '-' indicator",
	"did not find expected <document start>", "did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive", "found duplicate %YAML directive",
	"found incompatible YAML document", "found undefined tag handle",
}
