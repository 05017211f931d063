package cluster

import (
	"context"
	"strings"
	"sync"
	"time"

	"vigil/alerts"
)

// Grouping in the shared outbox (alerts/group.go says what it is): the
// lease holder keeps a grouping receiver's firings for its group_wait, in
// memory, then queues them as one message whose Vigil-Members header
// lists each alert's delivery id; the worker that sends it records its
// attempts on each of them, as the embedded outbox does. A holder that
// dies while it holds a group leaves its firings to the next holder,
// which queues them again when it takes the lease (Resume): each then
// goes on its own.

// hdrMembers lists a group message's delivery ids, comma-separated.
const hdrMembers = "Vigil-Members"

// groupRetry is how soon a group NATS did not take is queued again; one
// it has not taken for webhookDuplicates is given up.
const groupRetry = time.Second

type heldGroups struct {
	mu     sync.Mutex
	groups map[string]*heldGroup // receiver id and group key
}

type heldGroup struct {
	key     string
	rcv     alerts.Receiver
	members []heldFiring
	since   time.Time
	timer   *time.Timer
}

type heldFiring struct {
	id   string
	body []byte
	at   time.Time
}

// hold keeps a firing for its receiver's group; false: it is held or
// queued already (a transition queued again).
func (w *Webhooks) hold(r alerts.Receiver, labels map[string]string, f heldFiring) bool {
	if _, ok := w.dels.value(f.id); ok {
		return false
	}
	h := &w.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.groups == nil {
		h.groups = map[string]*heldGroup{}
	}
	key := r.ID + "\x00" + alerts.GroupKey(r, labels)
	for _, g := range h.groups {
		for _, m := range g.members {
			if m.id == f.id {
				return false
			}
		}
	}
	g := h.groups[key]
	if g == nil || len(g.members) >= alerts.MaxGroup {
		if g != nil { // full: it goes now, and a new one starts
			g.timer.Stop()
			go w.flush(g)
		}
		g = &heldGroup{key: key, rcv: r, since: time.Now()}
		g.timer = time.AfterFunc(time.Duration(r.GroupWait), func() { w.flushKey(key, g) })
		h.groups[key] = g
	}
	g.members = append(g.members, f)
	return true
}

// flushKey queues a group whose wait is over.
func (w *Webhooks) flushKey(key string, g *heldGroup) {
	w.held.mu.Lock()
	if w.held.groups[key] == g {
		delete(w.held.groups, key)
	}
	w.held.mu.Unlock()
	w.flush(g)
}

// holding is the group that holds a delivery, and its key; nil if none.
// The caller holds w.held.mu.
func (w *Webhooks) holding(id string) (string, *heldGroup) {
	for key, g := range w.held.groups {
		for _, m := range g.members {
			if m.id == id {
				return key, g
			}
		}
	}
	return "", nil
}

// isHeld reports whether a firing is held in a group.
func (w *Webhooks) isHeld(id string) bool {
	w.held.mu.Lock()
	defer w.held.mu.Unlock()
	_, g := w.holding(id)
	return g != nil
}

// flushHolding queues now the group that holds a delivery, if any, and
// says whether NATS took it: a resolution must not overtake its firing,
// so one whose firing could not be queued waits (its save is queued again
// with the others NATS did not take).
func (w *Webhooks) flushHolding(ctx context.Context, id string) error {
	w.held.mu.Lock()
	key, g := w.holding(id)
	if g != nil {
		g.timer.Stop()
		delete(w.held.groups, key)
	}
	w.held.mu.Unlock()
	if g == nil {
		return nil
	}
	if err := w.queueGroup(ctx, g); err != nil {
		w.held.mu.Lock() // held again, until its wait or the next try
		if w.held.groups[key] == nil {
			w.held.groups[key] = g
			g.timer = time.AfterFunc(groupRetry, func() { w.flushKey(key, g) })
		} else {
			w.held.groups[key].members = append(g.members, w.held.groups[key].members...)
		}
		w.held.mu.Unlock()
		return err
	}
	return nil
}

// flush queues a group as one message (one firing alone as its own), and
// records each firing as queued. One NATS does not take is tried again
// every groupRetry, for up to webhookDuplicates.
func (w *Webhooks) flush(g *heldGroup) {
	if w.Holding != nil && !w.Holding() {
		// The lease moved while the group waited: the holder now queues
		// these firings again (Resume), each on its own.
		w.log.Info("a group of webhooks held by a replica that lost the alert lease is left to the holder", "receiver", g.rcv.ID, "alerts", len(g.members))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.queueGroup(ctx, g)
	if err == nil {
		return
	}
	if time.Since(g.since) >= webhookDuplicates {
		w.log.Error("a group of webhooks NATS did not take for an hour is given up", "receiver", g.rcv.ID, "alerts", len(g.members), "err", err)
		return
	}
	w.log.Warn("queuing a group of webhooks in NATS; tried again", "receiver", g.rcv.ID, "err", err, "retry_in", groupRetry)
	time.AfterFunc(groupRetry, func() { w.flush(g) })
}

func (w *Webhooks) queueGroup(ctx context.Context, g *heldGroup) error {
	if err := w.ensureStreams(ctx); err != nil {
		return err
	}
	first := g.members[0]
	ids := make([]string, len(g.members))
	bodies := make([][]byte, len(g.members))
	for i, m := range g.members {
		ids[i], bodies[i] = m.id, m.body
	}
	body, err := alerts.GroupPayload(g.rcv, bodies)
	if err != nil {
		return err
	}
	msg := deliveryMsg(workSubject(g.rcv.ID), first.id, first.id, alerts.EventFiring, first.at, body)
	if len(g.members) > 1 {
		id := newDeliveryID(append([]string{"group"}, ids...)...)
		msg = deliveryMsg(workSubject(g.rcv.ID), id, id, alerts.EventFiring, first.at, body)
		msg.Header.Set(hdrMembers, strings.Join(ids, ","))
	}
	if _, err := w.js.PublishMsg(ctx, msg); err != nil {
		return err
	}
	for _, m := range g.members {
		if err := w.recordQueued(ctx, m.id, g.rcv.ID, alerts.EventFiring, m.at); err != nil {
			return err
		}
	}
	return nil
}

// members are a group message's delivery ids; none for one alert's.
func members(header string) []string {
	if header == "" {
		return nil
	}
	return strings.Split(header, ",")
}
