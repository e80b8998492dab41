package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
)

// pingTimeout bounds the answer to the ping that checks an attached agent.
const pingTimeout = 10 * time.Second

// Open finds the environment in dir, as a process that did not start it:
// a suspended one is ready to resume; a running one (detached) is attached
// to and must answer a ping.
func Open(ctx context.Context, cfg Config, dir string) (*Env, error) {
	cfg = cfg.withDefaults()
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	if m.Kind != kindEnv {
		return nil, fmt.Errorf("%s is a %s, not an environment", dir, m.Kind)
	}
	img := Image{Kernel: &guestimage.Kernel{Path: m.Kernel.Path, ACPI: m.ACPI}, Initrd: m.Initrd.Path, AgentDigest: m.AgentDigest}
	cfg.Accel = m.Spec.Accel
	e := newEnv(cfg, m.Function, img, m.ID, dir)
	e.spec = m.Spec
	e.spec.Dir = dir
	e.spec.Disks = disks(e.fn, dir)
	e.timings, e.restores, e.snap = m.Timings, m.Restores, m.Snapshot
	if m.Network != nil {
		if cfg.Net == nil {
			return nil, fmt.Errorf("%s: %w", m.ID, ErrNoNetwork)
		}
		e.lease = m.Network
		cfg.Net.Adopt(*m.Network, m.Function.Name)
	}
	switch m.State {
	case StateSuspended:
		e.state = StateSuspended
		return e, nil
	case StateReady, StateBusy:
	default:
		return nil, fmt.Errorf("%s: environment is %s", m.ID, m.State)
	}
	mach, err := cfg.VMM.Attach(ctx, e.spec, m.PID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", m.ID, ErrDead, err)
	}
	c := e.connect(mach, false)
	// An agent that does not even read a ping in time is hung or hostile:
	// send stops its VMM.
	deadline := time.Now().Add(pingTimeout)
	if err := c.send(ctx, deadline, guestproto.TypePing, guestproto.Ping{Seq: 1}, nil); err != nil {
		c.disconnect()
		return nil, fmt.Errorf("%s: ping: %w", m.ID, err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-c.pong:
	case <-c.gone:
		c.disconnect()
		return nil, fmt.Errorf("%s: %w", m.ID, ErrDead)
	case <-timer.C:
		c.disconnect()
		return nil, fmt.Errorf("%s: the agent did not answer", m.ID)
	}
	e.mu.Lock()
	e.state, e.ready = StateReady, readiness{start: m.NextStart, restore: m.Restore}
	if e.ready.start == "" {
		e.ready.start = StartWarm
	}
	e.mu.Unlock()
	e.startServices(c)
	return e, nil
}
