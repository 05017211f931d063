package alerts

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"vigil/collector"
	"vigil/internal/vigiltest"
	"vigil/stream"
)

// flakyStore is the real store, failing on demand as a full disk would.
type flakyStore struct {
	*DB
	fail atomic.Bool
}

var errDiskFull = errors.New("database or disk is full (13)")

func (f *flakyStore) SaveTransitions(ctx context.Context, ts []Transition) error {
	if f.fail.Load() {
		return errDiskFull
	}
	return f.DB.SaveTransitions(ctx, ts)
}

// storeRig is an evaluator over a real ring, hub and database, with a
// webhook receiver subscribed to its alerts.
type storeRig struct {
	db    *DB
	store StateStore
	ck    *clock
	ring  *collector.Store
	hub   *stream.Hub
	sub   *stream.Subscriber
	rc    *vigiltest.Receiver
	d     *Dispatcher
	e     *Evaluator
	set   *metrics.Set
	logs  *vigiltest.Buffer
}

func newStoreRig(t *testing.T, db *DB, store StateStore) *storeRig {
	t.Helper()
	r := &storeRig{db: db, store: store, ck: &clock{t: t0}, set: metrics.NewSet(), logs: &vigiltest.Buffer{}}
	r.ring = collector.NewStore(time.Minute, time.Second)
	r.hub = stream.NewHub(stream.HubOptions{FirstID: 1, Now: r.ck.now})
	t.Cleanup(r.hub.Close)
	r.sub, _ = r.hub.Subscribe(stream.Cursor{}, stream.Filter{Types: []string{stream.TypeAlert}})
	r.rc = newReceiver(t, 200)
	if err := db.PutReceiver(context.Background(), Receiver{ID: "sub_ops", URL: r.rc.URL, Events: []string{"alert.*"},
		Format: FormatStandard, Status: ReceiverActive, Secret: NewSecret()}); err != nil {
		t.Fatal(err)
	}
	r.d = &Dispatcher{DB: db, Client: NewClient(loopback, 2*time.Second), Jitter: func() float64 { return 0 }}
	rules := []Rule{{Name: "Hot", Source: "host/*", Metric: "temp", Op: ">", Threshold: 90}}
	rules[0].Validate()
	r.e = &Evaluator{Rules: rules, Ring: r.ring, Hub: r.hub, States: store, Now: r.ck.now, Metrics: r.set,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
	if err := r.e.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// tick samples the temperature and evaluates, a quarter second later
// than the last tick.
func (r *storeRig) tick(v float64) error {
	r.ck.t = r.ck.t.Add(250 * time.Millisecond)
	r.ring.Append(collector.Sample{Source: "host/a", Time: r.ck.t, Metrics: collector.MetricsOf(map[string]float64{"temp": v})})
	return r.e.Evaluate(context.Background())
}

// announced is the transitions published on the stream since last asked.
func (r *storeRig) announced() []string {
	var out []string
	for len(r.sub.C()) > 0 {
		var m struct{ Transition string }
		json.Unmarshal((<-r.sub.C()).JSON(), &m)
		out = append(out, m.Transition)
	}
	return out
}

func (r *storeRig) state(t *testing.T) string {
	t.Helper()
	for _, a := range r.e.Active() {
		return a.State
	}
	return StateInactive
}

// delivered sends what is due until the receiver has n webhooks, and
// returns their types in order.
func (r *storeRig) delivered(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.rc.Requests()) < n && time.Now().Before(deadline) {
		r.d.runOnce(context.Background())
	}
	r.d.runOnce(context.Background()) // and nothing more arrives
	var out []string
	for _, req := range r.rc.Requests() {
		var m struct{ Type string }
		json.Unmarshal(req.Body, &m)
		out = append(out, m.Type)
	}
	return out
}

// TestTransitionKeptWhenSaveFails: while the store refuses writes, an
// alert stays in its last saved state (nothing announced, nothing sent),
// and the transition is made again on every evaluation until it is saved.
// The receiver then gets each transition once, in order — never
// "resolved" twice. The failure is counted, logged once a minute, and
// reported by Healthy.
func TestTransitionKeptWhenSaveFails(t *testing.T) {
	db := openDB(t)
	fs := &flakyStore{DB: db}
	r := newStoreRig(t, db, fs)

	fs.fail.Store(true)
	for range 8 { // two seconds of failing evaluations
		if err := r.tick(95); !errors.Is(err, errDiskFull) {
			t.Fatalf("evaluate with a failing store: %v", err)
		}
	}
	if st := r.state(t); st != StateInactive {
		t.Fatalf("the alert moved to %s although the save failed", st)
	}
	if got := r.announced(); len(got) != 0 {
		t.Fatalf("announced %v without saving", got)
	}
	if err := r.e.Healthy(); err == nil || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("Healthy while saves fail: %v", err)
	}
	if n := strings.Count(r.logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d error lines in two seconds of failures, want 1:\n%s", n, r.logs)
	}
	if got := vigiltest.Counter(r.set, `vigil_store_errors_total{op="save_alerts"}`); got != 8 {
		t.Fatalf("store errors counted %v, want 8", got)
	}

	fs.fail.Store(false)
	if err := r.tick(95); err != nil {
		t.Fatal(err)
	}
	if st, got := r.state(t), r.announced(); st != StateFiring || len(got) != 1 || got[0] != StateFiring {
		t.Fatalf("once saves work: state %s, announced %v", st, got)
	}
	if err := r.e.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery: %v", err)
	}

	// It clears while the disk is full again; a minute later the error is
	// logged again.
	fs.fail.Store(true)
	for range 4 {
		r.tick(50)
	}
	r.ck.t = r.ck.t.Add(time.Minute)
	r.tick(50)
	if st := r.state(t); st != StateFiring {
		t.Fatalf("resolved in memory although not saved: %s", st)
	}
	if n := strings.Count(r.logs.String(), "level=ERROR"); n != 3 { // the first outage; this one at once; a minute into it
		t.Fatalf("%d error lines, want 3:\n%s", n, r.logs)
	}
	fs.fail.Store(false)
	r.tick(50)
	r.tick(50)
	if st, got := r.state(t), r.announced(); st != StateInactive || len(got) != 1 || got[0] != StateResolved {
		t.Fatalf("after the second outage: state %s, announced %v", st, got)
	}
	if got := r.delivered(t, 2); len(got) != 2 || got[0] != EventFiring || got[1] != EventResolved {
		t.Fatalf("receiver got %v, want firing then resolved, once each", got)
	}
}

