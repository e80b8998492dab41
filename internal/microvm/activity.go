package microvm

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// A MicroVM is active while a connection to it is open or an exec or file
// operation holds it, and for maxIdle after the last byte it sent or
// received, through the endpoint or its own network (outbound traffic
// counts: an agent working with the network is not frozen mid-task).

// Dial opens a connection to a guest port of the MicroVM, for the
// endpoint. A suspended MicroVM is resumed first if its idle policy has
// autoResumeEnabled; otherwise the error wraps ErrConflict. The MicroVM
// counts as active while the connection is open.
func (m *Manager) Dial(ctx context.Context, id string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, validation("port %d is not within 1-65535", port)
	}
	v, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	env, release, err := m.acquire(ctx, v, true)
	if err != nil {
		return nil, err
	}
	c, err := m.cfg.dial(ctx, env, port)
	if err != nil {
		release()
		return nil, err
	}
	return &activeConn{Conn: c, touch: func() { m.touch(v) }, release: release}, nil
}

// Hold gives exec and file operations the MicroVM's environment, resuming
// a suspended one (whatever its idle policy: the caller asked for it). It
// is active until release is called.
func (m *Manager) Hold(ctx context.Context, id string) (*sandbox.Env, func(), error) {
	v, err := m.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	return m.acquire(ctx, v, false)
}

// acquire makes v running and counts a hold on it; byRequest says a
// request to the endpoint asks, which resumes only with auto-resume.
func (m *Manager) acquire(ctx context.Context, v *vm, byRequest bool) (*sandbox.Env, func(), error) {
	v.op.Lock()
	defer v.op.Unlock()
	m.mu.Lock()
	state, policy := State(v.rec.State), v.policy
	m.mu.Unlock()
	switch state {
	case StateRunning:
	case StateSuspended:
		if byRequest && (policy == nil || !policy.AutoResumeEnabled) {
			return nil, nil, conflict("MicroVM %s is suspended and its idle policy does not resume it on a request (autoResumeEnabled): resume it first", v.rec.ID)
		}
		if err := m.resumeLocked(ctx, v); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, conflict("MicroVM %s is %s", v.rec.ID, state)
	}
	now := m.cfg.Now().UTC()
	m.mu.Lock()
	v.holds++
	v.rec.LastActivity = now
	env := v.env
	m.mu.Unlock()
	var once sync.Once
	return env, func() {
		once.Do(func() {
			m.mu.Lock()
			if v.holds > 0 {
				v.holds--
			}
			v.rec.LastActivity = m.cfg.Now().UTC()
			m.mu.Unlock()
		})
	}, nil
}

// touch records activity on v now.
func (m *Manager) touch(v *vm) {
	now := m.cfg.Now().UTC()
	m.mu.Lock()
	if now.After(v.rec.LastActivity) {
		v.rec.LastActivity = now
	}
	m.mu.Unlock()
}

// activeConn is a connection that keeps its MicroVM active: each read or
// write is activity, and its close releases the hold.
type activeConn struct {
	net.Conn
	touch   func()
	release func()
	once    sync.Once
}

