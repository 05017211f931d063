package stream

import (
	"fmt"
	"sort"
	"time"
)

// A Log numbers the stream's events and keeps them for clients that
// resume: an event's id is its position in the log, the same for every
// transport. MemoryLog, a window of events in this process, is the default;
// a log shared by several replicas (a SharedLog: NATS JetStream, whose
// stream sequence is the id) implements the same methods, and nothing that
// reads the stream — no transport — changes.
//
// The hub calls a Log's methods one at a time, holding its lock, so a Log
// need not be safe for concurrent use; it must not block for long.
type Log interface {
	// Append gives an event the next id and keeps it. A SharedLog only
	// sends the event and returns nil: it comes back, numbered, through
	// Hub.Deliver.
	Append(e Entry) (*Event, error)
	// After returns every event after id, oldest first, or a
	// *PositionError when the log cannot say what came after id: it is
	// from another run or epoch, older than what the log keeps, or newer
	// than any event.
	After(id uint64) ([]*Event, error)
	// Head is the id of the newest event; Epoch()-1 before the first.
	Head() uint64
	// Epoch is the first id of the log's current epoch: ids below it
	// belong to another run or epoch and cannot be resumed from.
	Epoch() uint64
}

// An Entry is an event before the log numbers it.
type Entry struct {
	Type, Source string
	Key          string // the Message's
	ID           string // the Message's: a shared log keeps one event of an ID
	Time         time.Time
	Body         []byte // the JSON object past seq, type, ts and source; nil: none
}

// A SharedLog is a Log kept outside this process and shared by several
// hubs. Its Append sends the event to the log and returns nil; the log
// gives it its id, and every hub that shares the log gets every event,
// whoever published it, in the log's order, through Hub.Deliver, which
// hands it to Keep under the hub's lock before any subscriber sees it.
//
// Unlike the other methods, Append is called without the hub's lock, and
// may be called by several goroutines at once.
type SharedLog interface {
	Log
	// Keep adds a delivered event to what After answers from.
	Keep(ev *Event)
}

// A PositionError says why a log cannot replay from a position; its
// Reason is one of the Reset reasons, and what a reset event carries.
type PositionError struct {
	ID     uint64
	Reason string
}

func (e *PositionError) Error() string {
	return fmt.Sprintf("stream: cannot resume from %d: %s", e.ID, e.Reason)
}

// A Window keeps the newest events of a log, oldest first, for clients
// that resume: MemoryLog's, and a SharedLog's copy of its stream. Ids
// increase through it but may skip numbers (a shared stream's events gone
// by age before a replica read them). It is not safe for concurrent use.
type Window struct {
	evs   []*Event // circular, len == size once full
	start int      // index of the oldest
	size  int
}

// NewWindow keeps the newest size events.
func NewWindow(size int) *Window {
	size = max(size, 1)
	return &Window{size: size, evs: make([]*Event, 0, min(size, 1024))}
}

// Keep adds the newest event, dropping the oldest once full.
func (w *Window) Keep(ev *Event) {
	if len(w.evs) < w.size {
		w.evs = append(w.evs, ev)
		return
	}
	w.evs[w.start] = ev
	if w.start++; w.start == len(w.evs) {
		w.start = 0
	}
}

// Clear forgets every event.
func (w *Window) Clear() {
	clear(w.evs)
	w.evs, w.start = w.evs[:0], 0
}

// Oldest is the oldest event kept; nil when none is.
func (w *Window) Oldest() *Event {
	if len(w.evs) == 0 {
		return nil
	}
	return w.at(0)
}

// After returns the events kept with ids above id, oldest first.
func (w *Window) After(id uint64) []*Event {
	n := len(w.evs)
	lo := sort.Search(n, func(i int) bool { return w.at(i).ID > id })
	out := make([]*Event, 0, n-lo)
	for i := lo; i < n; i++ {
		out = append(out, w.at(i))
	}
	return out
}

// at returns the i-th oldest event.
func (w *Window) at(i int) *Event {
	if i += w.start; i >= len(w.evs) {
		i -= len(w.evs)
	}
	return w.evs[i]
}

// MemoryLog is the in-process Log: ids count up from the run's first id
// (see NextRunID), and the newest events are kept in a fixed window.
type MemoryLog struct {
	first, next uint64
	window      *Window
	now         func() time.Time
}

var _ Log = (*MemoryLog)(nil)

// NewMemoryLog returns a log whose first event gets id first (0: now in
// microseconds) and that keeps the newest size events.
func NewMemoryLog(first uint64, size int, now func() time.Time) *MemoryLog {
	if now == nil {
		now = time.Now
	}
	if first == 0 || first > MaxID {
		first = epochStart(now())
	}
	return &MemoryLog{first: first, next: first, window: NewWindow(size), now: now}
}

// Append encodes the event with the next id and keeps it, dropping the
// oldest once the window is full. Past MaxID it starts a new epoch.
func (l *MemoryLog) Append(e Entry) (*Event, error) {
	if l.next > MaxID {
		l.newEpoch()
	}
	ev := encodeEvent(l.next, e.Type, e.Source, e.Time, e.Body)
	l.next++
	l.window.Keep(ev)
	return ev, nil
}

// newEpoch starts ids again from a new epoch once they reach MaxID: the
// window is emptied (its ids are of the old epoch), so a client resuming
// from an old id is told its position is lost.
func (l *MemoryLog) newEpoch() {
	l.first = epochStart(l.now())
	l.next = l.first
	l.window.Clear()
}

// After returns the events after id still in the window.
func (l *MemoryLog) After(id uint64) ([]*Event, error) {
	head := l.next - 1
	switch {
	case id == head:
		return nil, nil
	case id > head:
		return nil, &PositionError{id, ResetUnknown}
	case id+1 < l.first:
		// first-1 is where a client stands that got a reset before this
		// run published anything: it resumes from this run's start.
		return nil, &PositionError{id, ResetOtherRun}
	}
	oldest := l.window.Oldest()
	switch {
	case oldest == nil:
		return nil, nil
	case id+1 < oldest.ID:
		return nil, &PositionError{id, ResetTooOld}
	}
	return l.window.After(id), nil
}

// Head is the id of the newest event.
func (l *MemoryLog) Head() uint64 { return l.next - 1 }

// Epoch is the first id of this run or epoch.
func (l *MemoryLog) Epoch() uint64 { return l.first }