// TestAckKeptWhenSaveFails: an acknowledgement that cannot be saved is
// refused and leaves the alert as it was.
func TestAckKeptWhenSaveFails(t *testing.T) {
	db := openDB(t)
	fs := &flakyStore{DB: db}
	r := newStoreRig(t, db, fs)
	r.tick(95)
	r.announced()
	fs.fail.Store(true)
	if _, err := r.e.Ack(context.Background(), Fingerprint("Hot", "host/a", "temp"), "alice"); !errors.Is(err, errDiskFull) {
		t.Fatalf("ack with a failing store: %v", err)
	}
	if a := r.e.Active(); len(a) != 1 || a[0].AckedBy != "" {
		t.Fatalf("acknowledged in memory although not saved: %+v", a)
	}
	if got := r.announced(); len(got) != 0 {
		t.Fatalf("announced %v", got)
	}
}

// TestTransitionsSurviveAFullDisk does it for real: the database lives on
// a small tmpfs that the test fills to the last byte.
func TestTransitionsSurviveAFullDisk(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := newStoreRig(t, db, db)
	if err := r.tick(50); err != nil { // the first save: WAL and all exist
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	// Receivers made through the API cannot be saved either: the error
	// says it is the store's, which the HTTP edge answers with 503.
	desc := strings.Repeat("x", 900)
	if _, err := (&Receivers{Outbox: db}).Create(context.Background(), ReceiverInput{URL: ptr("http://127.0.0.1:9/hook"), Description: &desc}); !errors.Is(err, ErrStore) {
		t.Fatalf("creating a receiver on a full disk: %v", err)
	}

	var saveErr error
	for range 4 {
		saveErr = r.tick(95)
	}
	if saveErr == nil || !strings.Contains(saveErr.Error(), "full") {
		t.Fatalf("a save on a full disk: %v", saveErr)
	}
	if st, got := r.state(t), r.announced(); st != StateInactive || len(got) != 0 {
		t.Fatalf("on a full disk: state %s, announced %v", st, got)
	}
	if err := r.e.Healthy(); err == nil {
		t.Fatal("healthy on a full disk")
	}
	os.Remove(filler)
	if err := r.tick(95); err != nil {
		t.Fatalf("after room was made: %v", err)
	}
	fill(t, filler)
	for range 4 {
		r.tick(50)
	}
	if st := r.state(t); st != StateFiring {
		t.Fatalf("resolved on a full disk: %s", st)
	}
	os.Remove(filler)
	if err := r.tick(50); err != nil {
		t.Fatal(err)
	}
	if got := r.announced(); len(got) != 2 || got[0] != StateFiring || got[1] != StateResolved {
		t.Fatalf("announced %v", got)
	}
	if got := r.delivered(t, 2); len(got) != 2 || got[0] != EventFiring || got[1] != EventResolved {
		t.Fatalf("receiver got %v, want firing then resolved, once each", got)
	}
}

// fill writes a file until the filesystem has no room left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	f.Sync()
	// A little more room would let SQLite squeeze a page in: take it.
	for _, n := range []int{512, 64, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// TestOpensADatabaseFromBefore: a vigil.db written by an earlier version
// opens (its tables gain the new columns, and the subscriptions table and
// columns of before "receiver" was the one name are renamed), keeps its
// receivers and deliveries, opens again, and delivers.
func TestOpensADatabaseFromBefore(t *testing.T) {
	for _, file := range []string{"testdata/schema-2026-11-23.sql", "testdata/schema-2026-12-01.sql"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			dir := t.TempDir()
			schema, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			old, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "vigil.db"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := old.Exec(string(schema)); err != nil {
				t.Fatal(err)
			}
			secret := NewSecret()
			if _, err := old.Exec(`INSERT INTO subscriptions (id, body, secret) VALUES ('cfg-old', ?, ?);
				INSERT INTO deliveries (id, subscription_id, event_type, payload, state, next_attempt_at, created_at, updated_at, last_error)
					VALUES ('msg_old', 'cfg-old', 'alert.firing', x'7b7d', 'dead', 0, 1, 1, '500 Internal Server Error');
				INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES ('msg_old', 1, 500, '500 Internal Server Error', 3);`,
				`{"id":"cfg-old","url":"http://192.0.2.1/","events":["alert.*"],"format":"standard","status":"disabled","origin":"config"}`, secret); err != nil {
				t.Fatal(err)
			}
			old.Close()
			db, err := Open(dir)
			if err != nil {
				t.Fatalf("open a database from before: %v", err)
			}
			db.Close()
			if db, err = Open(dir); err != nil {
				t.Fatalf("open it again: %v", err)
			}
			defer db.Close()
			ctx := context.Background()
			if rcv, err := db.Receiver(ctx, "cfg-old"); err != nil || rcv.Status != ReceiverDisabled || rcv.Secret != secret {
				t.Fatalf("the receiver from before: %+v %v", rcv, err)
			}
			ds, err := db.Deliveries(ctx, "cfg-old", 10)
			if err != nil || len(ds) != 1 || ds[0].ID != "msg_old" || ds[0].ReceiverID != "cfg-old" || ds[0].State != DeliveryDead ||
				len(ds[0].Attempts) != 1 || ds[0].Attempts[0].Status != 500 {
				t.Fatalf("the delivery from before: %+v %v", ds, err)
			}
			var left string
			db.db.QueryRow(`SELECT group_concat(name) FROM sqlite_master WHERE sql LIKE '%subscription%'`).Scan(&left)
			if left != "" {
				t.Fatalf("still named after subscriptions: %s", left)
			}
			r := newStoreRig(t, db, db)
			r.tick(95)
			if got := r.delivered(t, 1); len(got) != 1 || got[0] != EventFiring {
				t.Fatalf("delivered %v", got)
			}
		})
	}
}

// TestAckByBounded: who acknowledged is a client's string: kept short and
// valid UTF-8 in the store and the events.
func TestAckByBounded(t *testing.T) {
	db := openDB(t)
	r := newStoreRig(t, db, db)
	r.tick(95)
	a, err := r.e.Ack(context.Background(), Fingerprint("Hot", "host/a", "temp"), "x"+strings.Repeat("é", 300))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.AckedBy) > 104 || !utf8.ValidString(a.AckedBy) {
		t.Fatalf("acked_by %d bytes, valid UTF-8 %v", len(a.AckedBy), utf8.ValidString(a.AckedBy))
	}
}

// openDB opens a store in a temporary directory, closed when the test ends.
func openDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
