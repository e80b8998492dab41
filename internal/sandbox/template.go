package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/vmm"
)

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
	return NewTemplateWith(ctx, cfg, fn, img, nil)
}

// NewTemplateWith is NewTemplate with beforeSnapshot, if set, run between
// the init and the snapshot on the running environment (a MicroVM image's
// ready hook, reached through DialGuest): an error from it ends the
// environment and is returned, and no template is made.
func NewTemplateWith(ctx context.Context, cfg Config, fn Function, img Image, beforeSnapshot func(context.Context, *Env) error) (*Template, error) {
	cfg = cfg.withDefaults()
	cfg.Detached = false
	id := newID("tpl-")
	e := newEnv(cfg, fn, img, id, filepath.Join(cfg.Dir, id))
	e.kind, e.initType = kindTemplate, "snap-start"
	if err := e.boot(ctx); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	if beforeSnapshot != nil {
		if err := beforeSnapshot(ctx, e); err != nil {
			_ = e.Close(context.Background())
			return nil, err
		}
	}
	e.mu.Lock()
	if e.state != StateReady {
		st := e.state
		e.mu.Unlock()
		_ = e.Close(context.Background())
		return nil, fmt.Errorf("%s: the environment is %s before its snapshot: %w", id, st, ErrDead)
	}
	e.state = StateBusy
	c := e.conn
	e.mu.Unlock()
	info, err := e.snapshot(ctx, c, StateSuspended)
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
	e.spec.Disks = disks(e.fn, e.dir)
	e.timings = m.Timings
	if e.spec.NIC != nil && cfg.Net == nil {
		return nil, fmt.Errorf("%w: the template has a network card and this host gives no network", ErrSnapshotInvalid)
	}
	// The folder first: a daemon that dies now finds the folder and, by
	// its name, the network to sweep.
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	if e.spec.NIC != nil {
		// The template's card had no cable: the clone's is its own.
		e.spec.NIC = nil
		if err := e.attachNetwork(ctx); err != nil {
			_ = e.Close(context.Background())
			return nil, err
		}
	}
	// The clone's /tmp starts as the template's was at its snapshot, and
	// is its own from then on.
	if err := copySparse(filepath.Join(e.dir, tmpDiskFile), filepath.Join(tplDir, tmpDiskFile)); err != nil {
		_ = e.Close(context.Background())
		return nil, fmt.Errorf("%s: /tmp disk: %w", id, err)
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
