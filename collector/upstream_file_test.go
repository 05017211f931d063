package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"vigil/stream"
)

func TestFileTargets(t *testing.T) {
	defaults := UpstreamOptions{Token: "0123456789abcdef", Labels: map[string]string{"dc": "fra", "role": "any"}}
	ups, err := FileTargets([]byte(`[{"targets": ["web-1:8080", "https://web-2:8443/", "web-1:8080"], "labels": {"role": "web", "__meta_x": "dropped"}},
		{"targets": ["db-1:8080"], "labels": {"__scheme__": "https"}}]`), defaults)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ url, role string }{{"http://web-1:8080", "web"}, {"https://web-2:8443", "web"}, {"https://db-1:8080", "any"}}
	if len(ups) != len(want) {
		t.Fatalf("%d upstreams: %+v", len(ups), ups)
	}
	for i, w := range want {
		if ups[i].URL != w.url || ups[i].Labels["role"] != w.role || ups[i].Labels["dc"] != "fra" || ups[i].Token != defaults.Token || ups[i].Labels["__meta_x"] != "" {
			t.Errorf("%d: %+v, want %s role=%s", i, ups[i], w.url, w.role)
		}
	}
	yamlUps, err := FileTargets([]byte("- targets: [web-1:8080]\n  labels: {role: web}\n"), UpstreamOptions{})
	if err != nil || len(yamlUps) != 1 || yamlUps[0].URL != "http://web-1:8080" {
		t.Fatalf("YAML: %+v %v", yamlUps, err)
	}
	if ups, err := FileTargets(nil, defaults); err != nil || len(ups) != 0 {
		t.Fatalf("an empty file: %v %v", ups, err)
	}
	for _, bad := range []string{`{"targets": ["x:1"]}`, `[{"targets": ["ftp://x"]}]`, `[{"targets": ["http://u:p@x:1"]}]`,
		`[{"targets": ["x:1"], "labels": {"9x": "y"}}]`, `[{"targets": ["x:1"], "labels": {"__scheme__": "gopher"}}]`,
		`[{"targets": ["x:1"], "labls": {}}]`, `[{"targets": ["x:1"], "labels": {"a": "\u202e"}}]`} {
		if _, err := FileTargets([]byte(bad), defaults); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// FuzzFileTargets: no file makes the reader panic, and every upstream it
// accepts has an http(s) URL without credentials and labels a hub can
// show.
func FuzzFileTargets(f *testing.F) {
	f.Add([]byte(`[{"targets": ["web-1:8080"], "labels": {"role": "web"}}]`))
	f.Add([]byte("- targets: [https://x:1/a]\n  labels: {__scheme__: https}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ups, err := FileTargets(b, UpstreamOptions{})
		if err != nil {
			return
		}
		for _, u := range ups {
			if !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://") || strings.Contains(u.URL, "@") {
				t.Fatalf("accepted %q", u.URL)
			}
			for k, v := range u.Labels {
				if CheckLabel(k, v) != nil {
					t.Fatalf("accepted label %q=%q", k, v)
				}
			}
		}
	})
}

