package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Files in an environment's or a template's folder.
const (
	manifestFile = "manifest.json"
	stateFile    = "state"
	memoryFile   = "memory"
)

// manifestFormat changes when an older manifest can no longer be read.
const manifestFormat = 1

const (
	kindEnv      = "env"
	kindTemplate = "template"
)

// ErrSnapshotInvalid is returned for a snapshot that cannot be restored: a
// missing, truncated or corrupted file, or one made by another agent build
// or for another kernel. Nothing is restored from it.
var ErrSnapshotInvalid = errors.New("snapshot refused")

// manifest is an environment's or a template's record on disk: what it runs,
// how its machine is made, and, when suspended, its snapshot.
type manifest struct {
	Format      int             `json:"format"`
	Kind        string          `json:"kind"`
	ID          string          `json:"id"`
	State       State           `json:"state"`
	PID         int             `json:"pid,omitempty"`
	Function    Function        `json:"function"`
	Kernel      fileRef         `json:"kernel"`
	Initrd      fileRef         `json:"initrd"`
	ACPI        bool            `json:"acpi"`
	AgentDigest string          `json:"agentDigest"`
	Spec        vmm.MachineSpec `json:"spec"`
	Snapshot    *snapshotRef    `json:"snapshot,omitempty"`
	Timings     BootTimings     `json:"timings"`
	Restores    int             `json:"restores"`
	// NextStart and Restore carry how the environment got ready to the
	// process that invokes it next, for its report.
	NextStart StartType     `json:"nextStart,omitempty"`
	Restore   time.Duration `json:"restore,omitempty"`
	Updated   time.Time     `json:"updated"`
}

