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

// flushHolding queues now the group that holds a delivery, if any: a
// resolution must not overtake its firing.
func (w *Webhooks) flushHolding(id string) {
	w.held.mu.Lock()
	var found *heldGroup
	for key, g := range w.held.groups {
		for _, m := range g.members {
			if m.id == id {
				found = g
				g.timer.Stop()
				delete(w.held.groups, key)
			}
		}
	}
	w.held.mu.Unlock()
	if found != nil {
		w.flush(found)
	}
}

// flush queues a group as one message (one firing alone as its own), and
// records each firing as queued. One NATS does not take is tried again
// every groupRetry, for up to webhookDuplicates.
func (w *Webhooks) flush(g *heldGroup) {
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
	msg := deliveryMsg(workSubject(g.rcv.ID), first.id, first.id, alerts.EventFiring, first.at, first.body)
	if len(g.members) > 1 {
		body, err := alerts.GroupPayload(g.rcv, bodies)
		if err != nil {
			return err
		}
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
