package stream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 5, ""},
		{"short", 5, "short"},
		{"longer", 5, "longe…"},
		{"héllo", 2, "h…"}, // é is two bytes: not cut in half
		{"héllo", 3, "hé…"},
		{"日本語", 4, "日…"},
		{"a\xffb", 10, "a\uFFFDb"},         // invalid UTF-8 replaced, even when short
		{"a\xff\xfe\xfdb", 10, "a\uFFFDb"}, // a run of bad bytes is one replacement
		{"\xff\xff", 2, "…"},               // the replacement itself does not fit
		{"abc", 0, "…"},
		{"abc", -1, "…"},
	}
	for _, tt := range tests {
		if got := Clip(tt.s, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
	huge := strings.Repeat("\xffé", 1<<20)
	got := Clip(huge, MaxTextBytes)
	if len(got) > MaxTextBytes+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("huge input: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func FuzzClip(f *testing.F) {
	f.Add("héllo\xff", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 1 << 10
		got := Clip(s, n)
		if !utf8.ValidString(got) || len(got) > max(n, 0)+len("…") {
			t.Fatalf("Clip(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && len(s) <= n && got != s {
			t.Fatalf("Clip changed a short valid string: %q -> %q", s, got)
		}
		if !strings.HasSuffix(got, "…") && got != strings.ToValidUTF8(s, "\uFFFD") {
			t.Fatalf("Clip(%q, %d) = %q: cut without an ellipsis", s, n, got)
		}
	})
}

func TestReadable(t *testing.T) {
	for in, want := range map[string]string{
		"web-1":                  "web-1",
		"cpu.util{core=\"0\"} ~": "cpu.util{core=\"0\"} ~",
		"del\x7fete":             "del\ufffdete",
		"nul\x00":                "nul\ufffd",
		"web\u202egnp.exe":       "web\ufffdgnp.exe",
		"a\u2066b\u2069c\u200fd": "a\ufffdb\ufffdc\ufffdd",
		"host\x1b[31mred":        "host\ufffd[31mred",
		"tab\tnew\nline":         "tab\ufffdnew\ufffdline",
		"日本語/Ünïcode":            "日本語/Ünïcode",
	} {
		if got := Readable(in); got != want {
			t.Errorf("Readable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadableEveryCharacter holds Readable's quick path for printable
// ASCII to the rule it shortens: every character up to U+3000 alone
// between two letters.
func TestReadableEveryCharacter(t *testing.T) {
	for r := rune(0); r < 0x3000; r++ {
		in := "a" + string(r) + "b"
		want := in
		if unreadable(r) {
			want = "a\ufffdb"
		}
		if got := Readable(in); got != want {
			t.Fatalf("Readable(%q) = %q, want %q", in, got, want)
		}
	}
}