// fileRef pins a file the machine needs by its size and time.
type fileRef struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"modTime"`
}

func refOf(path string) fileRef {
	r := fileRef{Path: path}
	if fi, err := os.Stat(path); err == nil {
		r.Size, r.ModTime = fi.Size(), fi.ModTime().UnixNano()
	}
	return r
}

func (r fileRef) check(what string) error {
	fi, err := os.Stat(r.Path)
	if err != nil {
		return fmt.Errorf("%w: its %s is gone: %v", ErrSnapshotInvalid, what, err)
	}
	if fi.Size() != r.Size || fi.ModTime().UnixNano() != r.ModTime {
		return fmt.Errorf("%w: its %s %s changed since the snapshot", ErrSnapshotInvalid, what, r.Path)
	}
	return nil
}

// snapshotRef describes the device state written at a suspend.
type snapshotRef struct {
	StateBytes    int64     `json:"stateBytes"`
	StateSHA256   string    `json:"stateSha256"`
	MemoryInState bool      `json:"memoryInState"`
	MemoryBytes   int64     `json:"memoryBytes"`
	Created       time.Time `json:"created"`
}

func (e *Env) manifest() manifest {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := manifest{
		Format: manifestFormat, Kind: e.kind, ID: e.id, State: e.state,
		Function: e.fn, Kernel: refOf(e.spec.Kernel), Initrd: refOf(e.spec.Initrd), ACPI: e.spec.ACPI,
		AgentDigest: e.img.AgentDigest, Spec: e.spec, Snapshot: e.snap, Timings: e.timings,
		Restores: e.restores, NextStart: e.nextStart, Restore: e.restoreDur, Updated: time.Now().UTC(),
	}
	m.Spec.Dir = "" // the folder is wherever the manifest is
	if e.link != nil && e.state != StateSuspended {
		m.PID = e.link.m.PID()
	}
	return m
}

func (e *Env) saveManifest() error {
	return writeJSON(filepath.Join(e.dir, manifestFile), e.manifest())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readManifest(dir string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrSnapshotInvalid, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: manifest is damaged: %v", ErrSnapshotInvalid, err)
	}
	if m.Format != manifestFormat {
		return m, fmt.Errorf("%w: manifest format %d, this Hearth reads %d", ErrSnapshotInvalid, m.Format, manifestFormat)
	}
	return m, nil
}

// validate checks that dir's snapshot can be restored by this host.
func (m manifest) validate(dir, agentDigest string) error {
	if m.Snapshot == nil {
		return fmt.Errorf("%w: %s has no snapshot", ErrSnapshotInvalid, m.ID)
	}
	if agentDigest != "" && m.AgentDigest != agentDigest {
		return fmt.Errorf("%w: made by another hearth-agent build (%.12s, this host runs %.12s)", ErrSnapshotInvalid, m.AgentDigest, agentDigest)
	}
	if err := m.Kernel.check("kernel"); err != nil {
		return err
	}
	if err := m.Initrd.check("initramfs"); err != nil {
		return err
	}
	statePath := filepath.Join(dir, stateFile)
	f, err := os.Open(statePath)
	if err != nil {
		return fmt.Errorf("%w: device state: %v", ErrSnapshotInvalid, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%w: device state: %v", ErrSnapshotInvalid, err)
	}
	if n != m.Snapshot.StateBytes {
		return fmt.Errorf("%w: device state is %d bytes, the manifest says %d (truncated?)", ErrSnapshotInvalid, n, m.Snapshot.StateBytes)
	}
	if hex.EncodeToString(h.Sum(nil)) != m.Snapshot.StateSHA256 {
		return fmt.Errorf("%w: device state does not match its checksum (corrupted)", ErrSnapshotInvalid)
	}
	if !m.Snapshot.MemoryInState {
		fi, err := os.Stat(filepath.Join(dir, memoryFile))
		if err != nil {
			return fmt.Errorf("%w: memory file: %v", ErrSnapshotInvalid, err)
		}
		if fi.Size() != m.Snapshot.MemoryBytes {
			return fmt.Errorf("%w: memory file is %d bytes, the manifest says %d", ErrSnapshotInvalid, fi.Size(), m.Snapshot.MemoryBytes)
		}
	}
	return nil
}

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
	l := e.link
	e.mu.Unlock()
	info, err := e.snapshot(ctx, l, StateSuspended)
	if err != nil {
		e.setState(StateReady)
		return info, err
	}
	return info, nil
}

// snapshot writes the machine's state into the environment's folder, ends
// the VMM and records the snapshot in the manifest.
func (e *Env) snapshot(ctx context.Context, l *link, next State) (SuspendInfo, error) {
	t0 := time.Now()
	snap, err := l.m.Snapshot(ctx, filepath.Join(e.dir, stateFile))
	if err != nil {
		return SuspendInfo{}, fmt.Errorf("%s: suspend: %w", e.id, err)
	}
	<-l.gone
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
	e.link, e.snap, e.state = nil, ref, next
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
// and makes the environment ready.
func (e *Env) restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot, clone bool) error {
	t0 := time.Now()
	mach, err := e.cfg.VMM.Restore(ctx, spec, snap)
	if err != nil {
		return fmt.Errorf("%s: restore: %w", e.id, err)
	}
	l := e.connect(mach)
	t1 := time.Now()
	if err := mach.Start(ctx); err != nil {
		_ = mach.Stop(context.Background())
		return fmt.Errorf("%s: restore: %w", e.id, err)
	}
	msg := guestproto.Resume{UnixNano: time.Now().UnixNano(), EnvID: e.id, Clone: clone}
	if err := l.out.Write(guestproto.TypeResume, msg, entropy()); err != nil {
		_ = mach.Stop(context.Background())
		return fmt.Errorf("%s: restore: %w", e.id, err)
	}
	select {
	case r := <-e.resumed:
		e.log.Debug("resumed", "vmm_ms", msf(t1.Sub(t0)), "guest_ms", msf(time.Since(t1)), "agent_freshen_ms", r.FreshenMs)
		e.mu.Lock()
		e.restores = r.Restores
		e.mu.Unlock()
	case <-l.gone:
		return fmt.Errorf("%s: the microVM stopped while resuming%s", e.id, e.consoleTail())
	case <-time.After(e.cfg.BootTimeout):
		_ = mach.Stop(context.Background())
		return fmt.Errorf("%s: no answer from the agent %s after a restore", e.id, e.cfg.BootTimeout)
	case <-ctx.Done():
		_ = mach.Stop(context.Background())
		return ctx.Err()
	}
	e.mu.Lock()
	e.restoreDur = time.Since(t0)
	e.nextStart = StartResume
	if clone {
		e.nextStart = StartClone
	}
	e.state = StateReady
	e.mu.Unlock()
	return nil
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
	e.fallback = err.Error()
	e.mu.Unlock()
	return e.saveManifest()
}

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
	e.timings, e.restores, e.snap = m.Timings, m.Restores, m.Snapshot
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
	l := e.connect(mach)
	if err := l.out.Write(guestproto.TypePing, guestproto.Ping{Seq: 1}, nil); err != nil {
		mach.Disconnect()
		return nil, err
	}
	select {
	case <-e.pong:
	case <-l.gone:
		return nil, fmt.Errorf("%s: %w", m.ID, ErrDead)
	case <-time.After(10 * time.Second):
		mach.Disconnect()
		return nil, fmt.Errorf("%s: the agent did not answer", m.ID)
	}
	e.mu.Lock()
	e.state, e.nextStart, e.restoreDur = StateReady, m.NextStart, m.Restore
	if e.nextStart == "" {
		e.nextStart = StartWarm
	}
	e.mu.Unlock()
	return e, nil
}

// Template is a snapshot taken right after a function's init, from which
// new environments are cloned instead of booted.
type Template struct {
	ID      string
	Dir     string
	Timings BootTimings
	Info    SuspendInfo
}

// NewTemplate boots the function (telling its runtime it initialises for a
// snapshot), waits for its init to finish, and snapshots it into
// cfg.Dir/<id>. The template is never written again: clones map its memory
// copy-on-write.
func NewTemplate(ctx context.Context, cfg Config, fn Function, img Image) (*Template, error) {
	cfg = cfg.withDefaults()
	cfg.Detached = false
	id := newID("tpl-")
	e := newEnv(cfg, fn, img, id, filepath.Join(cfg.Dir, id))
	e.kind, e.initType = kindTemplate, "snap-start"
	if err := e.boot(ctx); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	e.mu.Lock()
	e.state = StateBusy
	l := e.link
	e.mu.Unlock()
	info, err := e.snapshot(ctx, l, StateSuspended)
	if err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	return &Template{ID: id, Dir: e.dir, Timings: e.timings, Info: info}, nil
}

// Clone makes a new environment from the template in tplDir: a VMM restored
// from its snapshot with the memory mapped privately, then given fresh
// entropy, the current time and its own id. A template that does not
// validate is refused with ErrSnapshotInvalid.
func Clone(ctx context.Context, cfg Config, tplDir string) (*Env, error) {
	cfg = cfg.withDefaults()
	m, err := readManifest(tplDir)
	if err != nil {
		return nil, err
	}
	if m.Kind != kindTemplate {
		return nil, fmt.Errorf("%w: %s is not a template", ErrSnapshotInvalid, tplDir)
	}
	if err := m.validate(tplDir, cfg.AgentDigest); err != nil {
		return nil, err
	}
	id := newID("env-")
	img := Image{Kernel: &guestimage.Kernel{Path: m.Kernel.Path, ACPI: m.ACPI}, Initrd: m.Initrd.Path, AgentDigest: m.AgentDigest}
	cfg.Accel = m.Spec.Accel
	e := newEnv(cfg, m.Function, img, id, filepath.Join(cfg.Dir, id))
	e.spec = m.Spec
	e.spec.ID, e.spec.Dir, e.spec.Detached = id, e.dir, cfg.Detached
	e.spec.MemoryPath, e.spec.MemoryPrivate = filepath.Join(tplDir, memoryFile), true
	e.timings = m.Timings
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	snap := vmm.Snapshot{StatePath: filepath.Join(tplDir, stateFile)}
	if err := e.restore(ctx, e.spec, snap, true); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	if err := e.saveManifest(); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	return e, nil
}
