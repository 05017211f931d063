package cluster

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"vigil/internal/vigiltest"
	"vigil/stream"
)

// replica is a hub on a Log, as vigil runs one with cluster.nats.
type replica struct {
	hub *stream.Hub
	log *Log
	mu  sync.Mutex
	by  map[uint64]string // replica that published each event
}

func startReplica(t *testing.T, n *vigiltest.NATS, name string, opts LogOptions) *replica {
	t.Helper()
	opts.Replica = name
	opts.Check = 50 * time.Millisecond
	l, err := NewLog(n.Connect(), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{log: l, hub: stream.NewHub(stream.HubOptions{Log: l}), by: map[uint64]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, r.hub, func(ev *stream.Event, from From) {
			r.mu.Lock()
			r.by[ev.ID] = from.Replica
			r.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); r.hub.Close(); <-done })
	select {
	case <-l.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the log did not reach its stream")
	}
	return r
}

func (r *replica) publish(t *testing.T, source string, v int) {
	t.Helper()
	ev, err := r.hub.Publish(stream.Message{Type: stream.TypeSample, Source: source, Key: "sample/" + source,
		Body: map[string]any{"metrics": map[string]int{"v": v}}})
	if err != nil || ev != nil {
		t.Fatalf("publish on a shared log: %v, %v; want nil, nil (the event comes back numbered)", ev, err)
	}
}

// take reads n events from a subscriber, failing after 10 s.
func take(t *testing.T, s *stream.Subscriber, n int) []*stream.Event {
	t.Helper()
	return takeWithin(t, s, n, 10*time.Second)
}

func takeWithin(t *testing.T, s *stream.Subscriber, n int, within time.Duration) []*stream.Event {
	t.Helper()
	timeout := time.After(within)
	var out []*stream.Event
	for len(out) < n {
		select {
		case ev := <-s.C():
			if !ev.IsHeartbeat() {
				out = append(out, ev)
			}
		case <-s.Done():
			t.Fatalf("subscriber ended after %d of %d events: %v", len(out), n, s.Err())
		case <-timeout:
			t.Fatalf("%d of %d events within %s", len(out), n, within)
		}
	}
	return out
}

