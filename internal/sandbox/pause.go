package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/hearthdev/hearth/internal/vmm"
)

// Pause stops a ready environment's vCPUs and pushes its guest memory out
// of host RAM into its memory file; its VMM stays, so that Unpause (or the
// next Invoke) is a continue and page faults, not a restore. A paused
// environment holds a process and little RAM. Only a ready environment is
// paused (ErrBusy otherwise); pausing a paused one does nothing.
func (e *Env) Pause(ctx context.Context) (vmm.PauseInfo, error) {
	e.mu.Lock()
	switch e.state {
	case StatePaused:
		e.mu.Unlock()
		return vmm.PauseInfo{}, nil
	case StateDead:
		e.mu.Unlock()
		return vmm.PauseInfo{}, ErrDead
	case StateReady:
	default:
		e.mu.Unlock()
		return vmm.PauseInfo{}, ErrBusy
	}
	// Busy while the pause is under way: no invocation slips in between
	// the stop and the page-out.
	e.state = StateBusy
	c := e.conn
	e.mu.Unlock()
	info, err := c.m.Pause(ctx)
	if err != nil {
		// The vCPUs may be stopped: run them again, so the environment is
		// ready as before, or end it if even that fails.
		if uerr := c.m.Unpause(context.Background()); uerr != nil {
			_ = e.Close(context.Background())
			return info, fmt.Errorf("pause: %w (and could not continue: %v)", err, uerr)
		}
		e.setState(StateReady)
		return info, fmt.Errorf("pause: %w", err)
	}
	e.setState(StatePaused)
	e.log.Debug("paused", "rss_before_kib", info.RSSBeforeKiB, "rss_after_kib", info.RSSAfterKiB, "paged_out", info.PagedOut)
	return info, nil
}

// Unpause runs a paused environment's vCPUs again; the next invocation is
// told it started "paused", with the time this took. An environment not
// paused is left as it is.
func (e *Env) Unpause(ctx context.Context) error {
	e.mu.Lock()
	if e.state != StatePaused {
		e.mu.Unlock()
		return nil
	}
	e.state = StateBusy
	c := e.conn
	e.mu.Unlock()
	start := time.Now()
	if err := c.m.Unpause(ctx); err != nil {
		_ = e.Close(context.Background())
		return fmt.Errorf("unpause: %w", err)
	}
	e.mu.Lock()
	if e.state != StateDead {
		e.state = StateReady
		if e.ready.start == StartWarm || e.ready.start == "" {
			e.ready = readiness{start: StartPaused, restore: time.Since(start)}
		}
	}
	e.mu.Unlock()
	return nil
}
