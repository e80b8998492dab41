package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hearthdev/hearth/internal/atomicfile"
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
	case StateReady, StatePaused:
	default:
		e.mu.Unlock()
		return SuspendInfo{}, ErrBusy
	}
	// A paused environment's vCPUs are stopped already; the snapshot stops
	// them again (a no-op), and one that fails lets them run: it is then
	// ready, not paused.
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

// ErrNoSpace is returned by a suspend or a resume that the disk has no
// room for; the environment is left as it was, running or suspended.
var ErrNoSpace = errors.New("not enough disk space for a snapshot")

// snapshotReserve is the space a snapshot needs besides a memory it
// carries: the device state (tens of kilobytes) and the manifest, with a
// margin, so that a suspend never takes a disk's last blocks.
const snapshotReserve = 8 << 20

// reviveTimeout bounds how long a guest whose snapshot failed has to
// answer again before its environment is ended.
const reviveTimeout = 10 * time.Second

// snapshot writes the machine's state into the environment's folder, ends
// the VMM and records the snapshot in the manifest. No half snapshot is
// ever left to be used: the state is written aside and put under its name
// only complete and on disk, and the manifest that makes it a snapshot is
// written last. A failure before the VMM ended leaves the environment
// running (its guest continued, and answering); one after it ends the
// environment and removes its folder.
func (e *Env) snapshot(ctx context.Context, c *conn, next State) (SuspendInfo, error) {
	t0 := time.Now()
	if err := e.checkSpace(e.spec.MemoryPrivate); err != nil {
		return SuspendInfo{}, fmt.Errorf("%s: suspend: %w", e.id, err)
	}
	statePath := filepath.Join(e.dir, stateFile)
	tmp := statePath + ".tmp"
	snap, err := c.snapshot(ctx, tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return SuspendInfo{}, e.snapshotFailed(c, fmt.Errorf("%s: suspend: %w", e.id, err))
	}
	// The VMM has ended: what cannot be completed now is ended too.
	ended := func(err error) (SuspendInfo, error) {
		_ = os.Remove(tmp)
		_ = e.Close(context.Background())
		return SuspendInfo{}, fmt.Errorf("%s: suspend: %w; the environment is ended", e.id, err)
	}
	sum, err := guestimage.FileDigest(tmp)
	if err != nil {
		return ended(err)
	}
	if err := atomicfile.Commit(tmp, statePath); err != nil {
		return ended(err)
	}
	memPath := filepath.Join(e.dir, memoryFile)
	ref := &snapshotRef{StateBytes: snap.StateBytes, StateSHA256: sum, MemoryInState: snap.MemoryInState, MemoryBase: snap.MemoryBase, Created: time.Now().UTC()}
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
		return ended(err)
	}
	return SuspendInfo{Duration: time.Since(t0), StateBytes: snap.StateBytes, MemoryDiskBytes: vmm.DiskBytes(memPath)}, nil
}

// checkSpace refuses a snapshot or a resume the disk has no room for,
// before a machine is touched; memory says the guest's memory is written
// too. A machine whose memory is mapped privately (a clone) writes its
// memory into the state, and its resume writes it into a memory file of
// its own; any other has its memory on disk already.
func (e *Env) checkSpace(memory bool) error {
	need := int64(snapshotReserve)
	if memory {
		need += int64(e.spec.MemoryMiB) << 20
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", e.dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("%w: %d MiB free in %s, it needs %d MiB", ErrNoSpace, free>>20, e.dir, need>>20)
	}
	return nil
}

// snapshotFailed settles what a failed snapshot leaves. A VMM that still
// runs is continued (a snapshot that failed may leave its guest paused)
// and its agent must answer: the environment then runs on as before.
// Otherwise it is ended. err is returned, saying which.
func (e *Env) snapshotFailed(c *conn, err error) error {
	select {
	case <-c.m.Done():
	default:
		rerr := e.revive(c)
		if rerr == nil {
			e.log.Warn("suspend failed; the environment runs on", "err", err)
			return err
		}
		err = fmt.Errorf("%w; and then: %w", err, rerr)
	}
	_ = e.Close(context.Background())
	return fmt.Errorf("%w; the environment is ended", err)
}