func ids(evs []*stream.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func subscribe(t *testing.T, h *stream.Hub, last string) *stream.Subscriber {
	t.Helper()
	s, err := h.Subscribe(stream.Cursor{LastID: last}, stream.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Two replicas on one stream give every event, whichever published it,
// the same id, in the same order, and a client resumes on the other.
func TestReplicasShareOneNumbering(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	b := startReplica(t, n, "b", LogOptions{})
	sa, sb := subscribe(t, a.hub, ""), subscribe(t, b.hub, "")
	for i := range 10 {
		a.publish(t, "host/a", i)
		b.publish(t, "host/b", i)
	}
	ea, eb := take(t, sa, 20), take(t, sb, 20)
	for i := range ea {
		if ea[i].ID != eb[i].ID || string(ea[i].JSON()) != string(eb[i].JSON()) {
			t.Fatalf("event %d: %s on a, %s on b", i, ea[i].JSON(), eb[i].JSON())
		}
		if i > 0 && ea[i].ID != ea[i-1].ID+1 {
			t.Fatalf("ids %v do not follow one another", ids(ea))
		}
	}
	if want := `"seq":` + strconv.FormatUint(ea[0].ID, 10); string(ea[0].JSON()[1:len(want)+1]) != want {
		t.Fatalf("event JSON %s does not carry its id", ea[0].JSON())
	}
	// took hears of an event just after the hub has it: wait for the last.
	from := map[string]int{}
	waitFor(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.by[ea[len(ea)-1].ID]
		return ok
	}, "the replica's callback for every event")
	a.mu.Lock()
	for _, ev := range ea {
		from[a.by[ev.ID]]++
	}
	a.mu.Unlock()
	if from["a"] != 10 || from["b"] != 10 {
		t.Fatalf("replicas named on the events: %v, want 10 each", from)
	}

	// A client that had the first 7 on a resumes on b.
	rb := subscribe(t, b.hub, strconv.FormatUint(ea[6].ID, 10))
	if got, want := ids(rb.Replay), ids(ea[7:]); !equal(got, want) {
		t.Fatalf("resumed on b after %d: replay %v, want %v", ea[6].ID, got, want)
	}
	// And the newest state by key is the same on both.
	snapA, _ := a.hub.Snapshot(stream.Filter{})
	snapB, _ := b.hub.Snapshot(stream.Filter{})
	if !equal(ids(snapA), ids(snapB)) || len(snapA) != 2 {
		t.Fatalf("snapshots: a %v, b %v; want the same two", ids(snapA), ids(snapB))
	}
}

func equal(a, b []uint64) bool {
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

// A replica that starts reads the newest Window events of the stream, so
// a client resumes on it from an id given before it started.
func TestStartingReplicaFillsItsWindow(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{Window: 8})
	sa := subscribe(t, a.hub, "")
	for i := range 12 {
		a.publish(t, "host/a", i)
	}
	ea := take(t, sa, 12)

	b := startReplica(t, n, "b", LogOptions{Window: 8}) // returns once b is ready
	if head := b.log.Head(); head != ea[11].ID {
		t.Fatalf("b ready at %d before it read the stream's end %d: a client from a would get a reset", head, ea[11].ID)
	}
	rb := subscribe(t, b.hub, strconv.FormatUint(ea[5].ID, 10))
	if got, want := ids(rb.Replay), ids(ea[6:]); !equal(got, want) {
		t.Fatalf("resumed on b: replay %v, want %v", got, want)
	}
	old := subscribe(t, b.hub, strconv.FormatUint(ea[1].ID, 10))
	if len(old.Replay) != 1 || old.Replay[0].Type != stream.TypeReset {
		t.Fatalf("resuming before b's window: %v, want a reset", ids(old.Replay))
	}
}

// A stream deleted and made again is a new epoch: connected clients are
// told to resume, get a reset, and the new ids are above every old one.
func TestDeletedStreamIsANewEpoch(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	sa := subscribe(t, a.hub, "")
	for i := range 3 {
		a.publish(t, "host/a", i)
	}
	before := take(t, sa, 3)

	js, err := jetstream.New(n.Connect())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), DefaultStream); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sa.Done():
		if !errors.Is(sa.Err(), stream.ErrEpoch) {
			t.Fatalf("subscriber ended with %v, want ErrEpoch", sa.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connected subscriber was not told of the new epoch")
	}
	waitFor(t, func() bool { return a.log.Epoch() > before[2].ID }, "the new epoch")
	again := subscribe(t, a.hub, strconv.FormatUint(before[2].ID, 10))
	if len(again.Replay) != 1 || again.Replay[0].Type != stream.TypeReset {
		t.Fatalf("resuming from the old epoch: %v, want a reset", ids(again.Replay))
	}
	a.publish(t, "host/a", 99)
	after := take(t, again, 1)
	if after[0].ID <= before[2].ID {
		t.Fatalf("new epoch's first id %d is not above the old %d", after[0].ID, before[2].ID)
	}
}

// A NATS server that restarts with its store: the log says NATS is away
// meanwhile, and the stream goes on where it was, without a gap or a reset.
func TestNATSRestartKeepsTheStream(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	sa := subscribe(t, a.hub, "")
	for i := range 5 {
		a.publish(t, "host/a", i)
	}
	first := take(t, sa, 5)
	n.Stop()
	waitFor(t, func() bool { return a.log.Err() != nil }, "the log to say NATS is away")
	for i := range 3 { // held by the client while it reconnects
		a.publish(t, "host/a", 5+i)
	}
	n.Start()
	waitFor(t, func() bool { return a.log.Err() == nil }, "the log to read again")
	for i := range 5 {
		a.publish(t, "host/a", 8+i)
	}
	evs := append(first, take(t, sa, 8)...)
	for i := 1; i < len(evs); i++ {
		if evs[i].ID != evs[i-1].ID+1 || evs[i].Type != stream.TypeSample {
			t.Fatalf("across the restart: %v", ids(evs))
		}
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An agent's hub numbers its own events (a Tee over a MemoryLog) and
// pushes a copy of each into the stream, where a replica takes them,
// named after the agent, once each even if a copy is sent twice.
func TestAgentPushesCopies(t *testing.T) {
	n := vigiltest.StartNATS(t)
	r := startReplica(t, n, "r", LogOptions{})
	sr := subscribe(t, r.hub, "")

	shared, err := NewLog(n.Connect(), LogOptions{Replica: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := shared.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	tee := &Tee{Log: stream.NewMemoryLog(1, 16, nil), Shared: shared}
	agent := stream.NewHub(stream.HubOptions{Log: tee})
	defer agent.Close()
	sa := subscribe(t, agent, "")
	for i := range 5 {
		if _, err := agent.Publish(stream.Message{Type: stream.TypeSample, Source: "host/edge-1", Body: map[string]any{"metrics": map[string]int{"v": i}}}); err != nil {
			t.Fatal(err)
		}
	}
	own := take(t, sa, 5)
	if got := ids(own); !equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("the agent's own ids %v, want 1 to 5", got)
	}
	// The same event pushed again (an agent that resent it): taken once.
	shared.publish(stream.Entry{Type: stream.TypeSample, Source: "host/edge-1", Time: own[4].Time, Body: []byte(`{"metrics":{"v":4}}`), ID: "edge-1-5"}, true)
	for i := 5; i < 7; i++ {
		agent.Publish(stream.Message{Type: stream.TypeSample, Source: "host/edge-1", Body: map[string]any{"metrics": map[string]int{"v": i}}})
	}
	got := take(t, sr, 7)
	for i, ev := range got {
		want := `"metrics":{"v":` + strconv.Itoa(i) + `}`
		if ev.Source != "host/edge-1" || !strings.Contains(string(ev.JSON()), want) {
			t.Fatalf("replica's event %d: %s, want %s", i, ev.JSON(), want)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if from := r.by[got[0].ID]; from != "edge-1" {
		t.Fatalf("published by %q, want edge-1", from)
	}
}

// On a three-server NATS cluster with the stream kept three times, a
// server that goes away takes nothing with it: the replicas, connected to
// any of the three, go on numbering the same events without a gap or a
// reset.
func TestStreamOutlivesAServer(t *testing.T) {
	nodes, urls := vigiltest.StartNATSCluster(t, 3)
	connect := func() *nats.Conn {
		nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	start := func(name string) *replica {
		l, err := NewLog(connect(), LogOptions{Replica: name, Replicas: 3, Check: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{log: l, hub: stream.NewHub(stream.HubOptions{Log: l}), by: map[uint64]string{}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx, r.hub, nil) }()
		t.Cleanup(func() { cancel(); r.hub.Close(); <-done })
		select {
		case <-l.Ready():
		case <-time.After(30 * time.Second): // a new cluster elects its leaders first
			t.Fatalf("the log did not reach its stream: %v", l.Err())
		}
		return r
	}
	a, b := start("a"), start("b")
	sb := subscribe(t, b.hub, "")
	for i := range 5 {
		a.publish(t, "host/a", i)
	}
	got := take(t, sb, 5)
	nodes[0].Stop()
	// Until the stream has a leader again (seconds, more on a loaded
	// machine) publishing may fail: at most once, as the README says.
	// Publish until one comes through to b, whose consumer lost with the
	// server is made again on another; then five more.
	deadline := time.Now().Add(60 * time.Second)
	for back := false; !back; {
		if time.Now().After(deadline) {
			t.Fatalf("nothing published after the server's loss reached b within 60s: %v", b.log.Err())
		}
		a.publish(t, "host/a", 5)
		select {
		case ev := <-sb.C():
			if !ev.IsHeartbeat() {
				got, back = append(got, ev), true
			}
		case <-time.After(500 * time.Millisecond):
		}
	}
	// What the probes that did come through left queued is read too.
	for i := 6; i < 11; i++ {
		a.publish(t, "host/a", i)
	}
	for len(got) == 0 || !strings.Contains(string(got[len(got)-1].JSON()), `"v":10`) {
		got = append(got, takeWithin(t, sb, 1, 30*time.Second)...)
	}
	// Every event the stream stored is there, once, in order: ids one
	// after the other across the loss.
	for i := 1; i < len(got); i++ {
		if got[i].ID != got[i-1].ID+1 || got[i].Type != stream.TypeSample {
			t.Fatalf("across a server's loss: %v", ids(got))
		}
	}
}

// What another publisher puts on the stream's subjects — a type no
// vigil sends, a reset, a body that would break a frame — is skipped, and
// the events after it come as ever.
func TestStrayMessagesAreSkipped(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	sa := subscribe(t, a.hub, "")
	nc := n.Connect()
	stray := func(typ string, body string) {
		t.Helper()
		m := &nats.Msg{Subject: DefaultSubject + ".x", Data: []byte(body), Header: nats.Header{
			hType: []string{typ}, hTime: []string{time.Now().UTC().Format(time.RFC3339Nano)}, hSource: []string{"host/x"}}}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	stray("gauge", `{"v":1}`)
	stray(stream.TypeReset, `{"reason":"x"}`)
	stray(stream.TypeSample, "{\"metrics\":\n{}}")
	stray(stream.TypeSample, `{"metrics":`)
	stray("", `{}`)
	a.publish(t, "host/a", 1)
	got := take(t, sa, 1)
	if got[0].Source != "host/a" {
		t.Fatalf("first event after the strays: %s", got[0].JSON())
	}
}

// A lease configured with another TTL than its bucket's times itself by
// the bucket's: the key expires when the bucket says.
func TestLeaseTakesTheBucketsTTL(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a, _, _ := runLease(t, n, "a", 4*time.Second) // makes the bucket
	waitFor(t, func() bool { held, _ := a.Held(); return held }, "a to hold the lease")
	b, _, _ := runLease(t, n, "b", time.Second)
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.ttl == 4*time.Second }, "b to take the bucket's TTL")
}

// A stream that lost events this replica read — made again by hand with
// its old epoch, as a NATS server restored from an older copy would keep
// it — would number new events with ids already given: the replica begins
// a new epoch instead, above every id it gave, and clients get a reset.
func TestLostEventsBeginANewEpoch(t *testing.T) {
	n := vigiltest.StartNATS(t)
	l, err := NewLog(n.Connect(), LogOptions{Replica: "a", Check: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hub := stream.NewHub(stream.HubOptions{Log: l})
	defer hub.Close()
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx, hub, nil) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	<-l.Ready()
	s := subscribe(t, hub, "")
	for i := range 5 {
		hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/a", Body: map[string]any{"v": i}})
	}
	before := take(t, s, 5)
	stop()

	// The stream comes back with its epoch but two events.
	js := jetStream(t, n)
	ctx := context.Background()
	old, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := old.CachedInfo().Config
	if err := js.DeleteStream(ctx, DefaultStream); err != nil {
		t.Fatal(err)
	}
	// Made again as soon as the server lets it: just after a delete, a
	// loaded server can still be removing the old store ("error creating
	// store for stream").
	waitFor(t, func() bool { _, err := js.CreateStream(ctx, cfg); return err == nil }, "the stream made again")
	for i := range 2 {
		l.publish(stream.Entry{Type: stream.TypeSample, Source: "host/b", Time: time.Now(), Body: []byte(`{"v":` + strconv.Itoa(i) + `}`)}, false)
	}
	waitFor(t, func() bool {
		st, err := js.Stream(ctx, DefaultStream)
		return err == nil && st.CachedInfo().State.Msgs == 2
	}, "the two events in the stream")

	stop = run()
	defer stop()
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), stream.ErrEpoch) {
			t.Fatalf("subscriber ended with %v, want ErrEpoch", s.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connected subscriber was not told of the new epoch")
	}
	waitFor(t, func() bool { return l.Epoch() > before[4].ID }, "a new epoch above every id given")
	again := subscribe(t, hub, strconv.FormatUint(before[4].ID, 10))
	if len(again.Replay) != 1 || again.Replay[0].Type != stream.TypeReset {
		t.Fatalf("resuming from the lost events: %v, want a reset", ids(again.Replay))
	}
	if st, _ := js.Stream(ctx, DefaultStream); epochOf(st.CachedInfo()) <= before[4].ID {
		t.Fatalf("the stream's epoch %d is not above the ids given (%d)", epochOf(st.CachedInfo()), before[4].ID)
	}
}

// Two replicas that publish one event with one ID (both following one
// agent) put it on the stream once.
func TestOneEventPerID(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	b := startReplica(t, n, "b", LogOptions{})
	sa := subscribe(t, a.hub, "")
	for i := range 3 {
		for _, r := range []*replica{a, b} {
			if _, err := r.hub.Publish(stream.Message{Type: stream.TypeSample, Source: "host/agent-1", ID: "up-agent-1-" + strconv.Itoa(i),
				Body: map[string]any{"metrics": map[string]int{"v": i}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.publish(t, "host/a", 99) // after them: when it comes, they all came
	got := take(t, sa, 4)
	for i, ev := range got[:3] {
		if want := `"metrics":{"v":` + strconv.Itoa(i) + `}`; !strings.Contains(string(ev.JSON()), want) {
			t.Fatalf("event %d: %s, want %s once", i, ev.JSON(), want)
		}
	}
	if got[3].Source != "host/a" {
		t.Fatalf("fourth event %s: an event of a repeated ID came twice", got[3].JSON())
	}
}

// TestFromSaysWhenStored: an event read from the stream says when the
// stream stored it — what a replica's mirror counts a source's silence
// from, rather than when the replica read it.
func TestFromSaysWhenStored(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{})
	before := time.Now()
	a.publish(t, "host/a", 1)
	l, err := NewLog(n.Connect(), LogOptions{Replica: "b", Check: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hub := stream.NewHub(stream.HubOptions{Log: l})
	defer hub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan From, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, hub, func(ev *stream.Event, from From) {
			select {
			case got <- from:
			default:
			}
		})
	}()
	defer func() { cancel(); <-done }()
	select {
	case from := <-got:
		if from.Replica != "a" || from.Stored.Before(before.Add(-time.Second)) || from.Stored.After(time.Now()) {
			t.Fatalf("from %+v: want replica a, stored between %s and now", from, before.Format(time.RFC3339Nano))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event did not come")
	}
}

// A stream kept a minute: its duplicate window (two minutes otherwise)
// fits in its age, or the server refuses to make it.
func TestShortMaxAge(t *testing.T) {
	n := vigiltest.StartNATS(t)
	a := startReplica(t, n, "a", LogOptions{MaxAge: time.Minute})
	sa := subscribe(t, a.hub, "")
	a.publish(t, "host/a", 1)
	take(t, sa, 1)
}

// An agent makes the stream if there is none, but leaves the limits the
// replicas set alone.
func TestAgentLeavesTheLimits(t *testing.T) {
	n := vigiltest.StartNATS(t)
	startReplica(t, n, "r", LogOptions{MaxAge: 48 * time.Hour})
	agent, err := NewLog(n.Connect(), LogOptions{Replica: "edge-1", MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := jetStream(t, n).Stream(context.Background(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 48*time.Hour {
		t.Fatalf("the stream keeps events %s after an agent with max_age 1h prepared it; want the replicas' 48h", got)
	}
}
