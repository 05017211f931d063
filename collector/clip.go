package collector

import (
	"strings"
	"unicode/utf8"
)

// MaxTextBytes bounds every piece of text that comes from outside (a
// target's status, an error it caused, a label value) before it reaches a
// log line, an event or the database: a target that answers with a
// megabyte of text must not have it logged and sent to every client once a
// second.
const MaxTextBytes = 256

// maxErrorBytes bounds a source's whole error, as the scheduler publishes
// and logs it. A service names each failing instance in its error, each
// part already cut to MaxTextBytes, so the whole gets room for a few.
const maxErrorBytes = 4 * MaxTextBytes

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

// clippedError bounds an error's text while keeping it in the chain, so
// errors.Is and errors.As still see what caused it.
type clippedError struct{ err error }

func (e clippedError) Error() string { return Clip(e.err.Error(), MaxTextBytes) }
func (e clippedError) Unwrap() error { return e.err }

// clipErr bounds the text of an error that carries what a target said.
func clipErr(err error) error {
	if err == nil {
		return nil
	}
	return clippedError{err}
}
