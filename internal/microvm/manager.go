package microvm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Manager runs MicroVMs: it builds images into templates, clones MicroVMs
// from them, applies their idle policies, and keeps them across a daemon's
// restart.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	envCfg sandbox.Config // MicroVMs' environments: cfg.Sandbox.Dir
	tplCfg sandbox.Config // templates and test VMs: Dir/templates

	// mu guards the maps and every record's fields; an operation on one
	// MicroVM holds its op lock besides, for its whole length.
	mu     sync.Mutex
	images map[string]*image
	vms    map[string]*vm

	builds   sync.WaitGroup
	buildCtx context.Context
	stopAll  context.CancelFunc
	loopDone chan struct{}
}

// image is an image and its versions, by number.
type image struct {
	rec      store.MicroVMImage
	versions map[int]*imageVersion
}

type imageVersion struct {
	rec   store.MicroVMImageVersion
	input ImageInput
}

// vm is one MicroVM.
type vm struct {
	op sync.Mutex // one lifecycle operation at a time

	// Guarded by Manager.mu.
	rec    store.MicroVM
	policy *IdlePolicy
	hooks  *Hooks
	env    *sandbox.Env
	holds  int    // open connections and exec/file holds
	bytes  uint64 // its network's byte count at the last tick
	seen   bool   // bytes was read once
}

// New opens the Manager on its store and folder: the images and MicroVMs
// a previous daemon left are found again (see recover).
func New(ctx context.Context, cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Log.With("part", "microvm"), images: map[string]*image{}, vms: map[string]*vm{}}
	m.envCfg = cfg.Sandbox
	m.tplCfg = cfg.Sandbox
	m.tplCfg.Dir = filepath.Join(cfg.Sandbox.Dir, "templates")
	m.tplCfg.Detached = false
	for _, d := range []string{m.envCfg.Dir, m.tplCfg.Dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("microvm: %w", err)
		}
	}
	m.buildCtx, m.stopAll = context.WithCancel(context.WithoutCancel(ctx))
	if err := m.recover(ctx); err != nil {
		m.stopAll()
		return nil, err
	}
	return m, nil
}

// Start applies the idle policies every IdleTick until Shutdown.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	if m.loopDone != nil {
		m.mu.Unlock()
		return
	}
	done := make(chan struct{})
	m.loopDone = done
	m.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(m.cfg.IdleTick)
		defer t.Stop()
		for {
			select {
			case <-m.buildCtx.Done():
				return
			case <-ctx.Done():
				return
			case <-t.C:
				m.tick(m.buildCtx)
			}
		}
	}()
}

// Shutdown stops the idle loop and the builds in progress (their versions
// fail) and suspends every running MicroVM: they stay SUSPENDED, resumable
// by the next daemon (and auto-resumed by a request). A MicroVM that cannot
// be suspended is left running, detached, for the next daemon to attach.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.stopAll()
	m.mu.Lock()
	done := m.loopDone
	vms := m.listVMs()
	m.mu.Unlock()
	if done != nil {
		<-done
	}
	m.builds.Wait()
	var errs []error
	for _, v := range vms {
		v.op.Lock()
		m.mu.Lock()
		state, env := State(v.rec.State), v.env
		m.mu.Unlock()
		if state == StateRunning && env != nil {
			if err := m.suspendLocked(ctx, v, "The daemon stopped."); err != nil {
				errs = append(errs, err)
				if env.State() != sandbox.StateDead {
					_ = env.Detach()
				}
			}
		}
		v.op.Unlock()
	}
	return errors.Join(errs...)
}

// listVMs is every MicroVM; m.mu is held.
func (m *Manager) listVMs() []*vm {
	out := make([]*vm, 0, len(m.vms))
	for _, v := range m.vms {
		out = append(out, v)
	}
	return out
}

