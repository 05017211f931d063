package stream

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strconv"
	"time"
)

// An Event is one published message, encoded once for every transport.
// Events are immutable and shared by all subscribers.
type Event struct {
	ID     uint64
	Type   string
	Source string
	Time   time.Time

	frame []byte // the whole Server-Sent Events frame
	data  []byte // the JSON object, a subslice of frame
	pos   uint64 // a heartbeat's position: the newest id when it was sent
}

// Position is where a client stands once it has this event: its id, or
// for a heartbeat the newest id when it was sent.
func (e *Event) Position() uint64 {
	if e.IsHeartbeat() {
		return e.pos
	}
	return e.ID
}

// Line is the event's JSON followed by a newline: one line of NDJSON. Like
// JSON it is a subslice of the frame, so no transport copies an event.
// A heartbeat's line is empty.
func (e *Event) Line() []byte {
	if e.IsHeartbeat() {
		return newlineOnly
	}
	return e.data[: len(e.data)+1 : len(e.data)+1]
}

var newlineOnly = []byte("\n")

// Frame is the event as a Server-Sent Events frame, ending in a blank line.
func (e *Event) Frame() []byte { return e.frame }

// JSON is the event's data as one line of JSON, without a newline. Its
// fields "seq", "type", "ts" and "source" come first.
func (e *Event) JSON() []byte { return e.data }

// IsHeartbeat reports whether e is a keep-alive rather than an event.
func (e *Event) IsHeartbeat() bool { return e.ID == 0 && e.Type == "" }

// A Message is what a publisher hands the hub.
type Message struct {
	Type   string
	Source string
	Time   time.Time
	// Body must encode to a JSON object; its fields follow seq, type, ts
	// and source. Nil means no further fields. A json.RawMessage is taken
	// as it is: it must be a valid JSON object, compact, on one line.
	// Publish keeps nothing of Body: a caller may reuse its buffer once
	// Publish returns.
	Body any
	// Key, when set, makes this event the newest state under that key:
	// a client whose position was lost gets the newest event of every key
	// in its reset snapshot.
	Key string
	// ID, when set, is the publisher's own id of the event (an agent's
	// event a hub republishes: the upstream and the agent's id). A shared
	// log keeps one event of an ID within its duplicate window, so two
	// replicas, or one that resumes where another stood, publish it once.
	ID string
}

// encodeEvent builds the JSON data and the SSE frame of an event once,
// the JSON written straight into the frame: one allocation an event, for
// a hub that takes in a thousand agents' samples a second.
func encodeEvent(id uint64, typ, source string, t time.Time, body []byte) *Event {
	f := frameHead(make([]byte, 0, 160+2*len(typ)+len(source)+len(body)), id, typ)
	off := len(f)
	f = append(f, `{"seq":`...)
	f = strconv.AppendUint(f, id, 10)
	f = append(f, `,"type":"`...)
	f = append(f, typ...)
	f = append(f, `","ts":"`...)
	f = appendTime(f, t)
	f = append(f, '"')
	if source != "" {
		f = append(f, `,"source":`...)
		f = appendJSONString(f, source)
	}
	if len(body) > 2 {
		f = append(f, ',')
		f = append(f, body[1:]...)
	} else {
		f = append(f, '}')
	}
	return framed(id, typ, source, t, f, off)
}

// timeLayout is how an event's time is written: RFC 3339 in UTC, to the
// millisecond.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendTime appends t as timeLayout says, as t.UTC().AppendFormat does
// but without reading the layout each time: a third of encoding a hub's
// event went to it.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, sec := t.Clock()
	var buf [24]byte
	put := func(i, v, n int) {
		for k := i + n - 1; k >= i; k-- {
			buf[k] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	buf[4] = '-'
	put(5, int(month), 2)
	buf[7] = '-'
	put(8, day, 2)
	buf[10] = 'T'
	put(11, hour, 2)
	buf[13] = ':'
	put(14, minute, 2)
	buf[16] = ':'
	put(17, sec, 2)
	buf[19] = '.'
	put(20, t.Nanosecond()/1e6, 3)
	buf[23] = 'Z'
	return append(b, buf[:]...)
}

// storedEvent rebuilds an event from the JSON it was sent with.
func storedEvent(id uint64, typ, source string, t time.Time, data []byte) *Event {
	f := frameHead(make([]byte, 0, 64+len(typ)+len(data)), id, typ)
	off := len(f)
	return framed(id, typ, source, t, append(f, data...), off)
}

// frameHead appends the lines of a Server-Sent Events frame before its
// data, and the data field's name: the id (none for 0), the type. The
// frame is the one go-sse's Message writes for an event whose data is one
// line (TestFrameIsGoSSEs); written here, not through a Message, to build
// it without copying the data three times.
func frameHead(f []byte, id uint64, typ string) []byte {
	if id != 0 {
		f = append(f, "id: "...)
		f = strconv.AppendUint(f, id, 10)
		f = append(f, '\n')
	}
	f = append(f, "event: "...)
	f = append(f, typ...)
	return append(f, "\ndata: "...)
}

// framed ends a frame whose data — one line of JSON — starts at off.
func framed(id uint64, typ, source string, t time.Time, f []byte, off int) *Event {
	end := len(f)
	f = append(f, "\n\n"...)
	return &Event{ID: id, Type: typ, Source: source, Time: t, frame: f, data: f[off:end]}
}

// heartbeatAt is a heartbeat that tells SSE clients their position.
func heartbeatAt(id uint64) *Event {
	return &Event{frame: []byte(": heartbeat\nid: " + strconv.FormatUint(id, 10) + "\n\n"), pos: id}
}

func byID(a, b *Event) int { return cmp.Compare(a.ID, b.ID) }

func writeJSONString(b *bytes.Buffer, s string) {
	b.Write(appendJSONString(b.AvailableBuffer(), s))
}

// appendJSONString appends s as encoding/json writes it. A name of
// printable ASCII that JSON need not escape — every source's name a hub
// takes from its agents — is copied as it is: json.Marshal of the source
// was a fortieth of a hub's CPU.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// NewEvent encodes an event numbered elsewhere (by a SharedLog): body is
// the JSON object past seq, type, ts and source, or nil.
func NewEvent(id uint64, typ, source string, t time.Time, body []byte) *Event {
	return encodeEvent(id, typ, source, t, body)
}
