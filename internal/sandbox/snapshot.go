package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// SuspendInfo describes a suspend.
type SuspendInfo struct {
	Duration time.Duration
	// StateBytes is the device state written; MemoryDiskBytes the space the
	// (sparse) memory file takes.
	StateBytes      int64
	MemoryDiskBytes int64
}

// Suspend saves the environment to disk and ends its VMM: it then holds no
// process, no CPU and no host RAM. An environment in the middle of an
// invocation is not suspended (ErrBusy). The next Invoke resumes it.
func (e *Env) Suspend(ctx context.Context) (SuspendInfo, error) {
	e.mu.Lock()
	switch e.state {
	case StateSuspended:
		e.mu.Unlock()
		return SuspendInfo{}, nil
	case StateDead:
		e.mu.Unlock()
		return SuspendInfo{}, ErrDead
	case StateReady:
	default:
		e.mu.Unlock()
		return SuspendInfo{}, ErrBusy
	}
	e.state = StateBusy
	c := e.conn
	e.mu.Unlock()
	info, err := e.snapshot(ctx, c, StateSuspended)
	if err != nil {
		e.setState(StateReady)
		return info, err
	}
	return info, nil
}

// snapshot writes the machine's state into the environment's folder, ends
// the VMM and records the snapshot in the manifest.
func (e *Env) snapshot(ctx context.Context, c *conn, next State) (SuspendInfo, error) {
	t0 := time.Now()
	snap, err := c.snapshot(ctx, filepath.Join(e.dir, stateFile))
	if err != nil {
		return SuspendInfo{}, fmt.Errorf("%s: suspend: %w", e.id, err)
	}
	sum, err := guestimage.FileDigest(snap.StatePath)
	if err != nil {
		return SuspendInfo{}, err
	}
	memPath := filepath.Join(e.dir, memoryFile)
	ref := &snapshotRef{StateBytes: snap.StateBytes, StateSHA256: sum, MemoryInState: snap.MemoryInState, Created: time.Now().UTC()}
	if !snap.MemoryInState {
		ref.MemoryBytes = int64(e.spec.MemoryMiB) << 20
	} else {
		_ = os.Remove(memPath) // a clone's memory was the template's, privately
	}
	for _, f := range []string{"console.log", "qemu.log"} {
		_ = os.Remove(filepath.Join(e.dir, f))
	}
	e.mu.Lock()
	e.conn, e.snap, e.state = nil, ref, next
	e.mu.Unlock()
	if err := e.saveManifest(); err != nil {
		return SuspendInfo{}, err
	}
	return SuspendInfo{Duration: time.Since(t0), StateBytes: snap.StateBytes, MemoryDiskBytes: vmm.DiskBytes(memPath)}, nil
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Resume restores a suspended environment from its snapshot. A snapshot
// that does not validate is refused with ErrSnapshotInvalid.
func (e *Env) Resume(ctx context.Context) error {
	e.mu.Lock()
	if e.state != StateSuspended {
		e.mu.Unlock()
		return fmt.Errorf("%s: resume: not suspended (%s)", e.id, e.state)
	}
	e.state = StateBooting
	e.mu.Unlock()
	m, err := readManifest(e.dir)
	if err == nil {
		err = m.validate(e.dir, e.cfg.AgentDigest)
	}
	if err != nil {
		e.setState(StateSuspended)
		return fmt.Errorf("%s: %w", e.id, err)
	}
	spec := e.spec
	spec.Dir, spec.Detached = e.dir, e.cfg.Detached
	snap := vmm.Snapshot{StatePath: filepath.Join(e.dir, stateFile), MemoryInState: m.Snapshot.MemoryInState}
	if snap.MemoryInState {
		// The memory comes from the state file into a memory file of the
		// environment's own, which later suspends keep using.
		spec.MemoryPath, spec.MemoryPrivate = "", false
		_ = os.Remove(spec.MemoryFile())
	}
	if err := e.restore(ctx, spec, snap, false); err != nil {
		e.setState(StateSuspended)
		return err
	}
	// A resume wrote into the memory file: the state that went with it is
	// spent.
	_ = os.Remove(snap.StatePath)
	e.mu.Lock()
	e.snap, e.spec = nil, spec
	e.mu.Unlock()
	return e.saveManifest()
}

// restore starts a VMM from snap, waits for the agent to freshen the guest
// and makes the environment ready. On an error the VMM it started is
// stopped.
func (e *Env) restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot, clone bool) error {
	t0 := time.Now()
	mach, err := e.cfg.VMM.Restore(ctx, spec, snap)
	if err != nil {
		return fmt.Errorf("%s: restore: %w", e.id, err)
	}
	c := e.connect(mach, false)
	t1 := time.Now()
	r, err := e.awaitResumed(ctx, c, clone)
	e.mu.Lock()
	if err == nil && e.state == StateDead {
		err = fmt.Errorf("%s: closed while resuming: %w", e.id, ErrDead)
	}
	if err == nil {
		select {
		case <-c.gone:
			// The channel broke as the agent answered: the VMM is stopped.
			err = fmt.Errorf("%s: the agent channel broke after resuming: %w", e.id, c.err())
		default:
		}
	}
	if err != nil {
		if e.conn == c {
			e.conn = nil
		}
		e.mu.Unlock()
		_ = c.stop(context.Background())
		return err
	}
	// The guest's count of its restores is its own account: bounded.
	e.restores = int(clamp(int64(r.Restores), 0, 1<<31-1))
	e.ready = readiness{start: StartResume, restore: time.Since(t0)}
	if clone {
		e.ready.start = StartClone
	}
	e.state = StateReady
	e.mu.Unlock()
	e.log.Debug("resumed", "vmm_ms", msf(t1.Sub(t0)), "guest_ms", msf(time.Since(t1)), "agent_freshen_ms", msf(msIn(r.FreshenMs, time.Since(t1))))
	return nil
}