// recover loads the records and finds the MicroVMs a previous daemon left:
// suspended ones are opened from their folders; running ones (after a
// crash: they run detached) are attached to; one whose VMM is gone is
// terminated with a reason. Builds a stop cut short fail, and the folders
// no record points to are removed.
func (m *Manager) recover(ctx context.Context) error {
	imgs, err := m.cfg.Store.MicroVMImages(ctx)
	if err != nil {
		return fmt.Errorf("microvm: images: %w", err)
	}
	for _, r := range imgs {
		m.images[r.Name] = &image{rec: r, versions: map[int]*imageVersion{}}
	}
	vers, err := m.cfg.Store.MicroVMImageVersions(ctx)
	if err != nil {
		return fmt.Errorf("microvm: image versions: %w", err)
	}
	keep := map[string]bool{}
	for _, r := range vers {
		img := m.images[r.Image]
		if img == nil {
			continue
		}
		iv := &imageVersion{rec: r}
		if err := json.Unmarshal([]byte(r.Input), &iv.input); err != nil {
			m.log.Warn("an image version's input is unreadable", "image", r.Image, "version", r.Version, "err", err)
		}
		if ImageState(r.State) == ImageCreating {
			iv.rec.State, iv.rec.Reason = string(ImageCreateFailed), "The build was interrupted by a daemon stop: update the image to build it again."
			iv.rec.Built = m.cfg.Now().UTC()
			if err := m.cfg.Store.UpdateMicroVMImageVersion(ctx, iv.rec); err != nil {
				return fmt.Errorf("microvm: %w", err)
			}
		}
		if iv.rec.TemplateDir != "" {
			keep[filepath.Clean(iv.rec.TemplateDir)] = true
		}
		img.versions[r.Version] = iv
	}
	recs, err := m.cfg.Store.MicroVMs(ctx)
	if err != nil {
		return fmt.Errorf("microvm: %w", err)
	}
	for _, r := range recs {
		v := &vm{rec: r}
		if r.IdlePolicy != "" {
			v.policy = new(IdlePolicy)
			_ = json.Unmarshal([]byte(r.IdlePolicy), v.policy)
		}
		if iv := m.version(r.Image, r.Version); iv != nil {
			v.hooks = iv.input.Hooks
		}
		if State(r.State) != StateTerminated {
			m.reopen(ctx, v)
		}
		if v.env != nil {
			keep[filepath.Clean(v.env.Dir())] = true
			// A moved MicroVM's template memory (MovedBasePath).
			if f, err := sandbox.ReadFolder(v.env.Dir()); err == nil && f.MemoryBase != "" {
				keep[filepath.Dir(filepath.Clean(f.MemoryBase))] = true
			}
		}
		m.vms[r.ID] = v
	}
	m.sweep(keep)
	return nil
}

// reopen finds v's environment in its folder after a restart.
func (m *Manager) reopen(ctx context.Context, v *vm) {
	now := m.cfg.Now().UTC()
	// A snapshot a crash cut short left its state written aside.
	if _, err := atomicfile.RemoveStale(v.rec.EnvDir); err != nil {
		m.log.Warn("removing a cut-short snapshot", "microvm", v.rec.ID, "err", err)
	}
	env, err := sandbox.Open(ctx, m.envCfg, v.rec.EnvDir)
	if err == nil {
		switch env.State() {
		case sandbox.StateSuspended:
			if State(v.rec.State) == StateRunning {
				// It was suspended, and the daemon died before its record.
				m.meterRunEnded(v.rec.ID, now)
				m.meterSuspended(v, now)
			}
			v.env, v.rec.State, v.rec.StateSince = env, string(StateSuspended), now
		default:
			v.env = env
			if State(v.rec.State) != StateRunning {
				v.rec.State, v.rec.StateSince = string(StateRunning), now
				m.meterRunStarted(v, now)
			}
			v.rec.LastActivity = now
		}
		m.log.Info("MicroVM found again", "microvm", v.rec.ID, "state", v.rec.State)
		m.save(ctx, v)
		return
	}
	m.log.Warn("MicroVM lost", "microvm", v.rec.ID, "state", v.rec.State, "err", err)
	reason := "The MicroVM's machine ended while the daemon was down."
	if State(v.rec.State) == StateSuspended {
		reason = "The MicroVM's snapshot could not be restored: " + err.Error()
	}
	if v.rec.EnvDir != "" {
		_ = os.RemoveAll(v.rec.EnvDir)
		_ = network.RemoveNetns(network.NetnsPrefix + filepath.Base(v.rec.EnvDir))
	}
	m.terminated(ctx, v, reason, now)
}

