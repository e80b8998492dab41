package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Networks makes and removes environments' networks; network.Manager is
// one.
type Networks interface {
	// Create makes envID's network; its refusals are counted for function.
	Create(ctx context.Context, envID, function string, p network.Policy) (network.Lease, error)
	Remove(ctx context.Context, l network.Lease) error
	// Adopt takes over a lease another process made.
	Adopt(l network.Lease, function string)
	// Resumed forgets the connections the lease's namespace tracked before
	// a suspend, so that they are reset rather than carried on.
	Resumed(ctx context.Context, l network.Lease) error
}

// ErrNoNetwork is returned for a function that asks for a network where
// none can be given (a daemon not running as root).
var ErrNoNetwork = errors.New("the function asks for a network and this host gives none (the daemon must run as root)")

// templateMAC is a template's card's: it has no cable, and each clone is
// given its own address by its agent.
const templateMAC = "02:68:65:00:00:00"

// wantsNetwork says whether fn asks for a network explicitly: a policy
// that is on and opens something beyond the default (an Allow, the
// private ranges). Every function has the default policy, and on a host
// that gives no network (the daemon said so at start) it runs without a
// card, as before; one whose owner opened a way out must not silently
// have none. (A policy that is off still gets a card where networks are
// given, its ruleset refusing everything, counted.)
func wantsNetwork(fn Function) bool {
	p := fn.Network
	return p != nil && p.Enabled && (len(p.Allow) > 0 || p.AllowPrivate)
}

func policyOf(fn Function) network.Policy {
	if fn.Network != nil {
		return *fn.Network
	}
	return network.DefaultPolicy()
}

// attachNetwork gives the environment its network before its machine
// boots: a lease (namespace, TAP, address) of its own, kept across
// suspends and a cold boot that replaces a refused snapshot. A template
// gets a card with no cable: its clones are given theirs.
func (e *Env) attachNetwork(ctx context.Context) error {
	if e.cfg.Net == nil {
		if wantsNetwork(e.fn) {
			return fmt.Errorf("%s: %w", e.id, ErrNoNetwork)
		}
		return nil
	}
	if e.kind == kindTemplate {
		e.mu.Lock()
		e.spec.NIC = &vmm.NIC{MAC: templateMAC}
		e.mu.Unlock()
		return nil
	}
	e.mu.Lock()
	leased := e.lease != nil
	e.mu.Unlock()
	if leased {
		return nil
	}
	l, err := e.cfg.Net.Create(ctx, e.id, e.fn.Name, policyOf(e.fn))
	if err != nil {
		return fmt.Errorf("%s: %w", e.id, err)
	}
	e.mu.Lock()
	e.lease = &l
	e.spec.NIC = nicOf(l)
	dead := e.state == StateDead
	e.mu.Unlock()
	if dead { // closed meanwhile: Close did not see the lease
		_ = e.cfg.Net.Remove(context.Background(), l)
		return fmt.Errorf("%s: %w", e.id, ErrDead)
	}
	return nil
}

func nicOf(l network.Lease) *vmm.NIC {
	return &vmm.NIC{MAC: l.MAC, Netns: l.NetnsPath(), Tap: l.Tap}
}

// guestNet is what the agent is told of its network; nil for none.
func (e *Env) guestNet() *guestproto.Net {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.lease
	if l == nil {
		return nil
	}
	n := &guestproto.Net{Address: l.Guest.String(), Gateway: l.Gateway.Addr().String(), MAC: l.MAC, Hostname: l.Hostname}
	for _, d := range l.DNS {
		n.DNS = append(n.DNS, d.String())
	}
	return n
}

// releaseNetwork removes the environment's network, once.
func (e *Env) releaseNetwork(ctx context.Context) error {
	e.mu.Lock()
	l := e.lease
	e.lease = nil
	e.mu.Unlock()
	if l == nil || e.cfg.Net == nil {
		return nil
	}
	return e.cfg.Net.Remove(ctx, *l)
}

// Lease is the environment's network identity; false when it has none.
func (e *Env) Lease() (network.Lease, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease == nil {
		return network.Lease{}, false
	}
	return *e.lease, true
}