func (c *activeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *activeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *activeConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes, when the guest connection can.
func (c *activeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("half-close: %w", net.ErrClosed)
}

// tick applies the idle policies and the maximum durations once, and
// forgets the MicroVMs terminated for long enough. A MicroVM in the middle
// of an operation is left for the next tick.
func (m *Manager) tick(ctx context.Context) {
	m.mu.Lock()
	vms := m.listVMs()
	m.mu.Unlock()
	for _, v := range vms {
		if ctx.Err() != nil {
			return
		}
		if !v.op.TryLock() {
			continue
		}
		m.decide(ctx, v)
		v.op.Unlock()
	}
}

// decide applies v's policy now; v's op lock is held.
func (m *Manager) decide(ctx context.Context, v *vm) {
	now := m.cfg.Now().UTC()
	m.mu.Lock()
	state, env, holds, policy := State(v.rec.State), v.env, v.holds, v.policy
	started, since, last, terminated, maxDur := v.rec.Started, v.rec.StateSince, v.rec.LastActivity, v.rec.Terminated, v.rec.MaxDuration
	m.mu.Unlock()
	over := maxDur > 0 && now.Sub(started) >= time.Duration(maxDur)*time.Second
	switch state {
	case StateTerminated:
		if now.Sub(terminated) >= m.cfg.KeepTerminated {
			m.mu.Lock()
			delete(m.vms, v.rec.ID)
			m.mu.Unlock()
			if err := m.cfg.Store.DeleteMicroVM(ctx, v.rec.ID); err != nil {
				m.log.Warn("forgetting a terminated MicroVM", "microvm", v.rec.ID, "err", err)
			}
			if m.cfg.Forgotten != nil {
				m.cfg.Forgotten(ctx, v.rec.ID)
			}
		}
	case StateRunning:
		if env == nil || env.State() == sandbox.StateDead {
			if env != nil {
				_ = env.Close(context.Background())
			}
			m.terminated(ctx, v, "The MicroVM's machine stopped unexpectedly.", now)
			return
		}
		if over {
			_ = m.terminateLocked(ctx, v, fmt.Sprintf("The MicroVM reached its maximumDurationInSeconds (%d).", maxDur))
			return
		}
		if b, ok := m.cfg.traffic(env); ok {
			m.mu.Lock()
			if v.seen && b != v.bytes && now.After(v.rec.LastActivity) {
				v.rec.LastActivity, last = now, now
			}
			v.bytes, v.seen = b, true
			m.mu.Unlock()
		}
		if policy == nil || holds > 0 {
			return
		}
		idle := time.Duration(policy.MaxIdleDurationSeconds) * time.Second
		if now.Sub(last) >= idle {
			reason := fmt.Sprintf("Idle for %ds: the idle policy's maxIdleDurationSeconds.", policy.MaxIdleDurationSeconds)
			if err := m.suspendLocked(ctx, v, reason); err != nil {
				m.log.Warn("suspending an idle MicroVM", "microvm", v.rec.ID, "err", err)
			}
		}
	case StateSuspended:
		if over {
			_ = m.terminateLocked(ctx, v, fmt.Sprintf("The MicroVM reached its maximumDurationInSeconds (%d).", maxDur))
			return
		}
		if policy != nil && policy.SuspendedDurationSeconds > 0 && now.Sub(since) >= time.Duration(policy.SuspendedDurationSeconds)*time.Second {
			_ = m.terminateLocked(ctx, v, fmt.Sprintf("Suspended for %ds: the idle policy's suspendedDurationSeconds.", policy.SuspendedDurationSeconds))
		}
	}
}

// vethBytes is the bytes through the host's end of env's veth, both ways:
// every packet the guest sends out or receives from outside. (The
// ruleset's named counters count only refusals.)
func vethBytes(env *sandbox.Env) (uint64, bool) {
	l, ok := env.Lease()
	if !ok || l.Link == "" {
		return 0, false
	}
	var sum uint64
	for _, f := range []string{"rx_bytes", "tx_bytes"} {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", l.Link, "statistics", f))
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, false
		}
		sum += n
	}
	return sum, true
}

// Stats counts an image's MicroVMs, for status and top.
type Stats struct {
	Running   int `json:"running"`
	Suspended int `json:"suspended"`
	// Active are running ones with a connection open or an exec or file
	// operation in progress.
	Active int `json:"active"`
}

// StatsByImage counts the MicroVMs of each image that are not terminated.
func (m *Manager) StatsByImage() map[string]Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Stats{}
	for _, v := range m.vms {
		st := out[v.rec.Image]
		switch State(v.rec.State) {
		case StateRunning:
			st.Running++
			if v.holds > 0 {
				st.Active++
			}
		case StateSuspended:
			st.Suspended++
		case StateTerminated:
			continue
		}
		out[v.rec.Image] = st
	}
	return out
}
