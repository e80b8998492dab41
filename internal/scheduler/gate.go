package scheduler

import (
	"context"
	"sync"
	"time"
)

// gate bounds the machines booting at once. Boots beyond the bound wait
// in arrival order: on a small host, a burst of cold starts that all boot
// together starves every guest of CPU (kernels then fail their timer check
// and panic), where a queue lets each boot at full speed in turn.
type gate struct {
	limit int // ≤ 0: no bound

	mu       sync.Mutex
	inFlight int
	queue    []chan struct{} // waiters, first come first
}

func newGate(limit int) *gate { return &gate{limit: limit} }

// errGateTimeout is returned when a wait outlasts its bound.
type errGateTimeout struct{ waited time.Duration }

func (e errGateTimeout) Error() string { return "waited " + e.waited.String() + " for a boot slot" }

// wait takes a slot, waiting in order for at most maxWait (0: as long as
// ctx lasts). It returns the function that gives the slot back.
func (g *gate) wait(ctx context.Context, maxWait time.Duration) (func(), error) {
	g.mu.Lock()
	if g.limit <= 0 || (g.inFlight < g.limit && len(g.queue) == 0) {
		g.inFlight++
		g.mu.Unlock()
		return g.release, nil
	}
	ch := make(chan struct{})
	g.queue = append(g.queue, ch)
	g.mu.Unlock()

	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case <-ch:
		return g.release, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = errGateTimeout{waited: maxWait}
	}
	g.mu.Lock()
	for i, w := range g.queue {
		if w == ch {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.mu.Unlock()
			return nil, err
		}
	}
	g.mu.Unlock()
	// Handed a slot as we gave up: pass it on.
	g.release()
	return nil, err
}

// release gives a slot back: to the first waiter, if any.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) > 0 {
		ch := g.queue[0]
		g.queue = g.queue[1:]
		close(ch) // the slot passes on: inFlight is unchanged
		return
	}
	g.inFlight--
}

// counts reports the boots in flight and those waiting.
func (g *gate) counts() (inFlight, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight, len(g.queue)
}
