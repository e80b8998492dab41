package microvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Limits of RunMicrovm's input. Hearth's idle durations may be as short
// as a second (AWS's maxIdleDurationSeconds is at least 60): tests and
// agents that want to be frozen quickly use it.
const (
	maxClientToken   = 128
	minIdleSeconds   = 1
	maxDurationLimit = 365 * 24 * 3600
	minTokenTTL      = time.Minute
	maxTokenTTL      = time.Hour
)

// checkRunInput checks in.
func checkRunInput(in RunInput) error {
	if in.ImageIdentifier == "" {
		return validation("imageIdentifier is required: an image's name or ARN")
	}
	if len(in.RunHookPayload) > MaxRunHookPayload {
		return validation("runHookPayload is %d bytes; at most %d", len(in.RunHookPayload), MaxRunHookPayload)
	}
	if len(in.ClientToken) > maxClientToken {
		return validation("clientToken is %d characters; at most %d", len(in.ClientToken), maxClientToken)
	}
	if in.MaximumDurationInSeconds < 0 || in.MaximumDurationInSeconds > maxDurationLimit {
		return validation("maximumDurationInSeconds must be between 0 (no limit) and %d, not %d", maxDurationLimit, in.MaximumDurationInSeconds)
	}
	if p := in.IdlePolicy; p != nil {
		if p.MaxIdleDurationSeconds < minIdleSeconds {
			return validation("idlePolicy.maxIdleDurationSeconds must be at least %d, not %d", minIdleSeconds, p.MaxIdleDurationSeconds)
		}
		if p.SuspendedDurationSeconds < 0 {
			return validation("idlePolicy.suspendedDurationSeconds must be 0 (no limit) or more, not %d", p.SuspendedDurationSeconds)
		}
	}
	return nil
}