// awaitResumed starts the restored machine and tells its agent it was
// restored, with fresh entropy and the time, and waits for its answer, the
// whole within the boot timeout.
func (e *Env) awaitResumed(ctx context.Context, c *conn, clone bool) (guestproto.Resumed, error) {
	deadline := time.Now().Add(e.cfg.BootTimeout)
	if err := c.m.Start(ctx); err != nil {
		return guestproto.Resumed{}, fmt.Errorf("%s: restore: %w", e.id, err)
	}
	msg := guestproto.Resume{UnixNano: time.Now().UnixNano(), EnvID: e.id, Clone: clone}
	if err := c.send(ctx, deadline, guestproto.TypeResume, msg, entropy()); err != nil {
		return guestproto.Resumed{}, fmt.Errorf("%s: restore: %w", e.id, err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-c.resumed:
		return r, nil
	case <-c.gone:
		return guestproto.Resumed{}, fmt.Errorf("%s: the microVM stopped while resuming%s", e.id, e.consoleTail())
	case <-timer.C:
		return guestproto.Resumed{}, fmt.Errorf("%s: no answer from the agent %s after a restore", e.id, e.cfg.BootTimeout)
	case <-ctx.Done():
		return guestproto.Resumed{}, ctx.Err()
	}
}

// resumeOrBoot resumes a suspended environment; when its snapshot is
// refused it boots the function afresh in the same place: nothing is lost
// but the speed (and the memory of the old environment).
func (e *Env) resumeOrBoot(ctx context.Context) error {
	err := e.Resume(ctx)
	if err == nil || !errors.Is(err, ErrSnapshotInvalid) {
		return err
	}
	e.log.Warn("snapshot refused; cold starting", "err", err)
	for _, f := range []string{stateFile, memoryFile} {
		_ = os.Remove(filepath.Join(e.dir, f))
	}
	e.mu.Lock()
	e.state, e.snap = StateBooting, nil
	e.spec.MemoryPath, e.spec.MemoryPrivate = "", false
	e.mu.Unlock()
	if err := e.boot(ctx); err != nil {
		_ = e.Close(context.Background())
		return err
	}
	e.mu.Lock()
	e.ready.fallback = err.Error()
	e.mu.Unlock()
	return e.saveManifest()
}