// sweep removes the folders in the MicroVMs' folder and its templates
// that no record keeps: a clone, build or test VM a crash cut short.
func (m *Manager) sweep(keep map[string]bool) {
	for _, dir := range []string{m.envCfg.Dir, m.tplCfg.Dir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if !e.IsDir() || keep[p] || p == m.tplCfg.Dir {
				continue
			}
			if f, err := sandbox.ReadFolder(p); err == nil && f.PID > 0 && processAlive(f.PID) {
				continue // a VMM still runs there: never pull its folder away
			}
			if strings.HasPrefix(e.Name(), "env-") {
				_ = network.RemoveNetns(network.NetnsPrefix + e.Name())
			}
			if err := os.RemoveAll(p); err != nil {
				m.log.Warn("removing a MicroVM folder", "dir", p, "err", err)
				continue
			}
			m.log.Info("removed a MicroVM folder no record keeps", "dir", p)
		}
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// version is an image's version; m.mu is held (or not needed yet).
func (m *Manager) version(name string, version int) *imageVersion {
	img := m.images[name]
	if img == nil {
		return nil
	}
	return img.versions[version]
}

// save writes v's record through; m.mu is not held.
func (m *Manager) save(ctx context.Context, v *vm) {
	m.mu.Lock()
	rec := v.rec
	m.mu.Unlock()
	if err := m.cfg.Store.PutMicroVM(context.WithoutCancel(ctx), rec); err != nil {
		m.log.Error("recording a MicroVM", "microvm", rec.ID, "err", err)
	}
}

// setState moves v to state, with a reason; m.mu is not held.
func (m *Manager) setState(ctx context.Context, v *vm, state State, reason string) {
	m.mu.Lock()
	v.rec.State, v.rec.Reason, v.rec.StateSince = string(state), reason, m.cfg.Now().UTC()
	m.mu.Unlock()
	m.save(ctx, v)
}

// terminated records v's end: TERMINATED, its reason and time, its
// environment gone; the meter's running period, suspension and life end.
func (m *Manager) terminated(ctx context.Context, v *vm, reason string, at time.Time) {
	m.mu.Lock()
	wasRunning := State(v.rec.State) == StateRunning || State(v.rec.State) == StateTerminating
	v.rec.State, v.rec.Reason, v.rec.StateSince, v.rec.Terminated = string(StateTerminated), reason, at, at
	v.env, v.holds = nil, 0
	m.mu.Unlock()
	if wasRunning {
		m.meterRunEnded(v.rec.ID, at)
	}
	m.meterEnded(v.rec.ID, at)
	m.save(ctx, v)
}

func newMicroVMID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "mvm-" + hex.EncodeToString(b[:])
}

// meterName is the cost report's row of a MicroVM of image.
func meterName(image string) string { return "microvm:" + image }

func (m *Manager) meterWarn(what string, err error) {
	if err != nil {
		m.log.Warn("metering", "what", what, "err", err)
	}
}

func (m *Manager) meterRunStarted(v *vm, at time.Time) {
	if m.cfg.Meter != nil {
		m.meterWarn("microvm run", m.cfg.Meter.MicroVMRunStarted(context.Background(), v.rec.ID, meterName(v.rec.Image), v.rec.MemoryMiB, at))
	}
}

func (m *Manager) meterRunEnded(id string, at time.Time) {
	if m.cfg.Meter != nil {
		m.meterWarn("microvm run end", m.cfg.Meter.MicroVMRunEnded(context.Background(), id, at))
	}
}

func (m *Manager) meterSuspended(v *vm, at time.Time) {
	if m.cfg.Meter == nil {
		return
	}
	m.meterWarn("microvm suspend", m.cfg.Meter.Suspended(context.Background(), v.rec.ID, meterName(v.rec.Image), dirBytes(v.rec.EnvDir), at))
}

func (m *Manager) meterEnded(id string, at time.Time) {
	if m.cfg.Meter != nil {
		m.meterWarn("microvm end", m.cfg.Meter.EnvEnded(context.Background(), id, at))
	}
}

// dirBytes is the disk space the files in dir take (a suspended MicroVM's
// snapshot: its state with its memory, and its /tmp).
func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Type().IsRegular() {
			n += vmm.DiskBytes(filepath.Join(dir, e.Name()))
		}
	}
	return n
}
