package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Moving a MicroVM to another host (a drain): the sender takes it out
// (TakeForMove: suspended, its operations held off), the daemon ships its
// folder as it ships a function's environment, and the receiver adopts it
// under the same id (Adopt), so its endpoint's host name and its tokens
// keep working; the sender forgets it only then (Outgoing.Moved).

// ErrStays is a MicroVM a drain cannot move: it runs and cannot be
// suspended. The error says why.
var ErrStays = errors.New("the MicroVM stays on this host")

// ErrNotNow is a MicroVM that cannot be taken out now (in use, or in the
// middle of an operation); a later try may.
var ErrNotNow = errors.New("the MicroVM cannot move now")

// Moved is what travels with a MicroVM's folder: its record (its EnvDir
// is the sender's) and its image's hooks, which the receiver may not have
// loaded yet.
type Moved struct {
	Record store.MicroVM `json:"record"`
	Hooks  *Hooks        `json:"hooks,omitempty"`
}

// Outgoing is a MicroVM taken out for a move: suspended, and no other
// operation runs on it until Return or Moved.
type Outgoing struct {
	m *Manager
	v *vm
	// Dir is its suspended environment's folder.
	Dir    string
	Export Moved
	done   bool
}

// MoveCandidates are the ids of the MicroVMs a drain moves: the running
// and the suspended ones.
func (m *Manager) MoveCandidates() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, v := range m.vms {
		switch State(v.rec.State) {
		case StateRunning, StateSuspended, StatePending, StateSuspending:
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TakeForMove takes MicroVM id out for a move. A suspended one is taken
// as it is; a running one is suspended first if its idle policy lets it
// be suspended (it has one) and nothing holds it (no open connection,
// exec or file operation): otherwise the error wraps ErrStays (no policy)
// or ErrNotNow (in use; a later try may take it).
func (m *Manager) TakeForMove(ctx context.Context, id string) (*Outgoing, error) {
	v, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if !v.op.TryLock() {
		return nil, fmt.Errorf("%w: an operation on it is in progress", ErrNotNow)
	}
	taken := false
	defer func() {
		if !taken {
			v.op.Unlock()
		}
	}()
	m.mu.Lock()
	state, policy, holds, env := State(v.rec.State), v.policy, v.holds, v.env
	m.mu.Unlock()
	switch {
	case state == StateSuspended && env != nil:
	case state == StateRunning && policy == nil:
		return nil, fmt.Errorf("%w: it runs, and it has no idle policy, so it is never suspended", ErrStays)
	case state == StateRunning && holds > 0:
		return nil, fmt.Errorf("%w: it runs and is in use (%d open connections or operations)", ErrNotNow, holds)
	case state == StateRunning:
		if err := m.suspendLocked(ctx, v, "Suspended to move it off a drained host."); err != nil {
			return nil, fmt.Errorf("%w: suspending it: %w", ErrNotNow, err)
		}
	default:
		return nil, fmt.Errorf("%w: it is %s", ErrNotNow, state)
	}
	m.mu.Lock()
	out := &Outgoing{m: m, v: v, Dir: v.rec.EnvDir, Export: Moved{Record: v.rec, Hooks: v.hooks}}
	m.mu.Unlock()
	taken = true
	return out, nil
}

// Return gives a MicroVM that did not move back to this host's
// operations, still suspended (a request resumes it here).
func (o *Outgoing) Return() {
	if !o.done {
		o.done = true
		o.v.op.Unlock()
	}
}

// Moved forgets the MicroVM once node adopted it: its record, its
// folder and network, its metering here.
func (o *Outgoing) Moved(ctx context.Context, node string) {
	if o.done {
		return
	}
	o.done = true
	o.m.forget(ctx, o.v, fmt.Sprintf("Moved to host %s by a drain.", node))
	o.v.op.Unlock()
}

// forget drops v from this host (its op lock held): it is not
// terminated, it lives elsewhere. An operation waiting for v finds it
// TERMINATED with reason.
func (m *Manager) forget(ctx context.Context, v *vm, reason string) {
	now := m.cfg.Now().UTC()
	m.mu.Lock()
	env := v.env
	if m.vms[v.rec.ID] == v {
		delete(m.vms, v.rec.ID)
	}
	v.rec.State, v.rec.Reason, v.env, v.holds = string(StateTerminated), reason, nil, 0
	m.mu.Unlock()
	if env != nil {
		if err := env.Close(context.WithoutCancel(ctx)); err != nil {
			m.log.Warn("removing a moved MicroVM's folder", "microvm", v.rec.ID, "err", err)
		}
	}
	m.meterEnded(v.rec.ID, now)
	if err := m.cfg.Store.DeleteMicroVM(context.WithoutCancel(ctx), v.rec.ID); err != nil {
		m.log.Warn("forgetting a moved MicroVM", "microvm", v.rec.ID, "err", err)
	}
	m.log.Info("MicroVM forgotten", "microvm", v.rec.ID, "reason", reason)
}

// CanAdopt says whether this host can take MicroVM id (it runs no
// MicroVM of that id).
func (m *Manager) CanAdopt(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.vms[id]; ok && State(v.rec.State) != StateTerminated {
		return fmt.Errorf("%w: this host has a MicroVM %s already (%s)", ErrConflict, id, v.rec.State)
	}
	return nil
}

// MoveDir is a new folder, among this host's MicroVMs, for a moved
// MicroVM's files.
func (m *Manager) MoveDir() (string, error) {
	dir := filepath.Join(m.envCfg.Dir, sandbox.NewEnvID())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("microvm: %w", err)
	}
	return dir, nil
}

// MovedBasePath is where this host keeps the template memory a moved
// MicroVM's snapshot is a delta over, named by key: among the templates,
// kept by a restart while a MicroVM's folder refers to it.
func (m *Manager) MovedBasePath(key string) string {
	return filepath.Join(m.tplCfg.Dir, "moved-"+key, "memory")
}

// Adopt makes the MicroVM whose files were shipped into dir (a MoveDir)
// this host's, SUSPENDED, under its id: its folder made this host's
// (sandbox.Import: this host's kernel and agent-only image, base as its
// template's memory, rootDisk as its root, a network of its own), its
// record written, its metering started here. It resumes on its next
// request (with autoResumeEnabled) or ResumeMicrovm. On an error the
// folder is removed.
func (m *Manager) Adopt(ctx context.Context, in Moved, dir, base, rootDisk, from string) error {
	id := in.Record.ID
	fail := func(err error) error {
		_ = sandbox.Discard(context.WithoutCancel(ctx), m.envCfg, dir)
		return fmt.Errorf("adopting MicroVM %s: %w", id, err)
	}
	if filepath.Dir(dir) != filepath.Clean(m.envCfg.Dir) {
		return fail(fmt.Errorf("%s is not a folder of this host's MicroVMs", dir))
	}
	if err := m.CanAdopt(id); err != nil {
		return fail(err)
	}
	if err := sandbox.Import(ctx, m.envCfg, dir, sandbox.ImportOptions{Image: m.cfg.Image, MemoryBase: base, RootDisk: rootDisk}); err != nil {
		return fail(err)
	}
	env, err := sandbox.Open(ctx, m.envCfg, dir)
	if err != nil {
		return fail(err)
	}
	if env.State() != sandbox.StateSuspended {
		_ = env.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("adopting MicroVM %s: its folder is %s, not suspended", id, env.State())
	}
	now := m.cfg.Now().UTC()
	rec := in.Record
	rec.EnvDir, rec.State, rec.StateSince = dir, string(StateSuspended), now
	rec.Reason = fmt.Sprintf("Moved from host %s by a drain.", from)
	v := &vm{rec: rec, env: env, hooks: in.Hooks}
	if rec.IdlePolicy != "" {
		v.policy = new(IdlePolicy)
		if err := json.Unmarshal([]byte(rec.IdlePolicy), v.policy); err != nil {
			_ = env.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("adopting MicroVM %s: its idle policy: %w", id, err)
		}
	}
	m.mu.Lock()
	if iv := m.version(rec.Image, rec.Version); iv != nil && iv.input.Hooks != nil {
		v.hooks = iv.input.Hooks
	}
	if old, ok := m.vms[id]; ok && State(old.rec.State) != StateTerminated {
		m.mu.Unlock()
		_ = env.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("adopting MicroVM %s: %w", id, ErrConflict)
	}
	m.vms[id] = v
	m.mu.Unlock()
	if err := m.cfg.Store.PutMicroVM(ctx, rec); err != nil {
		m.mu.Lock()
		delete(m.vms, id)
		m.mu.Unlock()
		_ = env.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("adopting MicroVM %s: recording it: %w", id, err)
	}
	// Its life and its snapshot's storage are metered here from now on.
	if m.cfg.Meter != nil {
		m.meterWarn("microvm start", m.cfg.Meter.EnvStarted(context.Background(), id, meterName(rec.Image), rec.MemoryMiB, now))
	}
	m.meterSuspended(v, now)
	m.log.Info("MicroVM adopted", "microvm", id, "from", from, "dir", filepath.Base(dir))
	return nil
}

// Unadopt forgets a MicroVM this host adopted when the move cannot be
// completed after all (the owners' record could not be written): the
// sender keeps it.
func (m *Manager) Unadopt(ctx context.Context, id string) {
	v, err := m.lookup(id)
	if err != nil {
		return
	}
	v.op.Lock()
	defer v.op.Unlock()
	m.forget(ctx, v, "The move was not completed.")
}