// inputHash identifies a run's input, for the client token's idempotency.
func inputHash(in RunInput) string {
	in.ClientToken = ""
	b, _ := json.Marshal(in)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Run clones a MicroVM from an image version's template (the active one
// when in.ImageVersion is empty), calls its run hook with the payload and
// returns it RUNNING. A client token already used with the same input
// returns the MicroVM it ran; with another input it is ErrConflict.
func (m *Manager) Run(ctx context.Context, in RunInput) (MicroVM, error) {
	if err := checkRunInput(in); err != nil {
		return MicroVM{}, err
	}
	hash := inputHash(in)
	now := m.cfg.Now().UTC()
	m.mu.Lock()
	if in.ClientToken != "" {
		for _, v := range m.vms {
			if v.rec.ClientToken != in.ClientToken {
				continue
			}
			if v.rec.InputHash != hash {
				m.mu.Unlock()
				return MicroVM{}, conflict("clientToken %q was used for another RunMicrovm input (MicroVM %s)", in.ClientToken, v.rec.ID)
			}
			out := m.view(v)
			m.mu.Unlock()
			return out, nil
		}
	}
	img, ok := m.images[imageName(in.ImageIdentifier)]
	if !ok {
		m.mu.Unlock()
		return MicroVM{}, notFound("no image %s", in.ImageIdentifier)
	}
	n := active(img)
	if in.ImageVersion != "" {
		var err error
		if n, err = parseVersion(in.ImageVersion); err != nil {
			m.mu.Unlock()
			return MicroVM{}, err
		}
	}
	iv := img.versions[n]
	switch {
	case n == 0:
		m.mu.Unlock()
		return MicroVM{}, conflict("image %s has no version built yet (its latest is %s)", img.rec.Name, m.imageView(img).State)
	case iv == nil:
		m.mu.Unlock()
		return MicroVM{}, notFound("image %s has no version %d", img.rec.Name, n)
	case ImageState(iv.rec.State) != ImageCreated:
		m.mu.Unlock()
		return MicroVM{}, conflict("version %d of image %s is %s, not %s: %s", n, img.rec.Name, iv.rec.State, ImageCreated, iv.rec.Reason)
	}
	v := &vm{rec: store.MicroVM{ID: newMicroVMID(), ClientToken: in.ClientToken, InputHash: hash, Image: img.rec.Name, Version: n,
		State: string(StatePending), MemoryMiB: iv.input.MemoryMiB, MaxDuration: in.MaximumDurationInSeconds,
		Started: now, StateSince: now, LastActivity: now}, policy: in.IdlePolicy, hooks: iv.input.Hooks}
	if in.IdlePolicy != nil {
		b, _ := json.Marshal(in.IdlePolicy)
		v.rec.IdlePolicy = string(b)
	}
	tplDir := iv.rec.TemplateDir
	m.vms[v.rec.ID] = v
	v.op.Lock()
	m.mu.Unlock()
	defer v.op.Unlock()
	if err := m.cfg.Store.PutMicroVM(ctx, v.rec); err != nil {
		m.mu.Lock()
		delete(m.vms, v.rec.ID)
		m.mu.Unlock()
		return MicroVM{}, fmt.Errorf("recording a MicroVM: %w", err)
	}
	if m.cfg.Meter != nil {
		m.meterWarn("microvm start", m.cfg.Meter.EnvStarted(context.Background(), v.rec.ID, meterName(v.rec.Image), v.rec.MemoryMiB, now))
	}
	// The clone and its hook are not cut short by a caller that goes: a
	// MicroVM half made would be neither running nor gone.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	env, err := sandbox.Clone(octx, m.envCfg, tplDir)
	if err != nil {
		m.terminated(ctx, v, "The MicroVM could not start: "+err.Error(), m.cfg.Now().UTC())
		out, _ := m.Get(ctx, v.rec.ID)
		return out, fmt.Errorf("MicroVM %s could not start: %w", v.rec.ID, err)
	}
	m.mu.Lock()
	v.env, v.rec.EnvDir = env, env.Dir()
	m.mu.Unlock()
	m.save(ctx, v)
	if err := m.callHook(octx, env, v.hooks, hookRun, []byte(in.RunHookPayload)); err != nil {
		_ = env.Close(context.Background())
		m.terminated(ctx, v, "The run hook failed: "+err.Error(), m.cfg.Now().UTC())
		out, _ := m.Get(ctx, v.rec.ID)
		return out, fmt.Errorf("MicroVM %s: %w", v.rec.ID, err)
	}
	at := m.cfg.Now().UTC()
	m.mu.Lock()
	v.rec.LastActivity = at
	m.mu.Unlock()
	m.setState(ctx, v, StateRunning, "")
	m.meterRunStarted(v, at)
	m.log.Info("MicroVM running", "microvm", v.rec.ID, "image", v.rec.Image, "version", v.rec.Version, "env", env.ID())
	return m.Get(ctx, v.rec.ID)
}

// view is v as the API shows it; m.mu is held.
func (m *Manager) view(v *vm) MicroVM {
	out := MicroVM{ID: v.rec.ID, State: State(v.rec.State), StateReason: v.rec.Reason, ImageARN: m.imageARN(v.rec.Image),
		ImageVersion: strconv.Itoa(v.rec.Version), MaximumDurationInSeconds: v.rec.MaxDuration, MemoryMiB: v.rec.MemoryMiB,
		StartedAt: v.rec.Started, TerminatedAt: v.rec.Terminated, LastActivity: v.rec.LastActivity}
	if v.policy != nil {
		p := *v.policy
		out.IdlePolicy = &p
	}
	if m.cfg.Endpoint != nil {
		out.Endpoint = m.cfg.Endpoint(v.rec.ID)
	}
	return out
}

// lookup finds a MicroVM; m.mu is not held.
func (m *Manager) lookup(id string) (*vm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vms[id]
	if !ok {
		return nil, notFound("no MicroVM %s", id)
	}
	return v, nil
}

// Get describes a MicroVM.
func (m *Manager) Get(ctx context.Context, id string) (MicroVM, error) {
	v, err := m.lookup(id)
	if err != nil {
		return MicroVM{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.view(v), nil
}

// List lists MicroVMs, oldest first, optionally of one image (and
// version); nextToken is the last id of the previous page.
func (m *Manager) List(ctx context.Context, in ListInput) ([]MicroVM, string, error) {
	n, err := pageSize(in.MaxResults)
	if err != nil {
		return nil, "", err
	}
	version := 0
	if in.ImageVersion != "" {
		if version, err = parseVersion(in.ImageVersion); err != nil {
			return nil, "", err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	vms := m.listVMs()
	slices.SortFunc(vms, func(a, b *vm) int {
		if c := a.rec.Started.Compare(b.rec.Started); c != 0 {
			return c
		}
		return strings.Compare(a.rec.ID, b.rec.ID)
	})
	start := 0
	if in.NextToken != "" {
		start = slices.IndexFunc(vms, func(v *vm) bool { return v.rec.ID == in.NextToken })
		if start < 0 {
			return nil, "", validation("nextToken %q is not one this API gave (or its MicroVM is forgotten)", in.NextToken)
		}
		start++
	}
	img := imageName(in.ImageIdentifier)
	var out []MicroVM
	next := ""
	for _, v := range vms[start:] {
		if (img != "" && v.rec.Image != img) || (version != 0 && v.rec.Version != version) {
			continue
		}
		if len(out) == n {
			next = out[n-1].ID
			break
		}
		out = append(out, m.view(v))
	}
	return out, next, nil
}

// Suspend suspends a RUNNING MicroVM: its suspend hook (a failing one is
// logged, and the suspend goes on), then its snapshot; it then holds no
// process and no RAM. Another state is ErrConflict.
func (m *Manager) Suspend(ctx context.Context, id string) error {
	v, err := m.lookup(id)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	return m.suspendLocked(ctx, v, "")
}

// suspendLocked suspends v, whose op lock is held.
func (m *Manager) suspendLocked(ctx context.Context, v *vm, reason string) error {
	m.mu.Lock()
	state, env := State(v.rec.State), v.env
	m.mu.Unlock()
	if state != StateRunning || env == nil {
		return conflict("MicroVM %s is %s; only a RUNNING one can be suspended", v.rec.ID, state)
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	m.setState(ctx, v, StateSuspending, reason)
	if err := m.callHook(octx, env, v.hooks, hookSuspend, nil); err != nil {
		m.log.Warn("suspend hook failed; suspending anyway", "microvm", v.rec.ID, "err", err)
	}
	if _, err := env.Suspend(octx); err != nil {
		if env.State() == sandbox.StateDead {
			m.terminated(ctx, v, "The MicroVM ended while it was suspended: "+err.Error(), m.cfg.Now().UTC())
			return fmt.Errorf("suspending MicroVM %s: %w", v.rec.ID, err)
		}
		m.setState(ctx, v, StateRunning, "")
		return fmt.Errorf("suspending MicroVM %s: %w", v.rec.ID, err)
	}
	at := m.cfg.Now().UTC()
	m.setState(ctx, v, StateSuspended, reason)
	m.meterRunEnded(v.rec.ID, at)
	m.meterSuspended(v, at)
	m.log.Info("MicroVM suspended", "microvm", v.rec.ID, "reason", reason)
	return nil
}

// Resume resumes a SUSPENDED MicroVM from its snapshot, then calls its
// resume hook (a failing one is logged). Another state is ErrConflict.
func (m *Manager) Resume(ctx context.Context, id string) error {
	v, err := m.lookup(id)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	return m.resumeLocked(ctx, v)
}

// resumeLocked resumes v, whose op lock is held.
func (m *Manager) resumeLocked(ctx context.Context, v *vm) error {
	m.mu.Lock()
	state, env := State(v.rec.State), v.env
	m.mu.Unlock()
	if state != StateSuspended || env == nil {
		return conflict("MicroVM %s is %s; only a SUSPENDED one can be resumed", v.rec.ID, state)
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	m.setState(ctx, v, StatePending, "")
	if err := env.Resume(octx); err != nil {
		if errors.Is(err, sandbox.ErrSnapshotInvalid) || env.State() == sandbox.StateDead {
			_ = env.Close(context.Background())
			m.terminated(ctx, v, "The MicroVM's snapshot could not be restored: "+err.Error(), m.cfg.Now().UTC())
			return fmt.Errorf("resuming MicroVM %s: %w", v.rec.ID, err)
		}
		m.setState(ctx, v, StateSuspended, "")
		return fmt.Errorf("resuming MicroVM %s: %w", v.rec.ID, err)
	}
	at := m.cfg.Now().UTC()
	if m.cfg.Meter != nil {
		m.meterWarn("microvm resume", m.cfg.Meter.Resumed(context.Background(), v.rec.ID, at))
	}
	m.meterRunStarted(v, at)
	m.mu.Lock()
	v.rec.LastActivity, v.seen = at, false
	m.mu.Unlock()
	if err := m.callHook(octx, env, v.hooks, hookResume, nil); err != nil {
		m.log.Warn("resume hook failed", "microvm", v.rec.ID, "err", err)
	}
	m.setState(ctx, v, StateRunning, "")
	m.log.Info("MicroVM resumed", "microvm", v.rec.ID)
	return nil
}

// Terminate ends a MicroVM: its terminate hook if it runs (a failing one
// is logged), then its machine, snapshot and folder. A terminated one is
// left as it is.
func (m *Manager) Terminate(ctx context.Context, id string) error {
	v, err := m.lookup(id)
	if err != nil {
		return err
	}
	v.op.Lock()
	defer v.op.Unlock()
	return m.terminateLocked(ctx, v, "Terminated by a TerminateMicrovm call.")
}

// terminateLocked ends v, whose op lock is held.
func (m *Manager) terminateLocked(ctx context.Context, v *vm, reason string) error {
	m.mu.Lock()
	state, env := State(v.rec.State), v.env
	m.mu.Unlock()
	if state == StateTerminated {
		return nil
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	m.setState(ctx, v, StateTerminating, reason)
	var err error
	if env != nil {
		if state == StateRunning {
			if herr := m.callHook(octx, env, v.hooks, hookTerminate, nil); herr != nil {
				m.log.Warn("terminate hook failed", "microvm", v.rec.ID, "err", herr)
			}
		}
		err = env.Close(octx)
	}
	m.mu.Lock()
	v.rec.State = string(state) // for terminated's meter: was it running?
	m.mu.Unlock()
	m.terminated(ctx, v, reason, m.cfg.Now().UTC())
	m.log.Info("MicroVM terminated", "microvm", v.rec.ID, "reason", reason)
	if err != nil {
		m.log.Warn("closing a terminated MicroVM", "microvm", v.rec.ID, "dir", filepath.Base(v.rec.EnvDir), "err", err)
	}
	return nil
}

// AuthToken mints a token for the MicroVM's endpoint, valid for ttl (1 to
// 60 minutes) on ports (none is DefaultPort).
func (m *Manager) AuthToken(ctx context.Context, id string, ports []PortRange, ttl time.Duration) (string, error) {
	if ttl < minTokenTTL || ttl > maxTokenTTL {
		return "", validation("expirationInMinutes must be between 1 and 60, not %g", ttl.Minutes())
	}
	if len(ports) == 0 {
		ports = []PortRange{{Start: DefaultPort, End: DefaultPort}}
	}
	for _, p := range ports {
		if p.Start < 1 || p.End > 65535 || p.Start > p.End {
			return "", validation("allowedPorts: %d-%d is not a port range within 1-65535", p.Start, p.End)
		}
	}
	if m.cfg.Tokens == nil {
		return "", errors.New("this Hearth daemon mints no MicroVM tokens")
	}
	v, err := m.lookup(id)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	state := State(v.rec.State)
	m.mu.Unlock()
	if state == StateTerminated {
		return "", conflict("MicroVM %s is terminated", id)
	}
	return m.cfg.Tokens.Mint(id, ports, m.cfg.Now().Add(ttl))
}

// VerifyToken checks a token for the MicroVM's port, for the endpoint.
func (m *Manager) VerifyToken(token, id string, port int) error {
	if m.cfg.Tokens == nil {
		return errors.New("this Hearth daemon mints no MicroVM tokens")
	}
	return m.cfg.Tokens.Verify(token, id, port, m.cfg.Now())
}
