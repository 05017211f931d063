package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// An eventReader reads a Server-Sent Events stream as go-sse's Read does
// (the WHATWG rules; an event is dispatched at a blank line when any of
// its data, event or id fields came, so a heartbeat's id alone is one),
// keeping each event's fields in buffers reused for the next. A hub reads
// a thousand agents' streams: go-sse's Read makes three strings of each
// event on the way, a copy of a kilobyte an agent a second more than the
// hub needs; FuzzEventReader holds the two to the same events.
type eventReader struct {
	r       *bufio.Reader
	max     int    // the most bytes an event's lines may take
	size    int    // bytes of the event's lines so far
	long    []byte // a line longer than the buffer, assembled
	pending []byte // the rest of a segment after a lone CR, for the next line
	started bool   // past the first line that is not empty, whose byte-order mark is dropped
	dirty   bool   // a field of the event came
	ev      rawEvent
}

// A rawEvent is an event as read: its fields are valid until the next
// read.
type rawEvent struct {
	ID   []byte // the last id the stream gave, this event's or before
	Type []byte
	Data []byte // the data lines, joined by newlines
}

// errEventTooLarge is an event whose lines take more than the reader's max.
var errEventTooLarge = errors.New("an event larger than the limit")

func newEventReader(r io.Reader, max int) *eventReader {
	return &eventReader{r: bufio.NewReader(r), max: max}
}

// next returns the next event, or io.EOF when the stream ends (an event
// without its blank line at the end is dropped), or the reader's error.
func (r *eventReader) next() (rawEvent, error) {
	r.ev.Type, r.ev.Data = r.ev.Type[:0], r.ev.Data[:0]
	r.dirty, r.size = false, 0
	for {
		line, err := r.line()
		if err != nil {
			return rawEvent{}, err
		}
		if r.size += len(line) + 1; r.size > r.max {
			return rawEvent{}, fmt.Errorf("%w (%d bytes)", errEventTooLarge, r.max)
		}
		if len(line) == 0 {
			if r.dirty {
				if len(r.ev.Data) > 0 {
					r.ev.Data = r.ev.Data[:len(r.ev.Data)-1] // the newline after the last line
				}
				return r.ev, nil
			}
			r.size = 0
			continue
		}
		r.field(line)
	}
}

// field takes one line of an event.
func (r *eventReader) field(line []byte) {
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		r.ev.Data = append(append(r.ev.Data, value...), '\n')
		r.dirty = true
	case "event":
		r.ev.Type = append(r.ev.Type[:0], value...)
		r.dirty = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.ev.ID = append(r.ev.ID[:0], value...)
			r.dirty = true
		}
	}
	// retry, comments (an empty name) and unknown fields are passed over.
}

// line returns the next line without its end (CR LF, LF or CR), valid
// until the next call, or io.EOF at the end of the stream: a last line
// without its end is incomplete and not returned.
func (r *eventReader) line() ([]byte, error) {
	if r.pending == nil {
		seg, err := r.segment()
		if err != nil {
			return nil, err
		}
		if seg, ok := bytes.CutSuffix(seg, []byte("\n")); ok {
			r.pending, _ = bytes.CutSuffix(seg, []byte("\r"))
		} else {
			r.pending = seg[:len(seg)-1] // the stream's end, after a CR: see segment
		}
	}
	// What is left of a segment may hold lines that end in a lone CR.
	line := r.pending
	if i := bytes.IndexByte(line, '\r'); i >= 0 {
		r.pending, line = line[i+1:], line[:i]
	} else {
		r.pending = nil
	}
	// A byte order mark starts the first line that is not empty, as
	// go-sse reads it (blank lines before it are skipped, not a start).
	if !r.started && len(line) > 0 {
		r.started = true
		line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
	}
	return line, nil
}

// segment reads up to and including the next LF. At the end of the
// stream, what is left ends in lines that end in a lone CR, and an
// incomplete one: it returns the complete ones, up to and including the
// last CR; io.EOF when there are none.
func (r *eventReader) segment() ([]byte, error) {
	seg, err := r.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], seg...)
		for err == bufio.ErrBufferFull {
			if r.size+len(r.long) > r.max {
				return nil, fmt.Errorf("%w (%d bytes)", errEventTooLarge, r.max)
			}
			seg, err = r.r.ReadSlice('\n')
			r.long = append(r.long, seg...)
		}
		seg = r.long
	}
	if err == io.EOF {
		i := bytes.LastIndexByte(seg, '\r')
		if i < 0 {
			return nil, io.EOF
		}
		return seg[:i+1], nil
	}
	return seg, err
}
