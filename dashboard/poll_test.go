package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"vigil/internal/vigiltest"
	"vigil/stream"
)

type pollResult struct {
	code int
	ans  struct {
		Events []struct {
			Seq    uint64
			Source string
			Type   string
		}
		Next  string
		Error string
	}
}

func poll(t *testing.T, url string) pollResult {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r pollResult
	r.code = resp.StatusCode
	json.NewDecoder(resp.Body).Decode(&r.ans)
	return r
}

func TestLongPoll(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Replay: 1000}, Options{})
	for i := range 3 {
		a.publish(t, "host/a", float64(i)) // 100, 101, 102
	}
	// Events after the cursor are answered at once.
	r := poll(t, a.srv.URL+"/api/v1/poll?after=100")
	if r.code != 200 || len(r.ans.Events) != 2 || r.ans.Events[0].Seq != 101 || r.ans.Next != "102" {
		t.Fatalf("replay: %+v", r)
	}
	// Nothing new: an empty batch when the timeout passes, same cursor.
	if r := poll(t, a.srv.URL+"/api/v1/poll?after=102&timeout=0s"); len(r.ans.Events) != 0 || r.ans.Next != "102" {
		t.Fatalf("timeout: %+v", r)
	}
	// A waiting poller is answered by the next event.
	done := make(chan pollResult, 1)
	go func() { done <- poll(t, a.srv.URL+"/api/v1/poll?after=102&timeout=30s") }()
	waitSubscribers(t, a.hub, 1)
	a.publish(t, "host/a", 9)
	select {
	case r := <-done:
		if len(r.ans.Events) != 1 || r.ans.Events[0].Seq != 103 || r.ans.Next != "103" {
			t.Fatalf("woken poll: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting poll was not answered")
	}
	if a.hub.Subscribers() != 0 {
		t.Fatal("a finished poll left its subscription")
	}
	// Batches are bounded; the cursor carries on.
	for i := range 600 {
		a.publish(t, "host/b", float64(i))
	}
	r = poll(t, a.srv.URL+"/api/v1/poll?after=103&source=host/b")
	if len(r.ans.Events) != MaxPollBatch || r.ans.Next != strconv.Itoa(103+MaxPollBatch) {
		t.Fatalf("first batch: %d events, next %s", len(r.ans.Events), r.ans.Next)
	}
	r = poll(t, a.srv.URL+"/api/v1/poll?after="+r.ans.Next+"&source=host/b")
	if len(r.ans.Events) != 100 || r.ans.Events[99].Seq != 703 {
		t.Fatalf("second batch: %d events", len(r.ans.Events))
	}
	// A cursor from another run: a reset, as on the stream.
	if r := poll(t, a.srv.URL+"/api/v1/poll?after=5"); len(r.ans.Events) != 1 || r.ans.Events[0].Type != "reset" || r.ans.Next != "703" {
		t.Fatalf("old cursor: %+v", r)
	}
}

func TestLongPollBadInput(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{}, Options{})
	for _, q := range []string{"after=abc", "after=-1", "timeout=forever", "timeout=5m", "type=nope"} {
		if r := poll(t, a.srv.URL+"/api/v1/poll?"+q); r.code != 400 || r.ans.Error == "" {
			t.Errorf("%s: %d %q", q, r.code, r.ans.Error)
		}
	}
}

// TestPollThenStream moves a client from long polling to the event stream
// with the poll's cursor: every event once, none skipped.
func TestPollThenStream(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 1, Replay: 100}, Options{})
	for i := range 5 {
		a.publish(t, "host/a", float64(i))
	}
	r := poll(t, a.srv.URL+"/api/v1/poll?after=2")
	seen := []uint64{}
	for _, ev := range r.ans.Events {
		seen = append(seen, ev.Seq)
	}
	a.publish(t, "host/a", 5) // 6: published between the poll and the stream
	_, ch := vigiltest.SSE(t, a.srv.URL+"/events?lastEventId="+r.ans.Next, nil)
	waitSubscribers(t, a.hub, 1)
	a.publish(t, "host/a", 6) // 7
	for len(seen) < 5 {
		ev := next(t, ch)
		id, _ := strconv.ParseUint(ev.LastEventID, 10, 64)
		seen = append(seen, id)
	}
	for i, id := range seen {
		if id != uint64(3+i) {
			t.Fatalf("ids %v, want 3..7 once each", seen)
		}
	}
}