// FuzzAgentEvent: whatever an agent sends as a service sample, the hub's
// merge neither panics nor reports a value that is not a number.
func FuzzAgentEvent(f *testing.F) {
	f.Add([]byte(`{"seq":1,"type":"sample","source":"service/a","metrics":{"instances.up":1},"traffic":{"requests":10,"errors":1,"seconds":1,"latency":{"0...0.1":10}}}`))
	f.Add([]byte(`{"type":"sample","traffic":{"requests":1e308,"errors":-1,"seconds":1e-300,"latency":{"1...+Inf":1e308}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeAgentEvent(b, &nameCache{})
		if err != nil {
			return
		}
		ev.Type = "sample"
		now := time.Unix(1000, 0)
		s := &fleetService{name: "service/a", window: time.Minute, hosts: map[string]*hostTraffic{}, now: func() time.Time { return now }}
		s.take("h", ev, now)
		s.take("h", ev, now)
		m, _ := s.Collect(context.Background())
		for k, v := range m {
			if math.IsNaN(v) {
				t.Fatalf("%s is NaN", k)
			}
		}
	})
}

// FuzzParseMetrics: the hub's own reader of an agent's metrics agrees
// with encoding/json: what it accepts, encoding/json reads the same; what
// encoding/json reads as an object, it accepts; and it says compact only
// of what json.Compact leaves as it is.
func FuzzParseMetrics(f *testing.F) {
	for _, s := range []string{`{"cpu.percent":12.5,"fs.used_percent{mount=/}":1e3}`, `{ "a" : -0.5e-3 , "b":0 }`, `{}`,
		`{"\u00e9\n":1}`, `{"a":01}`, `{"a":1,}`, `{"a":1}x`, `{"a":null}`, `{"\xff":1}`, `{"a":1e999}`, `{"a":1,"b":2,"a":3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, compact, err := parseMetrics(b, &nameCache{})
		var want map[string]float64
		jerr := json.Unmarshal(b, &want)
		switch {
		case err == nil && (jerr != nil || !maps.Equal(got.Map(), want)):
			t.Fatalf("%q: read %v, encoding/json %v %v", b, got, want, jerr)
		case err != nil && jerr == nil && want != nil:
			t.Fatalf("%q refused (%v); encoding/json reads %v", b, err, want)
		case err == nil && compact:
			var c bytes.Buffer
			if json.Compact(&c, b); !bytes.Equal(c.Bytes(), b) {
				t.Fatalf("%q said to be compact", b)
			}
		}
	})
}

// TestFastSampleReadsWhatVigilWrites: a host sample as a vigil's hub
// encodes it takes the hub's fast path, and reads as encoding/json reads
// it.
func TestFastSampleReadsWhatVigilWrites(t *testing.T) {
	hub := stream.NewHub(stream.HubOptions{FirstID: 1})
	defer hub.Close()
	ev, err := hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/wéb-1", Time: time.Unix(1000, 123e6),
		Body: SampleBody{Metrics: map[string]float64{"cpu.percent": 12.5, `fs.used_percent{mount=/"x"}`: 1e-7, "mem.total_bytes": 17179869184}}})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := fastSample(ev.JSON(), &nameCache{})
	if !ok {
		t.Fatalf("%s does not take the fast path", ev.JSON())
	}
	var want agentEvent
	if err := json.Unmarshal(ev.JSON(), &want); err != nil {
		t.Fatal(err)
	}
	want.Metrics, want.compact, err = parseMetrics(want.RawMetrics, &nameCache{})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path read %+v\nencoding/json %+v (%v)", got, want, err)
	}
}

