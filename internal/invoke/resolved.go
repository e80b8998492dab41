package invoke

import (
	"sync"

	"github.com/hearthdev/hearth/internal/scheduler"
)

// generations is what a Functions may also tell: a number that changes
// after every write to functions, versions, aliases or reserved
// concurrency (store.Store.ConfigGeneration).
type generations interface {
	ConfigGeneration() uint64
}

// resolvedCache keeps resolved functions for one configuration
// generation. A lookup under a newer generation empties it, so a deleted
// function's entries do not outlive the write that deleted it. Its lock is
// held for a map access only, never across a read of the store.
type resolvedCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[resolvedKey]scheduler.Function
}

type resolvedKey struct{ name, qualifier string }

// get returns what was resolved for name and qualifier under gen.
func (c *resolvedCache) get(gen uint64, name, qualifier string) (scheduler.Function, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		c.gen, c.m = gen, nil
		return scheduler.Function{}, false
	}
	fn, ok := c.m[resolvedKey{name, qualifier}]
	return fn, ok
}

// put keeps fn, resolved from what the store held at gen. It is dropped
// when the cache has moved to another generation meanwhile: a write landed
// while it was read, so it may be stale.
func (c *resolvedCache) put(gen uint64, name, qualifier string, fn scheduler.Function) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[resolvedKey]scheduler.Function)
	}
	c.m[resolvedKey{name, qualifier}] = fn
}
