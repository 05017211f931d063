package stream

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strconv"
	"time"

	sse "github.com/tmaxmax/go-sse"
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
	Body any
	// Key, when set, makes this event the newest state under that key:
	// a client whose position was lost gets the newest event of every key
	// in its reset snapshot.
	Key string
}

// encodeEvent builds the JSON data and the SSE frame of an event once.
func encodeEvent(id uint64, typ, source string, t time.Time, body []byte) *Event {
	var b bytes.Buffer
	b.Grow(64 + len(source) + len(body))
	b.WriteString(`{"seq":`)
	b.WriteString(strconv.FormatUint(id, 10))
	b.WriteString(`,"type":"`)
	b.WriteString(typ)
	b.WriteString(`","ts":"`)
	b.WriteString(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteByte('"')
	if source != "" {
		b.WriteString(`,"source":`)
		writeJSONString(&b, source)
	}
	if len(body) > 2 {
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	return frameEvent(id, typ, source, t, b.Bytes())
}

// storedEvent rebuilds an event from the JSON it was sent with.
func storedEvent(id uint64, typ, source string, t time.Time, data []byte) *Event {
	return frameEvent(id, typ, source, t, data)
}

// frameEvent wraps an event's JSON in its Server-Sent Events frame.
func frameEvent(id uint64, typ, source string, t time.Time, data []byte) *Event {
	msg := &sse.Message{Type: sse.Type(typ)}
	if id != 0 {
		msg.ID = sse.ID(strconv.FormatUint(id, 10))
	}
	msg.AppendData(string(data))
	frame, _ := msg.MarshalText() // cannot fail: one line of JSON
	// The data line is "data: <json>\n" followed by the blank line.
	off := len(frame) - len(data) - 2
	return &Event{ID: id, Type: typ, Source: source, Time: t, frame: frame, data: frame[off : off+len(data)]}
}

// heartbeatAt is a heartbeat that tells SSE clients their position.
func heartbeatAt(id uint64) *Event {
	return &Event{frame: []byte(": heartbeat\nid: " + strconv.FormatUint(id, 10) + "\n\n"), pos: id}
}

func byID(a, b *Event) int { return cmp.Compare(a.ID, b.ID) }

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s)
	b.Write(q)
}
