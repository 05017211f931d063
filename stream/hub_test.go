package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newTestHub(t *testing.T, opts HubOptions) *Hub {
	t.Helper()
	if opts.FirstID == 0 {
		opts.FirstID = 1000
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	h := NewHub(opts)
	t.Cleanup(h.Close)
	return h
}

func publishSamples(t *testing.T, h *Hub, source string, n int) []*Event {
	t.Helper()
	var out []*Event
	for i := range n {
		ev, err := h.Publish(Message{Type: TypeSample, Source: source, Key: "sample/" + source,
			Body: map[string]any{"metrics": map[string]float64{"i": float64(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func ids(evs []*Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

func TestEventEncoding(t *testing.T) {
	h := newTestHub(t, HubOptions{FirstID: 42})
	ev, err := h.Publish(Message{Type: TypeSample, Source: "host/web \"1\"", Time: testNow.Add(1500 * time.Millisecond),
		Body: map[string]any{"metrics": map[string]float64{"cpu.percent": 12.5}}})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"seq":42,"type":"sample","ts":"2026-11-23T10:00:01.500Z","source":"host/web \"1\"","metrics":{"cpu.percent":12.5}}`
	if string(ev.JSON()) != wantJSON {
		t.Fatalf("JSON =\n%s\nwant\n%s", ev.JSON(), wantJSON)
	}
	wantFrame := "id: 42\nevent: sample\ndata: " + wantJSON + "\n\n"
	if string(ev.Frame()) != wantFrame {
		t.Fatalf("Frame =\n%q\nwant\n%q", ev.Frame(), wantFrame)
	}
	// A WHATWG parser reads back exactly the event.
	var got []sse.Event
	for e, err := range sse.Read(bytes.NewReader(ev.Frame()), nil) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 1 || got[0].LastEventID != "42" || got[0].Type != "sample" || got[0].Data != wantJSON {
		t.Fatalf("parsed %+v", got)
	}
	// A message without body still yields a JSON object.
	ev, _ = h.Publish(Message{Type: TypeSource, Source: "s"})
	var m map[string]any
	if err := json.Unmarshal(ev.JSON(), &m); err != nil || m["seq"] != float64(43) {
		t.Fatalf("bodyless event %s: %v", ev.JSON(), err)
	}
}

// TestFrameIsGoSSEs: an event's frame, written by hand to spare copies,
// is byte for byte the one go-sse's Message writes for it, with and
// without an id, published or read back from a journal.
func TestFrameIsGoSSEs(t *testing.T) {
	body := []byte(`{"metrics":{"cpu.percent":12.5},"labels":{"role":"web"}}`)
	for _, ev := range []*Event{
		encodeEvent(42, TypeSample, "host/a", testNow, body),
		encodeEvent(7, TypeSource, "", testNow, []byte(`{}`)),
		encodeEvent(0, TypeReset, "", testNow, []byte(`{"reason":"lost"}`)),
		storedEvent(1<<53-1, TypeAlert, "host/b", testNow, []byte(`{"seq":9007199254740991,"type":"alert"}`)),
	} {
		msg := &sse.Message{Type: sse.Type(ev.Type)}
		if ev.ID != 0 {
			msg.ID = sse.ID(strconv.FormatUint(ev.ID, 10))
		}
		msg.AppendData(string(ev.JSON()))
		want, err := msg.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Frame(), want) {
			t.Errorf("frame\n%q\ngo-sse writes\n%q", ev.Frame(), want)
		}
		if line := ev.Line(); string(line) != string(ev.JSON())+"\n" {
			t.Errorf("line %q", line)
		}
	}
}

// TestAppendJSONString holds the source's writer to encoding/json: names
// copied as they are, and every string JSON escapes, or that
// encoding/json escapes for HTML or mends as UTF-8.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "host/web-1", "service/checkout{region=eu}", `a"b`, `a\b`, "a\nb", "\x00", "\x1f", "\x7f",
		"<script>", "a&b", "é", "\xff", "\u2028", "host/ä", strings.Repeat("x", 300)} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("prefix"), s); string(got) != "prefix"+string(want) {
			t.Errorf("%q: %s, encoding/json writes %s", s, got, want)
		}
	}
}

// TestAppendTime holds the event time's writer to time's own formatting of
// the same layout: years at the ends of four digits and beyond, every
// millisecond's rounding (down, as time truncates), zones other than UTC.
func TestAppendTime(t *testing.T) {
	fra := time.FixedZone("CET", 3600)
	times := []time.Time{
		testNow, {}, time.Unix(0, 0), time.Unix(0, 999_999_999), time.Unix(-1, 1),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 30, 0, 500_000_000, fra),
	}
	for i := range 10000 {
		times = append(times, time.Unix(int64(i)*7919*104729, int64(i)*999_983%1e9).In(fra))
	}
	for _, tm := range times {
		want := tm.UTC().Format(timeLayout)
		if got := string(appendTime([]byte("x"), tm)); got != "x"+want {
			t.Fatalf("appendTime(%v) = %q, want %q", tm, got, "x"+want)
		}
	}
}

func TestPublishRejectsBadMessages(t *testing.T) {
	h := newTestHub(t, HubOptions{})
	for _, m := range []Message{
		{Type: "bogus"},
		{Type: TypeReset},
		{Type: TypeSample, Body: []int{1}},
		{Type: TypeSample, Body: map[string]any{"f": func() {}}},
	} {
		if _, err := h.Publish(m); err == nil {
			t.Errorf("Publish(%+v) succeeded", m)
		}
	}
	if h.LastID() != 999 {
		t.Fatalf("a rejected message used an id: LastID = %d", h.LastID())
	}
}

// TestPublishKeepsNothingOfABody: a hub that republishes its agents'
// samples reuses one buffer for their bodies; an event published, and
// replayed, is the body as it was when published.
func TestPublishKeepsNothingOfABody(t *testing.T) {
	h := newTestHub(t, HubOptions{Replay: 8})
	buf := []byte(`{"metrics":{"v":1}}`)
	ev, err := h.Publish(Message{Type: TypeSample, Source: "host/a", Body: json.RawMessage(buf)})
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"metrics":{"v":2}}`)
	if _, err := h.Publish(Message{Type: TypeSample, Source: "host/a", Body: json.RawMessage(buf)}); err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"metrics":{"x":3}}`)
	evs, err := h.log.After(ev.ID - 1)
	if err != nil || len(evs) != 2 {
		t.Fatalf("replay: %d events, %v", len(evs), err)
	}
	for i, ev := range evs {
		if want := fmt.Sprintf(`"metrics":{"v":%d}}`, i+1); !strings.HasSuffix(string(ev.JSON()), want) {
			t.Errorf("event %d: %s, want it to end %s", i, ev.JSON(), want)
		}
	}
}

func TestIDsIncreaseStrictly(t *testing.T) {
	h := newTestHub(t, HubOptions{Replay: 8})
	evs := publishSamples(t, h, "host/a", 50)
	for i := 1; i < len(evs); i++ {
		if evs[i].ID != evs[i-1].ID+1 {
			t.Fatalf("id %d follows %d", evs[i].ID, evs[i-1].ID)
		}
	}
	// A new run starts after everything the last one used.
	next := NextRunID(h.LastID(), testNow.Add(-time.Hour))
	if next <= h.LastID() {
		t.Fatalf("next run starts at %d, not after %d", next, h.LastID())
	}
	if got := NextRunID(0, testNow); got != uint64(testNow.UnixMicro()) {
		t.Fatalf("NextRunID without a floor = %d", got)
	}
}

// TestIDsStaySafeIntegers: ids are numbers in every event's JSON, so they
// stay within JavaScript's safe integers and never wrap: a saved id near
// the limit starts a new epoch, and a client from before it gets a reset.
func TestIDsStaySafeIntegers(t *testing.T) {
	for _, floor := range []uint64{MaxID - 5, MaxID, MaxID + 10, 1 << 63} {
		if got := NextRunID(floor, testNow); got > MaxID-1<<40 || got != uint64(testNow.UnixMicro()) {
			t.Errorf("NextRunID(%d) = %d: want a new epoch from now", floor, got)
		}
	}
	h := newTestHub(t, HubOptions{FirstID: MaxID - 2})
	evs := publishSamples(t, h, "host/a", 5)
	for _, ev := range evs {
		if ev.ID > MaxID || ev.ID == 0 {
			t.Fatalf("id %d beyond 2^53-1: %v", ev.ID, ids(evs))
		}
	}
	if evs[2].ID != MaxID || evs[3].ID >= evs[2].ID {
		t.Fatalf("ids %v: want the limit reached, then a new epoch", ids(evs))
	}
	sub, err := h.Subscribe(Cursor{LastID: strconv.FormatUint(MaxID-1, 10)}, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if len(sub.Replay) != 1 || sub.Replay[0].Type != TypeReset || sub.Replay[0].ID != evs[4].ID {
		t.Fatalf("a client from the old epoch: %+v", sub.Replay)
	}
	// A client of the new epoch resumes normally.
	sub2, _ := h.Subscribe(Cursor{LastID: strconv.FormatUint(evs[3].ID, 10)}, Filter{})
	defer sub2.Close()
	if len(sub2.Replay) != 1 || sub2.Replay[0].ID != evs[4].ID {
		t.Fatalf("a client of the new epoch: %v", ids(sub2.Replay))
	}
}

func TestResume(t *testing.T) {
	h := newTestHub(t, HubOptions{Replay: 10, FirstID: 1000})
	publishSamples(t, h, "host/a", 25) // ids 1000..1024; window holds 1015..1024
	tests := []struct {
		name      string
		last      string
		wantIDs   []uint64
		wantReset string
	}{
		{"new client gets live events only", "", nil, ""},
		{"newest id: nothing to replay", "1024", nil, ""},
		{"middle id: the rest of the window", "1020", []uint64{1021, 1022, 1023, 1024}, ""},
		{"oldest kept id", "1015", []uint64{1016, 1017, 1018, 1019, 1020, 1021, 1022, 1023, 1024}, ""},
		{"just before the window: all of it", "1014", []uint64{1015, 1016, 1017, 1018, 1019, 1020, 1021, 1022, 1023, 1024}, ""},
		{"older than the window", "1013", nil, ResetTooOld},
		{"from another run", "998", nil, ResetOtherRun},
		{"from the future", "1025", nil, ResetUnknown},
		{"malformed", "abc", nil, ResetMalformed},
		{"negative", "-5", nil, ResetMalformed},
		{"overflow", "99999999999999999999999", nil, ResetMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := h.Subscribe(Cursor{LastID: tt.last}, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if tt.wantReset != "" {
				if len(sub.Replay) != 1 || sub.Replay[0].Type != TypeReset {
					t.Fatalf("replay = %v, want one reset", ids(sub.Replay))
				}
				r := sub.Replay[0]
				var body struct {
					Seq    uint64            `json:"seq"`
					Reason string            `json:"reason"`
					Last   string            `json:"last_event_id"`
					Events []json.RawMessage `json:"events"`
				}
				if err := json.Unmarshal(r.JSON(), &body); err != nil {
					t.Fatalf("reset data %s: %v", r.JSON(), err)
				}
				if r.ID != 1024 || body.Seq != 1024 || body.Reason != tt.wantReset || len(body.Events) != 1 {
					t.Fatalf("reset id %d, data %s", r.ID, r.JSON())
				}
				if !bytes.Contains(r.Frame(), []byte("id: 1024\nevent: reset\n")) {
					t.Fatalf("reset frame %q", r.Frame())
				}
				return
			}
			if got := ids(sub.Replay); fmt.Sprint(got) != fmt.Sprint(tt.wantIDs) {
				t.Fatalf("replayed %v, want %v", got, tt.wantIDs)
			}
		})
	}
}

// A client that got a reset before this run published anything holds
// FirstID-1; it resumes from this run's first event.
func TestResumeFromBeforeTheFirstEvent(t *testing.T) {
	h := newTestHub(t, HubOptions{FirstID: 1000})
	sub, _ := h.Subscribe(Cursor{LastID: "5"}, Filter{})
	if len(sub.Replay) != 1 || sub.Replay[0].Type != TypeReset || sub.Replay[0].ID != 999 {
		t.Fatalf("reset before the first event: %v", sub.Replay)
	}
	publishSamples(t, h, "host/a", 3)
	sub, _ = h.Subscribe(Cursor{LastID: "999"}, Filter{})
	if got := ids(sub.Replay); fmt.Sprint(got) != "[1000 1001 1002]" {
		t.Fatalf("resumed from 999: %v", got)
	}
}

func TestResumeThenLiveHasNoGapOrRepeat(t *testing.T) {
	h := newTestHub(t, HubOptions{Replay: 100, FirstID: 1})
	publishSamples(t, h, "host/a", 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // publishing races with subscribing
		defer wg.Done()
		publishSamples(t, h, "host/a", 50)
	}()
	sub, err := h.Subscribe(Cursor{LastID: "5"}, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := ids(sub.Replay)
	for len(sub.C()) > 0 {
		got = append(got, (<-sub.C()).ID)
	}
	if len(got) != 55 {
		t.Fatalf("got %d events, want 55 (6..60)", len(got))
	}
	for i, id := range got {
		if id != uint64(6+i) {
			t.Fatalf("event %d has id %d, want %d", i, id, 6+i)
		}
	}
}

func TestResumeWithFilter(t *testing.T) {
	h := newTestHub(t, HubOptions{FirstID: 1})
	publishSamples(t, h, "host/a", 2)    // 1, 2
	publishSamples(t, h, "service/x", 2) // 3, 4
	publishSamples(t, h, "host/b", 1)    // 5
	sub, _ := h.Subscribe(Cursor{LastID: "1"}, Filter{Sources: []string{"host/*"}})
	if got := ids(sub.Replay); fmt.Sprint(got) != "[2 5]" {
		t.Fatalf("replay = %v", got)
	}
	// The reset snapshot is filtered too.
	sub, _ = h.Subscribe(Cursor{LastID: "x"}, Filter{Sources: []string{"service/*"}})
	var body struct{ Events []struct{ Source string } }
	json.Unmarshal(sub.Replay[0].JSON(), &body)
	if len(body.Events) != 1 || body.Events[0].Source != "service/x" {
		t.Fatalf("snapshot %s", sub.Replay[0].JSON())
	}
	// Live events are filtered before they take queue space.
	publishSamples(t, h, "host/a", 300)
	if sub.Err() != nil || len(sub.C()) != 0 {
		t.Fatalf("filtered-out events reached the subscriber: err %v, queued %d", sub.Err(), len(sub.C()))
	}
}

func TestSlowSubscriberIsDroppedAndOthersUnaffected(t *testing.T) {
	h := newTestHub(t, HubOptions{Queue: 4, Replay: 64, FirstID: 1})
	slow, _ := h.Subscribe(Cursor{}, Filter{})
	fast, _ := h.Subscribe(Cursor{}, Filter{})
	var got []uint64
	for range 20 {
		publishSamples(t, h, "host/a", 1) // never blocks, although slow never reads
		got = append(got, (<-fast.C()).ID)
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber was not disconnected")
	}
	if !errors.Is(slow.Err(), ErrSlow) {
		t.Fatalf("slow.Err() = %v", slow.Err())
	}
	if fast.Err() != nil || len(got) != 20 || got[19] != 20 {
		t.Fatalf("fast subscriber: err %v, got %v", fast.Err(), got)
	}
	if h.Subscribers() != 1 || h.dropped.Get() != 1 {
		t.Fatalf("subscribers %d, dropped %d", h.Subscribers(), h.dropped.Get())
	}
	// What the slow subscriber received, it keeps; the rest it replays.
	var lastSeen uint64
	for len(slow.C()) > 0 {
		lastSeen = (<-slow.C()).ID
	}
	again, _ := h.Subscribe(Cursor{LastID: strconv.FormatUint(lastSeen, 10)}, Filter{})
	if len(again.Replay) != int(20-lastSeen) || again.Replay[0].ID != lastSeen+1 {
		t.Fatalf("resumed after %d: replay %v", lastSeen, ids(again.Replay))
	}
}

func TestPublishNeverBlocksOnManySlowSubscribers(t *testing.T) {
	h := newTestHub(t, HubOptions{Queue: 2, FirstID: 1})
	for range 1000 {
		h.Subscribe(Cursor{}, Filter{})
	}
	publishSamples(t, h, "host/a", 10) // would deadlock if Publish waited
	if h.Subscribers() != 0 {
		t.Fatalf("%d slow subscribers left", h.Subscribers())
	}
}

func TestHeartbeatOnlyToIdleSubscribers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(HubOptions{Heartbeat: 10 * time.Second, FirstID: 1})
		idle, _ := h.Subscribe(Cursor{}, Filter{})
		busy, _ := h.Subscribe(Cursor{}, Filter{})
		done := make(chan struct{})
		go func() { h.Run(t.Context()); close(done) }()

		time.Sleep(9 * time.Second)
		synctest.Wait()
		if len(idle.C()) != 0 {
			t.Fatal("heartbeat before the interval")
		}
		h.Publish(Message{Type: TypeSample, Source: "host/a", Body: map[string]any{}})
		<-idle.C() // idle reads it; busy leaves it queued
		time.Sleep(time.Second)
		synctest.Wait()
		if ev := <-idle.C(); !ev.IsHeartbeat() || string(ev.Frame()) != ": heartbeat\nid: 1\n\n" {
			t.Fatalf("got %q, want a heartbeat comment with the position", ev.Frame())
		}
		if len(busy.C()) != 1 {
			t.Fatalf("busy subscriber has %d queued, want only its event", len(busy.C()))
		}
		h.Close()
		<-done
	})
}

func TestCloseDisconnectsEveryone(t *testing.T) {
	h := newTestHub(t, HubOptions{})
	a, _ := h.Subscribe(Cursor{}, Filter{})
	b, _ := h.Subscribe(Cursor{}, Filter{})
	b.Close()
	b.Close() // idempotent
	h.Close()
	h.Close()
	<-a.Done()
	if !errors.Is(a.Err(), ErrClosed) || b.Err() != nil {
		t.Fatalf("a.Err %v, b.Err %v", a.Err(), b.Err())
	}
	if _, err := h.Publish(Message{Type: TypeSample}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := h.Subscribe(Cursor{}, Filter{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0", "1", "1795431473113815", "18446744073709551615", "18446744073709551616", "-1", "+1", " 1", "1e3", "0x10", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseID(s)
		if err != nil {
			return
		}
		// Only canonical decimal numbers are accepted, possibly with
		// leading zeros; they round-trip.
		back := strconv.FormatUint(n, 10)
		trimmed := bytes.TrimLeft([]byte(s), "0")
		if len(trimmed) == 0 {
			trimmed = []byte("0")
		}
		if back != string(trimmed) {
			t.Fatalf("ParseID(%q) = %d", s, n)
		}
	})
}

func FuzzSubscribeLastEventID(f *testing.F) {
	for _, s := range []string{"", "5", "10", "11", "abc", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, last string) {
		h := NewHub(HubOptions{Replay: 4, FirstID: 5, Now: func() time.Time { return testNow }})
		defer h.Close()
		for range 6 { // ids 5..10, window 7..10
			h.Publish(Message{Type: TypeSample, Source: "s", Key: "k"})
		}
		sub, err := h.Subscribe(Cursor{LastID: last}, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		id, perr := ParseID(last)
		switch {
		case last == "" || (perr == nil && id == 10):
			if len(sub.Replay) != 0 {
				t.Fatalf("%q: replay %v", last, ids(sub.Replay))
			}
		case perr == nil && id >= 6 && id < 10:
			if len(sub.Replay) != int(10-id) || sub.Replay[0].ID != id+1 {
				t.Fatalf("%q: replay %v", last, ids(sub.Replay))
			}
		default:
			if len(sub.Replay) != 1 || sub.Replay[0].Type != TypeReset || sub.Replay[0].ID != 10 {
				t.Fatalf("%q: want a reset, got %v", last, ids(sub.Replay))
			}
			if !json.Valid(sub.Replay[0].JSON()) {
				t.Fatalf("%q: reset data is not JSON: %s", last, sub.Replay[0].JSON())
			}
		}
	})
}

func TestEventLineIsJSONAndNewline(t *testing.T) {
	h := newTestHub(t, HubOptions{})
	ev, _ := h.Publish(Message{Type: TypeSample, Source: "s", Body: map[string]any{"metrics": map[string]float64{"x": 1}}})
	if string(ev.Line()) != string(ev.JSON())+"\n" {
		t.Fatalf("line %q", ev.Line())
	}
	if string(heartbeatAt(7).Line()) != "\n" {
		t.Fatalf("heartbeat line %q", heartbeatAt(7).Line())
	}
	allocs := testing.AllocsPerRun(100, func() { _ = ev.Line() })
	if allocs != 0 {
		t.Fatalf("Line allocates %v times", allocs)
	}
}

// TestResetCarriesEveryMissedTransition: a client whose position is lost —
// it is from the previous run, or older than the window — gets in its
// reset the newest sample of every source and every alert and source
// event it missed, in order: a pending then a firing are two events, not
// the newest one alone.
func TestResetCarriesEveryMissedTransition(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	j.now = func() time.Time { return testNow } // retention counts from the events' clock
	h1 := newTestHub(t, HubOptions{FirstID: 1000, Replay: 16, History: j})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h1.Run(ctx) }()
	alert := func(h *Hub, transition string) *Event {
		ev, err := h.Publish(Message{Type: TypeAlert, Source: "host/a", Key: "alert/fp1",
			Body: map[string]any{"transition": transition, "fingerprint": "fp1"}})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	publishSamples(t, h1, "host/a", 3)
	seen := alert(h1, "pending") // the client has seen this one
	firing := alert(h1, "firing")
	publishSamples(t, h1, "host/a", 3)
	// vigil stops (what is pending is written) and starts again.
	cancel()
	<-done
	j.Close()
	j, err = OpenJournal(dir, NextRunID(h1.LastID(), testNow))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.now = func() time.Time { return testNow }
	h2 := newTestHub(t, HubOptions{FirstID: NextRunID(h1.LastID(), testNow), Replay: 16, History: j})
	up, _ := h2.Publish(Message{Type: TypeSource, Source: "host/a", Key: "source/host/a", Body: map[string]any{"state": "up"}})
	resolved := alert(h2, "resolved")
	pending := alert(h2, "pending")
	again := alert(h2, "firing")
	newest := publishSamples(t, h2, "host/a", 2)[1]
	publishSamples(t, h2, "host/b", 1)

	check := func(name string, last uint64, f Filter, want []uint64) {
		t.Helper()
		sub, err := h2.Subscribe(Cursor{LastID: strconv.FormatUint(last, 10)}, f)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if len(sub.Replay) != 1 || sub.Replay[0].Type != TypeReset {
			t.Fatalf("%s: replay %v, want a reset", name, ids(sub.Replay))
		}
		var body struct {
			Events []struct{ Seq uint64 } `json:"events"`
		}
		json.Unmarshal(sub.Replay[0].JSON(), &body)
		var got []uint64
		for _, e := range body.Events {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: reset carries %v, want %v", name, got, want)
		}
		if sub.Head != h2.LastID() || sub.Replay[0].ID != sub.Head {
			t.Fatalf("%s: head %d, reset id %d, newest %d", name, sub.Head, sub.Replay[0].ID, h2.LastID())
		}
	}
	// From the previous run, alerts only: every alert event after its id,
	// in order, none collapsed.
	check("previous run, alerts", seen.ID, Filter{Types: []string{TypeAlert}},
		[]uint64{firing.ID, resolved.ID, pending.ID, again.ID})
	// Everything of host/a: the transitions, and the newest sample.
	check("previous run, host/a", seen.ID, Filter{Sources: []string{"host/a"}},
		[]uint64{firing.ID, up.ID, resolved.ID, pending.ID, again.ID, newest.ID})

	// In the same run, from before the window: what it missed, and the
	// newest state of every key (the source's, which it had).
	publishSamples(t, h2, "host/a", 40)
	check("older than the window", resolved.ID, Filter{Types: []string{TypeAlert, TypeSource}},
		[]uint64{up.ID, pending.ID, again.ID})
}

// TestHeadAndHeartbeatArePositions: a subscriber knows where it stands
// as soon as it subscribes, and every heartbeat says so again.
func TestHeadAndHeartbeatArePositions(t *testing.T) {
	h := newTestHub(t, HubOptions{FirstID: 500, Heartbeat: 10 * time.Millisecond})
	publishSamples(t, h, "host/a", 5) // 500..504
	sub, _ := h.Subscribe(Cursor{}, Filter{Types: []string{TypeAlert}})
	defer sub.Close()
	if sub.Head != 504 {
		t.Fatalf("head %d, want 504", sub.Head)
	}
	resumed, _ := h.Subscribe(Cursor{LastID: "501"}, Filter{Sources: []string{"host/none"}})
	defer resumed.Close()
	if len(resumed.Replay) != 0 || resumed.Head != 504 {
		t.Fatalf("a filtered client that missed nothing it wants: replay %v head %d", ids(resumed.Replay), resumed.Head)
	}
	publishSamples(t, h, "host/a", 3) // 505..507: not for sub
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	select {
	case ev := <-sub.C():
		if !ev.IsHeartbeat() || !strings.HasSuffix(string(ev.Frame()), "id: 507\n\n") {
			t.Fatalf("heartbeat frame %q, want one with id: 507", ev.Frame())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat")
	}
}

// A Window keeps the newest events and answers after an id by looking it
// up: a shared log's ids may skip numbers.
func TestWindowWithGaps(t *testing.T) {
	w := NewWindow(3)
	if w.Oldest() != nil || len(w.After(0)) != 0 {
		t.Fatal("an empty window holds something")
	}
	for _, id := range []uint64{1, 2, 5, 6} {
		w.Keep(&Event{ID: id})
	}
	ids := func(evs []*Event) (out []uint64) {
		for _, ev := range evs {
			out = append(out, ev.ID)
		}
		return out
	}
	if got := w.Oldest().ID; got != 2 {
		t.Fatalf("oldest %d, want 2 (1 dropped)", got)
	}
	for _, c := range []struct {
		after uint64
		want  []uint64
	}{{2, []uint64{5, 6}}, {3, []uint64{5, 6}}, {5, []uint64{6}}, {6, nil}, {1, []uint64{2, 5, 6}}} {
		if got := ids(w.After(c.after)); !slices.Equal(got, c.want) {
			t.Errorf("after %d: %v, want %v", c.after, got, c.want)
		}
	}
	w.Clear()
	if w.Oldest() != nil {
		t.Fatal("a cleared window holds something")
	}
}
