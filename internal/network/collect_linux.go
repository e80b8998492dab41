package network

import (
	"context"
	"strings"
	"time"
)

// tracked is a live lease's owner and the counters last reported of it.
type tracked struct {
	lease    Lease
	function string
	seen     map[string]uint64
}

// track starts counting l's refusals for function.
func (m *Manager) track(l Lease, function string) {
	if m.cfg.Denied == nil {
		return
	}
	m.mu.Lock()
	m.live[l.Netns] = &tracked{lease: l, function: function, seen: map[string]uint64{}}
	m.mu.Unlock()
}

// Collect reads the refusal counters of every live environment's ruleset
// and reports what they counted since the last time to cfg.Denied.
func (m *Manager) Collect(ctx context.Context) {
	m.mu.Lock()
	live := make([]*tracked, 0, len(m.live))
	for _, t := range m.live {
		live = append(live, t)
	}
	m.mu.Unlock()
	for _, t := range live {
		m.collect(ctx, t)
	}
}

func (m *Manager) collect(ctx context.Context, t *tracked) {
	counters, err := Counters(ctx, t.lease)
	if err != nil {
		return // gone meanwhile, or its ruleset not loaded yet
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, n := range counters {
		reason, ok := strings.CutPrefix(name, "denied_")
		if !ok || n <= t.seen[name] {
			continue
		}
		m.cfg.Denied.EgressDenied(t.function, reason, n-t.seen[name])
		t.seen[name] = n
	}
}

// untrack reports l's last refusals and forgets it.
func (m *Manager) untrack(ctx context.Context, l Lease) {
	m.mu.Lock()
	t := m.live[l.Netns]
	delete(m.live, l.Netns)
	m.mu.Unlock()
	if t != nil {
		m.collect(ctx, t)
	}
}

// collectEvery runs Collect every d until ctx ends.
func (m *Manager) collectEvery(ctx context.Context, d time.Duration) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.Collect(ctx)
		}
	}
}
