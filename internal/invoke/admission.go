package invoke

import (
	"context"
	"fmt"
	"sync"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// Slots holds concurrency limits across the hosts of a cluster (a slot
// per invocation in flight; cluster.Slots is one). Standalone there is
// none, and the scheduler's own limits (reserved concurrency per
// function, --max-concurrency for the host) are the whole admission, as
// before: they apply on every host in a cluster too.
type Slots interface {
	// Take admits one invocation under the limit named key, of limit
	// slots across the cluster; release ends it. An error means the
	// limit is reached, or cannot be checked (fail closed): throttle.
	Take(ctx context.Context, key string, limit int) (release func(), err error)
}

// Lambda's reasons for the two throttles slots give, as the scheduler
// answers them on one host.
const (
	reasonReserved = "ReservedFunctionConcurrentInvocationLimitExceeded"
	reasonAccount  = "ConcurrentInvocationLimitExceeded"
)

// DefaultAccountConcurrency is the account's limit when the daemon sets
// none (the scheduler's and GetAccountSettings' default).
const DefaultAccountConcurrency = 64

// reservedTotal is the sum of the functions' reserved concurrency (the
// store has it): the account's unreserved pool is what is left.
type reservedTotal interface {
	ReservedConcurrency(ctx context.Context) (int, error)
}

// admit takes fn's slot in the cluster: from its reserved concurrency
// when it has one, else from the account's unreserved pool (the account's
// limit less every function's reservation), so that neither is exceeded
// across the hosts. Standalone it admits all (the scheduler limits).
func (s *Service) admit(ctx context.Context, fn scheduler.Function) (func(), error) {
	if s.cfg.Slots == nil {
		return func() {}, nil
	}
	key, reason := "account", reasonAccount
	var limit int
	if fn.Reserved != nil {
		key, limit, reason = "fn."+fn.Name, *fn.Reserved, reasonReserved
	} else {
		n, err := s.unreserved(ctx)
		if err != nil {
			return nil, err
		}
		limit = n
	}
	release, err := s.cfg.Slots.Take(ctx, key, limit)
	if err != nil {
		s.cfg.Log.Debug("throttled by the cluster's concurrency", "function", fn.Name, "slot", key, "limit", limit, "err", err)
		return nil, lambdaerr.TooManyRequests(reason, "Rate Exceeded.")
	}
	return release, nil
}

// unreservedCache keeps the unreserved pool for one configuration
// generation.
type unreservedCache struct {
	mu  sync.Mutex
	gen uint64
	n   int
	ok  bool
}

// unreserved is the account's limit less the functions' reservations.
func (s *Service) unreserved(ctx context.Context) (int, error) {
	account := s.cfg.AccountConcurrency
	if account <= 0 {
		account = DefaultAccountConcurrency
	}
	rt, ok := s.cfg.Functions.(reservedTotal)
	if !ok {
		return account, nil
	}
	gens, cached := s.cfg.Functions.(generations)
	var gen uint64
	if cached {
		gen = gens.ConfigGeneration()
		c := &s.unres
		c.mu.Lock()
		if c.ok && c.gen == gen {
			n := c.n
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
	}
	reserved, err := rt.ReservedConcurrency(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the reserved concurrency: %w", err)
	}
	n := max(account-reserved, 0)
	if cached {
		c := &s.unres
		c.mu.Lock()
		c.gen, c.n, c.ok = gen, n, true
		c.mu.Unlock()
	}
	return n, nil
}
