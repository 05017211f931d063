package stream

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTextBytes bounds every piece of text that comes from outside (a
// target's status, an error it caused, a label value) before it reaches a
// log line, an event or the database: a target that answers with a
// megabyte of text must not have it logged and sent to every client once a
// second.
const MaxTextBytes = 256

const ellipsis = "…"

// Clip returns s cut to at most n bytes on a rune boundary, with "…"
// appended when anything was cut (so the result is at most n+3 bytes).
// Invalid UTF-8 is replaced by U+FFFD, a run of bad bytes by one. Clip
// reads no more of s than it keeps, so it is cheap on huge strings.
func Clip(s string, n int) string {
	n = max(n, 0)
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), n) + len(ellipsis))
	bad := false // the previous byte was invalid: a run gets one U+FFFD
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			if !bad {
				if b.Len()+utf8.RuneLen(utf8.RuneError) > n {
					b.WriteString(ellipsis)
					return b.String()
				}
				b.WriteRune(utf8.RuneError)
			}
			bad = true
			i++
			continue
		}
		bad = false
		if b.Len()+size > n {
			b.WriteString(ellipsis)
			return b.String()
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

// Readable returns s with every character that changes how the text
// around it reads replaced by U+FFFD, so that a name shows as what it is:
// the bidirectional controls (a right-to-left override makes "web‮gnp.exe"
// read "webexe.png") and the control characters (a terminal would obey an
// escape sequence in it).
func Readable(s string) string {
	if printable(s) || !strings.ContainsFunc(s, unreadable) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unreadable(r) {
			return utf8.RuneError
		}
		return r
	}, s)
}

// printable says whether s is printable ASCII alone, as nearly every name
// is: a hub checks forty metric names of each of a thousand agents'
// samples a second, and a byte at a time is several times quicker than a
// rune at a time through unreadable.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func unreadable(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true // bidi marks, embeddings, overrides and isolates
	}
	return false
}
