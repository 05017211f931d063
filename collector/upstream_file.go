package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"vigil/internal/yamlmsg"
	"vigil/stream"
)

// MaxFileTargets bounds how many upstreams a file may list.
const MaxFileTargets = 10000

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// FileTargets reads a file of upstreams in Prometheus' file_sd format,
// JSON or YAML:
//
//	[{"targets": ["web-1:8080", "https://web-2:8443"], "labels": {"role": "web"}}]
//
// A target is host:port, or a URL; the label __scheme__ (http or https)
// gives a host:port its scheme. Other labels whose names start with "__"
// are dropped, as Prometheus does. Each upstream gets the defaults' token,
// TLS and labels, its group's labels over them.
func FileTargets(b []byte, defaults UpstreamOptions) ([]UpstreamOptions, error) {
	var groups []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&groups); err != nil && !errors.Is(err, io.EOF) { // EOF: an empty file, no upstreams
		return nil, fmt.Errorf("want a list of {targets: [...], labels: {...}} in JSON or YAML: %s", yamlError(err))
	}
	var out []UpstreamOptions
	seen := map[string]bool{}
	for gi, g := range groups {
		scheme := "http"
		labels := map[string]string{}
		for k, v := range defaults.Labels {
			labels[k] = v
		}
		for k, v := range g.Labels {
			if k == "__scheme__" {
				if v != "http" && v != "https" {
					return nil, fmt.Errorf("group %d: __scheme__ %q: want http or https", gi, stream.Clip(v, 32))
				}
				scheme = v
				continue
			}
			if strings.HasPrefix(k, "__") {
				continue
			}
			if err := CheckLabel(k, v); err != nil {
				return nil, fmt.Errorf("group %d: %v", gi, err)
			}
			labels[k] = v
		}
		for ti, t := range g.Targets {
			u, err := TargetURL(t, scheme)
			if err != nil {
				return nil, fmt.Errorf("group %d, target %d: %v", gi, ti, err)
			}
			if seen[u] {
				continue
			}
			seen[u] = true
			o := defaults
			o.URL, o.Name, o.Labels = u, "", labels
			out = append(out, o)
			if len(out) > MaxFileTargets {
				return nil, fmt.Errorf("more than %d targets", MaxFileTargets)
			}
		}
	}
	return out, nil
}

// TargetURL reads an upstream's address: a URL with scheme http or https
// and a host, or host:port with the scheme given.
func TargetURL(t, scheme string) (string, error) {
	raw := t
	if !strings.Contains(t, "://") {
		raw = scheme + "://" + t
	}
	u, err := url.Parse(raw)
	shown := t // as given, unless it may hold a password
	if strings.Contains(t, "@") {
		shown = RedactURL(t)
	}
	shown = stream.Clip(shown, stream.MaxTextBytes)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a URL: %v", stream.Clip(shown, 64), errors.Unwrap(err))
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: a vigil's URL has no query or fragment (the hub asks for /events itself)", shown)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("%q is not host:port or an http(s):// URL of a vigil", shown)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %s is not between 1 and 65535", shown, p)
		}
	}
	if u.User != nil {
		return "", fmt.Errorf("%q carries credentials: give a token instead", shown)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// CheckLabel says what is wrong with a label: a name as Prometheus allows,
// a value of readable text, short enough to show.
func CheckLabel(name, value string) error {
	switch {
	case !labelName.MatchString(name) || len(name) > 64:
		return fmt.Errorf("label name %q: want letters, digits and _, not starting with a digit, up to 64", stream.Clip(name, 64))
	case len(value) > stream.MaxTextBytes || stream.Readable(value) != value:
		return fmt.Errorf("label %s: the value must be readable text of at most %d bytes", name, stream.MaxTextBytes)
	}
	return nil
}

// A PositionFile keeps where a hub stands in each agent's stream: a JSON
// object, from the upstream's URL to the agent's id of the last event the
// hub took.
type PositionFile string

// Load reads the positions; none when the file does not exist, or with "".
func (f PositionFile) Load() (map[string]uint64, error) {
	if f == "" {
		return nil, nil
	}
	b, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pos map[string]uint64
	if err := json.Unmarshal(b, &pos); err != nil {
		return nil, fmt.Errorf("%s: %w", string(f), err)
	}
	return pos, nil
}

// Save writes the positions atomically: a crash leaves the old file or
// the new.
func (f PositionFile) Save(pos map[string]uint64) error {
	if f == "" {
		return nil
	}
	b, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	tmp := string(f) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(f))
}

// yamlError says what the YAML decoder found in the words of the file:
// every problem it lists, without the Go types it decodes into.
func yamlError(err error) string {
	probs := yamlmsg.Problems(err)
	msgs := make([]string, len(probs))
	for i, p := range probs {
		msg := p.Msg
		switch p.Kind {
		case yamlmsg.UnknownKey:
			msg = fmt.Sprintf("unknown key %q (a group has targets and labels)", p.Key)
		case yamlmsg.BadValue:
			msg = fmt.Sprintf("%q where the file wants %s", p.Value, fileWants(p.GoType))
		case yamlmsg.BadShape:
			msg = fmt.Sprintf("a %s where the file wants %s", yamlKinds[p.Tag], fileWants(p.GoType))
		}
		if p.Line > 0 {
			msg = fmt.Sprintf("line %d: %s", p.Line, msg)
		}
		msgs[i] = msg
	}
	return strings.Join(msgs, "; ")
}

// fileWants names, in the file's words, what a Go type it is read into
// holds.
func fileWants(goType string) string {
	switch {
	case goType == "string":
		return "text"
	case goType == "[]string":
		return "a list of text"
	case strings.HasPrefix(goType, "map["):
		return "a map of text"
	}
	return "a list of groups"
}

var yamlKinds = map[string]string{"seq": "list", "map": "map", "str": "text", "int": "number", "float": "number", "bool": "boolean", "null": "null"}
