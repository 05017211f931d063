package collector

import (
	"container/heap"
	"context"
	"hash/fnv"
	"sync"
	"time"
)

// instantSlot is the grid the Instant sources' ticks fall on.
const instantSlot = 100 * time.Millisecond

// instants ticks every Instant source on one goroutine. A hub has one such
// source for each agent (upstream/<name>) and each merged service: with a
// goroutine and a ticker each, a thousand agents were a thousand stacks
// and timers. Each source's ticks fall at a phase of its own within its
// interval, on a grid of instantSlot, worked out from its name: sources
// added together (a hub's agents, read from its upstreams file at once)
// are spread over their interval rather than all published in the same
// instant, and one wake-up ticks all the sources of a slot.
type instants struct {
	start   time.Time // what ticks are counted from, on the monotonic clock
	mu      sync.Mutex
	due     instantHeap // every source not removed, by its next tick
	poked   []*instant  // triggered since the last wake-up
	ticking *instant    // the source being ticked, if any
	stopped bool        // the scheduler stopped: sources added are gone at once
	wake    chan struct{}
}

// An instant is one source of instants.
type instant struct {
	l       *sourceLoop
	phase   time.Duration // where in its interval its ticks fall
	next    time.Duration // its next tick, since the instants' start
	index   int           // in due
	poked   bool          // in poked
	batched bool          // to be ticked in the batch under way
	gone    bool          // removed: no more ticks
	done    chan struct{} // closed once gone and not being ticked
}

// add starts ticking a source, its first tick an interval from now or up
// to an interval after that, as its phase falls: not sooner, so that an
// upstream is not reported unreachable before it had time to connect.
func (g *instants) add(l *sourceLoop) *running {
	e := &instant{l: l, done: make(chan struct{})}
	if n := l.interval / instantSlot; n > 1 {
		h := fnv.New64a()
		h.Write([]byte(l.name))
		e.phase = time.Duration(h.Sum64()%uint64(n)) * instantSlot
	}
	g.mu.Lock()
	if g.stopped {
		e.gone = true
		close(e.done)
	} else {
		e.next = e.after(g.now() + l.interval - 1)
		heap.Push(&g.due, e)
	}
	g.mu.Unlock()
	g.signal()
	if tr, ok := l.src.(Triggered); ok {
		tr.Trigger(func() { g.poke(e) })
	}
	return &running{cancel: func() { g.remove(e) }, done: e.done}
}

// now is the time since the instants' start. Ticks go by it, not by the
// wall clock, which may be set back or forward while vigil runs.
func (g *instants) now() time.Duration { return time.Since(g.start) }

// after is the source's first tick after d.
func (e *instant) after(d time.Duration) time.Duration {
	k := d - e.phase
	if k < 0 {
		return e.phase
	}
	return k - k%e.l.interval + e.phase + e.l.interval
}

// poke asks for a tick of the source now.
func (g *instants) poke(e *instant) {
	g.mu.Lock()
	if !e.poked && !e.gone {
		e.poked = true
		g.poked = append(g.poked, e)
	}
	g.mu.Unlock()
	g.signal()
}

func (g *instants) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// remove stops ticking a source; its done is closed once a tick under
// way has published.
func (g *instants) remove(e *instant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e.gone {
		return
	}
	e.gone = true
	heap.Remove(&g.due, e.index)
	if g.ticking != e {
		close(e.done)
	}
}

// run ticks the sources as they fall due or are poked, until ctx is done.
func (g *instants) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var batch []*instant
	for {
		batch = g.take(batch[:0], g.now())
		for _, e := range batch {
			g.tick(ctx, e)
		}
		clear(batch)
		g.mu.Lock()
		wait := time.Hour
		if len(g.due) > 0 {
			wait = g.due[0].next - g.now()
		}
		g.mu.Unlock()
		t.Reset(wait)
		select {
		case <-ctx.Done():
			g.stop()
			return
		case <-t.C:
		case <-g.wake:
		}
	}
}

// take appends to batch the sources poked and those due at now, each
// once, and sets the next tick of those due.
func (g *instants) take(batch []*instant, now time.Duration) []*instant {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.poked {
		e.poked, e.batched = false, true
		batch = append(batch, e)
	}
	clear(g.poked)
	g.poked = g.poked[:0]
	for len(g.due) > 0 && g.due[0].next <= now {
		e := g.due[0]
		e.next = e.after(now)
		heap.Fix(&g.due, 0)
		if !e.batched {
			e.batched = true
			batch = append(batch, e)
		}
	}
	return batch
}

// tick ticks one source of a batch unless it was removed meanwhile.
func (g *instants) tick(ctx context.Context, e *instant) {
	g.mu.Lock()
	e.batched = false
	if e.gone || ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	g.ticking = e
	g.mu.Unlock()
	e.l.tick(ctx)
	g.mu.Lock()
	g.ticking = nil
	if e.gone {
		close(e.done)
	}
	g.mu.Unlock()
}

// stop removes every source, as the scheduler stops.
func (g *instants) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	for _, e := range g.due {
		e.gone = true
		close(e.done)
	}
	clear(g.due)
	g.due = g.due[:0]
}

// instantHeap orders sources by their next tick (container/heap).
type instantHeap []*instant

func (h instantHeap) Len() int           { return len(h) }
func (h instantHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h instantHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *instantHeap) Push(x any) {
	e := x.(*instant)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *instantHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
