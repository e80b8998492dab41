package qemu

import (
	"context"
	"sync"
	"time"
)

// idle is a pre-started VMM process bound to no machine yet.
type idle interface {
	// kill ends the process by its PID and waits for it.
	kill()
}

// starter starts an idle process of a shape.
type starter[K comparable, P idle] func(ctx context.Context, key K) (P, error)

// pool keeps up to size idle processes of each of the last maxKeys shapes
// taken (a cold boot and a restore are different shapes: the latter waits
// with -incoming defer). It starts them in the background after a take, so
// a take never waits for a start: an empty pool answers "none" and the
// caller starts a process as it would without one. It learns shapes from
// takes, so the first machine of a shape pays for its own process.
type pool[K comparable, P idle] struct {
	size    int
	maxKeys int
	start   starter[K, P]
	// refillDelay is how long after a take the replacement starts: on a
	// busy host a QEMU starting beside the machine just taken slows it.
	refillDelay time.Duration

	mu       sync.Mutex
	idle     map[K][]P
	starting map[K]int
	keys     []K // most recently taken last
	closed   bool
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

func newPool[K comparable, P idle](size, maxKeys int, start starter[K, P]) *pool[K, P] {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool[K, P]{size: size, maxKeys: maxKeys, start: start, idle: map[K][]P{}, starting: map[K]int{}, ctx: ctx, cancel: cancel}
}

// take returns an idle process of key's shape, if there is one, and has
// the pool start another in its place.
func (p *pool[K, P]) take(key K) (P, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var zero P
	if p.closed {
		return zero, false
	}
	p.touch(key)
	p.fill(key)
	l := p.idle[key]
	if len(l) == 0 {
		return zero, false
	}
	proc := l[0]
	p.idle[key] = l[1:]
	if p.refillDelay <= 0 {
		p.fill(key)
		return proc, true
	}
	p.wg.Add(1)
	time.AfterFunc(p.refillDelay, func() {
		defer p.wg.Done()
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.closed && p.wanted(key) {
			p.fill(key)
		}
	})
	return proc, true
}

// touch makes key the most recent shape; the least recent beyond maxKeys
// is dropped and its idle processes killed.
func (p *pool[K, P]) touch(key K) {
	for i, k := range p.keys {
		if k == key {
			p.keys = append(p.keys[:i], p.keys[i+1:]...)
			break
		}
	}
	p.keys = append(p.keys, key)
	for len(p.keys) > p.maxKeys {
		old := p.keys[0]
		p.keys = p.keys[1:]
		for _, proc := range p.idle[old] {
			go proc.kill()
		}
		delete(p.idle, old)
	}
}

// fill starts processes of key's shape until idle and starting ones make
// size. Called with mu held.
func (p *pool[K, P]) fill(key K) {
	for len(p.idle[key])+p.starting[key] < p.size {
		p.starting[key]++
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			proc, err := p.start(p.ctx, key)
			p.mu.Lock()
			p.starting[key]--
			keep := err == nil && !p.closed && p.wanted(key)
			if keep {
				p.idle[key] = append(p.idle[key], proc)
			}
			p.mu.Unlock()
			// A start that failed is not retried here: the next take
			// tries again. One no longer wanted is killed before close
			// returns.
			if err == nil && !keep {
				proc.kill()
			}
		}()
	}
}

func (p *pool[K, P]) wanted(key K) bool {
	for _, k := range p.keys {
		if k == key {
			return true
		}
	}
	return false
}

// counts is how many processes are idle, by shape.
func (p *pool[K, P]) counts() map[K]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := map[K]int{}
	for k, l := range p.idle {
		c[k] = len(l)
	}
	return c
}

// close kills every idle process, waits for those starting (and kills
// them too), and makes takes answer none from then on.
func (p *pool[K, P]) close() {
	p.mu.Lock()
	p.closed = true
	all := p.idle
	p.idle = map[K][]P{}
	p.mu.Unlock()
	p.cancel()
	var wg sync.WaitGroup
	for _, l := range all {
		for _, proc := range l {
			wg.Add(1)
			go func() { defer wg.Done(); proc.kill() }()
		}
	}
	wg.Wait()
	p.wg.Wait()
}