func TestSnapshotETag(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 1}, Options{})
	a.publish(t, "host/a", 1)
	a.publish(t, "host/b", 2)
	a.publish(t, "host/a", 3)
	resp, err := http.Get(a.srv.URL + "/api/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	var snap struct {
		LastEventID string `json:"last_event_id"`
		Events      []struct {
			Seq     uint64
			Source  string
			Metrics map[string]float64
		}
	}
	json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if snap.LastEventID != "3" || len(snap.Events) != 2 || snap.Events[1].Source != "host/a" || snap.Events[1].Metrics["v"] != 3 || etag == "" {
		t.Fatalf("snapshot %+v, ETag %q", snap, etag)
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/api/v1/snapshot", nil)
	req.Header.Set("If-None-Match", etag)
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != 304 {
		t.Fatalf("unchanged snapshot: %d", r.StatusCode)
	}
	a.publish(t, "host/a", 4)
	if r, _ := http.DefaultClient.Do(req); r.StatusCode != 200 {
		t.Fatalf("changed snapshot: %d", r.StatusCode)
	}
}

func TestNDJSONStream(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 1, Replay: 100}, Options{})
	a.publish(t, "host/a", 1)
	a.publish(t, "service/x", 2)
	resp, err := http.Get(a.srv.URL + "/api/v1/stream?lastEventId=0&source=host/*")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	nextLine := func() map[string]any {
		for lines.Scan() {
			if lines.Text() == "" {
				continue // a heartbeat
			}
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("line %q is not JSON: %v", lines.Text(), err)
			}
			return m
		}
		t.Fatal("stream ended")
		return nil
	}
	if m := nextLine(); m["seq"] != 1.0 || m["source"] != "host/a" {
		t.Fatalf("replayed line %v", m)
	}
	a.publish(t, "service/x", 3) // filtered out
	a.publish(t, "host/a", 4)
	if m := nextLine(); m["seq"] != 4.0 || m["type"] != "sample" {
		t.Fatalf("live line %v", m)
	}
	// A bad filter is a JSON 400 before any streaming.
	if r, _ := http.Get(a.srv.URL + "/api/v1/stream?type=nope"); r.StatusCode != 400 {
		t.Fatalf("bad filter: %d", r.StatusCode)
	}
}

// TestLongPollOutlastsHeartbeats: a long poll waits for the timeout it
// asked for; the hub's heartbeats (every 20 ms here) do not end it early.
func TestLongPollOutlastsHeartbeats(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100, Heartbeat: 20 * time.Millisecond}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.hub.Run(ctx)
	a.publish(t, "host/a", 1) // 100
	done := make(chan pollResult, 1)
	go func() { done <- poll(t, a.srv.URL+"/api/v1/poll?after=100&timeout=30s") }()
	waitSubscribers(t, a.hub, 1)
	// Several heartbeats pass: an SSE client beside sees them.
	resp, err := http.Get(a.srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	beats := 0
	for beats < 3 {
		select {
		case r := <-done:
			t.Fatalf("the poll ended before its timeout, on a heartbeat: %+v", r)
		case l := <-lines:
			if l == ": heartbeat" {
				beats++
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeats")
		}
	}
	a.publish(t, "host/a", 2) // 101
	r := <-done
	if len(r.ans.Events) != 1 || r.ans.Events[0].Seq != 101 || r.ans.Next != "101" {
		t.Fatalf("after heartbeats the poll should carry the event: %+v", r)
	}
}

// TestFilteredLongPollMovesOnAtTimeout: a poll whose filter matched none
// of the events published while it waited ends, at its timeout, with the
// newest id as its next cursor: the events it passed over are not looked
// at again, and none it would have matched is skipped.
func TestFilteredLongPollMovesOnAtTimeout(t *testing.T) {
	a := newTestApp(t, stream.HubOptions{FirstID: 100}, Options{})
	a.publish(t, "host/a", 1) // 100
	done := make(chan pollResult, 1)
	go func() { done <- poll(t, a.srv.URL+"/api/v1/poll?after=100&timeout=500ms&type=alert") }()
	waitSubscribers(t, a.hub, 1)
	for i := range 3 {
		a.publish(t, "host/a", float64(i)) // 101, 102, 103: samples, not alerts
	}
	r := <-done
	if len(r.ans.Events) != 0 || r.ans.Next != "103" {
		t.Fatalf("a poll that matched nothing while 101 to 103 went by: %+v, want next 103", r)
	}
}
