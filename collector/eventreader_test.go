package collector

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	sse "github.com/tmaxmax/go-sse"
)

// readAll reads every event of a stream with an eventReader, through a
// reader that gives a byte at a time when oneByte (lines across reads).
func readAll(t *testing.T, in string, oneByte bool) []sse.Event {
	t.Helper()
	var src io.Reader = strings.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	r := newEventReader(src, 1<<20)
	var out []sse.Event
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, sse.Event{LastEventID: string(ev.ID), Type: string(ev.Type), Data: string(ev.Data)})
	}
}

func goSSEEvents(t *testing.T, in string) []sse.Event {
	t.Helper()
	var out []sse.Event
	for ev, err := range sse.Read(strings.NewReader(in), &sse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			t.Fatalf("go-sse: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func TestEventReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []sse.Event
	}{
		{"an event", "id: 5\nevent: sample\ndata: {\"a\":1}\n\n", []sse.Event{{LastEventID: "5", Type: "sample", Data: `{"a":1}`}}},
		{"a heartbeat is a position", ": heartbeat\nid: 9\n\n", []sse.Event{{LastEventID: "9"}}},
		{"the id stays for the next event", "id: 1\ndata: a\n\ndata: b\n\n", []sse.Event{{LastEventID: "1", Data: "a"}, {LastEventID: "1", Data: "b"}}},
		{"data lines are joined", "data: a\ndata:b\ndata\n\n", []sse.Event{{Data: "a\nb\n"}}},
		{"CR LF and lone CR end lines", "data: a\r\nevent: x\rdata: b\r\r", []sse.Event{{Type: "x", Data: "a\nb"}}},
		{"a byte-order mark first is dropped", "\xEF\xBB\xBFdata: a\n\n", []sse.Event{{Data: "a"}}},
		{"comments, retry and unknown fields are passed over", ":c\nretry: 10\nfoo: bar\n\n", nil},
		{"an id with a NUL is passed over", "id: 1\x002\ndata: a\n\n", []sse.Event{{Data: "a"}}},
		{"an event without its blank line is dropped", "data: a\n\ndata: b\n", []sse.Event{{Data: "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				if got := readAll(t, tc.in, oneByte); !equalEvents(got, tc.want) {
					t.Errorf("one byte a read %v: got %q, want %q", oneByte, got, tc.want)
				}
			}
			if got := goSSEEvents(t, tc.in); !equalEvents(got, tc.want) {
				t.Errorf("go-sse reads %q, the test wants %q", got, tc.want)
			}
		})
	}
}

func TestEventReaderLimits(t *testing.T) {
	long := "data: " + strings.Repeat("x", 10_000) + "\n\n"
	r := newEventReader(strings.NewReader(long), 20_000) // longer than bufio's buffer, within the limit
	if ev, err := r.next(); err != nil || len(ev.Data) != 10_000 {
		t.Fatalf("long line: %d bytes, %v", len(ev.Data), err)
	}
	r = newEventReader(strings.NewReader(long), 5_000)
	if _, err := r.next(); !errors.Is(err, errEventTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("y", 100)+"\n", 100) + "\n"
	r = newEventReader(strings.NewReader(many), 5_000)
	if _, err := r.next(); !errors.Is(err, errEventTooLarge) {
		t.Fatalf("many lines over the limit: %v", err)
	}
}

func equalEvents(a, b []sse.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzEventReader holds the eventReader to go-sse's Read: the same events
// from any stream, read whole or a byte at a time.
func FuzzEventReader(f *testing.F) {
	for _, s := range []string{
		"id: 5\nevent: sample\ndata: {\"a\":1}\n\n",
		": heartbeat\nid: 9\n\n",
		"data: a\r\nevent: x\rdata: b\r\r",
		"\xEF\xBB\xBFdata: a\n\n\n\ndata:\n\n",
		"id\nevent\ndata\nretry:5\n\n",
		"data: a\r\r\rdata: b\r\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.Count(in, []byte("\n"))+bytes.Count(in, []byte("\r")) > 2000 {
			t.Skip()
		}
		want := goSSEEvents(t, string(in))
		for _, oneByte := range []bool{false, true} {
			if got := readAll(t, string(in), oneByte); !equalEvents(got, want) {
				t.Fatalf("one byte a read %v: %q\ngo-sse: %q", oneByte, got, want)
			}
		}
	})
}