// FuzzFastSample: what the fast path accepts, encoding/json reads the
// same.
func FuzzFastSample(f *testing.F) {
	for _, s := range []string{`{"seq":7,"type":"sample","ts":"2026-12-01T10:00:00.123Z","source":"host/a","metrics":{"a":1,"b\u00e9":-2.5e3}}`,
		`{"seq":18446744073709551616,"type":"sample","ts":"2026-12-01T10:00:00Z","source":"host/a","metrics":{}}`,
		`{"seq":1,"type":"source","ts":"x","source":"host/a","metrics":{"a":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := fastSample(b, &nameCache{})
		if !ok {
			return
		}
		var want agentEvent
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path read %q, which encoding/json refuses: %v", b, err)
		}
		var err error
		want.Metrics, want.compact, err = parseMetrics(want.RawMetrics, &nameCache{})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast path read %+v\nencoding/json %+v (%v)", b, got, want, err)
		}
	})
}

// TestFileTargetsErrors: a bad upstreams file is described in the
// file's words, with its line, not in the Go types it is read into.
func TestFileTargetsErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[{"target": ["a:1"]}]`, `line 1: unknown key "target" (a group has targets and labels)`},
		{`[{"targets": "x"}]`, `line 1: "x" where the file wants a list of text`},
		{"- targets: [a:1]\n  labels: [x]\n", `line 2: a list where the file wants a map of text`},
		{`{"targets": ["a:1"]}`, `line 1: a map where the file wants a list of groups`},
		{`[{"targets": ["a:1"],}`, `line 1: did not find expected ',' or ']'`},
	}
	for _, tt := range tests {
		_, err := FileTargets([]byte(tt.in), UpstreamOptions{})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "struct") || strings.Contains(err.Error(), "[]string") {
			t.Errorf("%s: %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestTargetURLErrors: what is wrong with a target is said, and a
// password in one that does not parse is not shown.
func TestTargetURLErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://[::1", `"http://[::1" is not a URL: missing ']' in host`},
		{"http://127.0.0.1:8084/?x=1", "a vigil's URL has no query or fragment"},
		{"ftp://x:1", "is not host:port or an http(s):// URL of a vigil"},
		{"http://u:secret@x:1", "carries credentials"},
		{"http://u:secret@[::1", "is not a URL"},
		{"http://", `"http://" is not host:port or an http(s):// URL of a vigil`},
		{"127.0.0.1:99999", `"127.0.0.1:99999": port 99999 is not between 1 and 65535`},
		{"https://web-1:0/", `port 0 is not between 1 and 65535`},
	}
	for _, tt := range tests {
		_, err := TargetURL(tt.in, "http")
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestNameCache: names come back as sent whatever the order of an
// event's names against the last one's, and an event like the last one
// makes no new string.
func TestNameCache(t *testing.T) {
	c := &nameCache{}
	events := [][]string{
		{"sample", "host/a", "cpu.percent", "mem.used_percent", "load.1"},
		{"sample", "host/a", "cpu.percent", "mem.used_percent", "load.1"},
		{"sample", "host/a", "mem.used_percent", "cpu.percent"},                     // reordered, one fewer
		{"sample", "host/a", "cpu.percent", "mem.used_percent", "net.rx", "load.1"}, // one more
		{"source", "host/b"},
		{"sample", "host/a", "cpu.percent", "mem.used_percent", "net.rx", "load.1"},
	}
	for _, ev := range events {
		c.begin()
		for _, n := range ev {
			if got := c.name([]byte(n)); got != n {
				t.Fatalf("%q came back as %q", n, got)
			}
		}
	}
	bs := make([][]byte, len(events[0]))
	for i, n := range events[0] {
		bs[i] = []byte(n)
	}
	allocs := testing.AllocsPerRun(100, func() {
		c.begin()
		for _, b := range bs {
			c.name(b)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for names seen before", allocs)
	}
	if s1, s2 := c.name([]byte("x")), (&nameCache{}).name([]byte("x")); s1 != s2 {
		t.Errorf("a new name: %q, %q", s1, s2)
	}
	var none *nameCache // no cache: a new string each time
	if none.name([]byte("y")) != "y" {
		t.Error("no cache")
	}
}

// TestNamesCheckedOnce: the names an agent's cache remembers carry
// whether a hub takes them, so that a sample whose names were all seen
// before is not checked again — and one whose name a hub does not take is
// refused each time it comes, from the cache or not, on the fast path or
// the slow one.
func TestNamesCheckedOnce(t *testing.T) {
	long := strings.Repeat("x", maxNameBytes+1)
	tests := []struct {
		metrics string
		checked bool
	}{
		{`{"cpu.percent":1,"load.1":2}`, true},
		{`{"cpu.percent":1,"load.1":2}`, true}, // from the cache
		{`{"cpu.percent":1,"` + long + `":2}`, false},
		{`{"cpu.percent":1,"` + long + `":2}`, false}, // from the cache
		{`{"cpu.percent":1,"load.1":2}`, true},
		{`{"cpu.percent":1,"bad\u0007name":2}`, false}, // an escape: not through the cache
		{`{"cpu.percent":1,"bad\u0007name":2}`, false},
		{`{"cpu.percent":1,"h\u00e9":2}`, false}, // not checked by the cache, but taken
		{`{"cpu.percent":1,"load.1":2}`, true},
	}
	c := &nameCache{}
	for i, tt := range tests {
		for _, form := range []string{
			`{"seq":%d,"type":"sample","ts":"2026-12-01T10:00:00Z","source":"host/a","metrics":%s}`, // the fast path
			`{"seq":%d, "type":"sample","source":"host/a","metrics":%s}`,                            // encoding/json's
		} {
			ev, err := decodeAgentEvent(fmt.Appendf(nil, form, i+1, tt.metrics), c)
			if err != nil {
				t.Fatal(err)
			}
			refused := acceptable(ev) != ""
			if ev.checked != tt.checked || refused != (!tt.checked && !strings.Contains(tt.metrics, "00e9")) {
				t.Errorf("event %d (%.20s…): checked %v, refused %v (%s)", i+1, form, ev.checked, refused, acceptable(ev))
			}
		}
	}
}

// TestAgentsShareTheirNames: two agents' samples with the same metrics
// share one Names — their names, and the index of them — not one each (a
// hub of a thousand agents held forty thousand copies of forty names),
// and so do an agent's samples while its names stay the same; a name in
// another order than the last event's is still read right. Between them,
// the garbage collector runs: what the caches hold stays.
func TestAgentsShareTheirNames(t *testing.T) {
	a, b := &nameCache{}, &nameCache{}
	ma, _, err := parseMetrics([]byte(`{"cpu.percent":1,"mem.used_percent":2,"shared.test":0}`), a)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	mb, _, err := parseMetrics([]byte(`{"cpu.percent":3,"mem.used_percent":4,"shared.test":0}`), b)
	if err != nil {
		t.Fatal(err)
	}
	if ma.Names() != mb.Names() || ma.Value("cpu.percent") != 1 || mb.Value("mem.used_percent") != 4 {
		t.Errorf("two agents' samples of the same names: %v and %v, two Names", ma, mb)
	}
	again, _, _ := parseMetrics([]byte(`{"cpu.percent":5,"mem.used_percent":6,"shared.test":0}`), b)
	if again.Names() != mb.Names() {
		t.Errorf("an agent's next sample of the same names has new Names")
	}
	other, _, _ := parseMetrics([]byte(`{"mem.used_percent":7,"cpu.percent":8,"shared.test":0}`), b)
	if other.Value("cpu.percent") != 8 || other.Value("mem.used_percent") != 7 || other.Len() != 3 {
		t.Errorf("the names in another order: %v", other)
	}
	runtime.KeepAlive(a) // the first agent is still followed
}