// revive runs the guest's vCPUs and waits for its agent to answer a ping.
func (e *Env) revive(c *conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), reviveTimeout)
	defer cancel()
	if err := c.m.Start(ctx); err != nil {
		return fmt.Errorf("continue the guest: %w", err)
	}
	select {
	case <-c.pong: // a stale answer
	default:
	}
	// A guest that stopped reading would block the write: it is abandoned
	// then, and ends with the VMM when the environment is closed.
	wrote := make(chan error, 1)
	go func() { wrote <- c.out.Write(guestproto.TypePing, guestproto.Ping{Seq: 2}, nil) }()
	for {
		select {
		case err := <-wrote:
			if err != nil {
				return fmt.Errorf("ping the agent: %w", err)
			}
			wrote = nil
		case <-c.pong:
			return nil
		case <-c.gone:
			return fmt.Errorf("the agent channel ended: %w", ErrDead)
		case <-ctx.Done():
			return fmt.Errorf("the agent did not answer within %s", reviveTimeout)
		}
	}
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
	snap := vmm.Snapshot{StatePath: filepath.Join(e.dir, stateFile), MemoryInState: m.Snapshot.MemoryInState, MemoryBase: m.Snapshot.MemoryBase}
	if snap.MemoryBase != "" {
		// A clone's delta: the clone maps its template privately again,
		// and stays a clone.
		spec.MemoryPath, spec.MemoryPrivate = snap.MemoryBase, true
	} else if snap.MemoryInState {
		// The memory comes from the state file into a memory file of the
		// environment's own, which later suspends keep using. Without room
		// for it QEMU would die on its first write past the disk's end.
		if err := e.checkSpace(true); err != nil {
			e.setState(StateSuspended)
			return fmt.Errorf("%s: resume: %w", e.id, err)
		}
		spec.MemoryPath, spec.MemoryPrivate = "", false
		_ = os.Remove(spec.MemoryFile())
	}
	// A guest that runs writes into its memory file, which its device
	// state then no longer matches: the snapshot is spent once the
	// restored machine is started, whether the resume then succeeds, fails
	// or is cut short by a crash. Its state goes before the vCPUs run, so
	// that it is never restored again. (A state that carries the memory
	// stays valid until a resume succeeds.)
	var spend func() error
	if !snap.MemoryInState {
		spend = func() error {
			if err := os.Remove(snap.StatePath); err != nil {
				return err
			}
			return atomicfile.SyncDir(e.dir)
		}
	}
	if err := e.restoreSpending(ctx, spec, snap, false, spend); err != nil {
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
	return e.restoreSpending(ctx, spec, snap, clone, nil)
}

// restoreSpending is restore; spend, if set, runs once the state is loaded
// and before the guest runs.
func (e *Env) restoreSpending(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot, clone bool, spend func() error) error {
	t0 := time.Now()
	mach, err := e.cfg.VMM.Restore(ctx, spec, snap)
	if err != nil {
		return fmt.Errorf("%s: restore: %w", e.id, err)
	}
	if spend != nil {
		if err := spend(); err != nil {
			_ = mach.Stop(context.Background())
			return fmt.Errorf("%s: restore: %w", e.id, err)
		}
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
	e.startServices(c)
	e.log.Debug("resumed", "vmm_ms", msf(t1.Sub(t0)), "guest_ms", msf(time.Since(t1)), "agent_freshen_ms", msf(msIn(r.FreshenMs, time.Since(t1))))
	return nil
}

// awaitResumed starts the restored machine and tells its agent it was
// restored, with fresh entropy and the time, and waits for its answer, the
// whole within the boot timeout.
func (e *Env) awaitResumed(ctx context.Context, c *conn, clone bool) (guestproto.Resumed, error) {
	deadline := time.Now().Add(e.cfg.BootTimeout)
	if l, ok := e.Lease(); ok && !clone && e.cfg.Net != nil {
		// Before the guest runs again: the connections it had open at the
		// suspend are reset, as on Fly (a clone's namespace is new).
		if err := e.cfg.Net.Resumed(ctx, l); err != nil {
			return guestproto.Resumed{}, fmt.Errorf("%s: restore: %w", e.id, err)
		}
	}
	if err := c.m.Start(ctx); err != nil {
		return guestproto.Resumed{}, fmt.Errorf("%s: restore: %w", e.id, err)
	}
	msg := guestproto.Resume{UnixNano: time.Now().UnixNano(), EnvID: e.id, Clone: clone, Net: e.guestNet()}
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
