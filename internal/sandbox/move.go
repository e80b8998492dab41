package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hearthdev/hearth/internal/guestimage"
)

// Moving a suspended environment to another host (a drain): the sender
// reads what its folder needs (ReadMovable) and ships the files; the
// receiver puts them in a folder of its own and makes the manifest its
// own (Import), then adopts the environment as a restarted daemon would.

// Platform is what a snapshot can only be restored on: the same VMM
// version, machine and CPU model, and the same guest kernel and agent
// builds (the guest's memory holds them, running).
type Platform struct {
	// QEMU is the VMM's version.
	QEMU string `json:"qemu"`
	// Machine is the machine type with what the saved state depends on
	// (ACPI, the accelerator).
	Machine string `json:"machine"`
	// CPU is the guest's CPU model.
	CPU string `json:"cpu"`
	// Kernel is the guest kernel's SHA-256; Agent the agent build's.
	Kernel string `json:"kernel"`
	Agent  string `json:"agent"`
}

// Mismatch says why a snapshot made on from cannot be restored on p; nil
// when it can. An unknown part (empty) on either side is a mismatch.
func (p Platform) Mismatch(from Platform) error {
	var diffs []string
	for _, f := range []struct{ what, here, there string }{
		{"QEMU version", p.QEMU, from.QEMU},
		{"machine type", p.Machine, from.Machine},
		{"CPU model", p.CPU, from.CPU},
		{"kernel digest", p.Kernel, from.Kernel},
		{"agent digest", p.Agent, from.Agent},
	} {
		switch {
		case f.here == "" || f.there == "":
			diffs = append(diffs, fmt.Sprintf("%s unknown (%q here, %q in the snapshot)", f.what, short(f.here), short(f.there)))
		case f.here != f.there:
			diffs = append(diffs, fmt.Sprintf("%s %s here, %s in the snapshot", f.what, short(f.here), short(f.there)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrIncompatible, strings.Join(diffs, "; "))
}

// ErrIncompatible is a snapshot made on a platform other than this
// host's.
var ErrIncompatible = errors.New("snapshot of another platform")

// short keeps digests readable in a reason.
func short(s string) string {
	if len(s) == 64 && !strings.ContainsAny(s, " ,.") {
		return s[:12]
	}
	return s
}

// MachineType is the Platform.Machine of a machine with these options.
func MachineType(acpi bool, accel string) string {
	a := "off"
	if acpi {
		a = "on"
	}
	return fmt.Sprintf("microvm,acpi=%s accel=%s", a, accel)
}

// Movable is what a suspended environment's folder says of itself to a
// host that moves it.
type Movable struct {
	ID       string
	Function Function
	// Platform is the folder's part of its platform (machine, kernel,
	// agent); the host fills in its VMM and CPU.
	Platform Platform
	// Accel is the accelerator its machine ran under.
	Accel string
	// Files are the folder's files to ship, by name.
	Files []string
	// MemoryBase is, for a clone's delta, the template's memory file it
	// is over: shipped too, once.
	MemoryBase string
	// Network says the machine has a network card: the receiver must
	// give it one.
	Network bool
	// MemoryMB is the guest's memory.
	MemoryMB int
}

// ReadMovable reads the suspended environment in dir for a move. kernel
// digests the kernel file at a path (a cache: the kernel is the same for
// every environment).
func ReadMovable(dir string, kernelDigest func(path string) (string, error)) (Movable, error) {
	m, err := readManifest(dir)
	if err != nil {
		return Movable{}, err
	}
	if m.Kind != kindEnv || m.State != StateSuspended || m.Snapshot == nil {
		return Movable{}, fmt.Errorf("%s: not a suspended environment (%s, %s)", m.ID, m.Kind, m.State)
	}
	if err := m.validate(dir, ""); err != nil {
		return Movable{}, fmt.Errorf("%s: %w", m.ID, err)
	}
	if kernelDigest == nil {
		kernelDigest = guestimage.FileDigest
	}
	kd, err := kernelDigest(m.Kernel.Path)
	if err != nil {
		return Movable{}, fmt.Errorf("%s: kernel: %w", m.ID, err)
	}
	mv := Movable{ID: m.ID, Function: m.Function, Accel: string(m.Spec.Accel), MemoryBase: m.Snapshot.MemoryBase,
		Network: m.Spec.NIC != nil, MemoryMB: m.Spec.MemoryMiB,
		Platform: Platform{Machine: MachineType(m.ACPI, string(m.Spec.Accel)), Kernel: kd, Agent: m.AgentDigest}}
	mv.Files = []string{manifestFile, stateFile, tmpDiskFile}
	if !m.Snapshot.MemoryInState {
		mv.Files = append(mv.Files, memoryFile)
	}
	return mv, nil
}

// MovableFile says whether name is a file a move carries, so that a
// receiver writes no other into its folder.
func MovableFile(name string) bool {
	return slices.Contains([]string{manifestFile, stateFile, tmpDiskFile, memoryFile}, name)
}

// NewEnvID is a new environment's id, for a folder a receiver fills.
func NewEnvID() string { return newID("env-") }

// ImportOptions are what the receiving host has in place of the sender's.
type ImportOptions struct {
	// Image is this host's kernel and the initramfs it built of the same
	// code, layers and agent.
	Image Image
	// MemoryBase is this host's copy of the template memory a clone's
	// delta is over.
	MemoryBase string
	// RootDisk is this host's copy of the function's root disk (the same
	// disk: its size is checked), for a function that has one.
	RootDisk string
}

// Import makes the environment shipped into dir (named by its new id) this
// host's: its id, its kernel and initramfs paths, a clone's template
// memory, and a network of its own (its agent takes the new address at
// the resume, as a clone's does). The snapshot is then checked whole. On
// an error the network it made is removed; the folder is the caller's.
func Import(ctx context.Context, cfg Config, dir string, opts ImportOptions) error {
	cfg = cfg.withDefaults()
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	id := filepath.Base(dir)
	if m.Kind != kindEnv || m.State != StateSuspended || m.Snapshot == nil {
		return fmt.Errorf("%s: not a suspended environment (%s, %s)", m.ID, m.Kind, m.State)
	}
	if opts.Image.Kernel == nil {
		return errors.New("import: no kernel")
	}
	if m.AgentDigest != opts.Image.AgentDigest {
		return fmt.Errorf("%w: agent digest %s here, %s in the snapshot", ErrIncompatible, short(opts.Image.AgentDigest), short(m.AgentDigest))
	}
	if m.Function.Root != nil {
		// Its root disk is in the sender's cache: this host's copy of
		// the very same disk takes its place.
		if opts.RootDisk == "" {
			return errors.New("import: a function with a root disk, and no copy of it here")
		}
		root := *m.Function.Root
		root.Disk = opts.RootDisk
		m.Function.Root = &root
	}
	m.ID, m.PID = id, 0
	m.Kernel, m.Initrd, m.ACPI = refOf(opts.Image.Kernel.Path), refOf(opts.Image.Initrd), opts.Image.Kernel.ACPI
	m.Spec.ID, m.Spec.Kernel, m.Spec.Initrd, m.Spec.ACPI = id, opts.Image.Kernel.Path, opts.Image.Initrd, opts.Image.Kernel.ACPI
	if m.Snapshot.MemoryBase != "" {
		if opts.MemoryBase == "" {
			return errors.New("import: a clone's delta without its template's memory")
		}
		m.Snapshot.MemoryBase, m.Spec.MemoryPath = opts.MemoryBase, opts.MemoryBase
	} else if m.Spec.MemoryPrivate {
		m.Spec.MemoryPath = "" // a clone whose state carries its memory
	}
	m.Network = nil
	if m.Spec.NIC != nil {
		// The machine was saved with a card: it is restored with one,
		// on a network made here.
		if cfg.Net == nil {
			return fmt.Errorf("%w: its machine has a network card and this host gives no network", ErrIncompatible)
		}
		l, err := cfg.Net.Create(ctx, id, m.Function.Name, policyOf(m.Function))
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		m.Network, m.Spec.NIC = &l, nicOf(l)
	}
	fail := func(err error) error {
		if m.Network != nil {
			_ = cfg.Net.Remove(context.Background(), *m.Network)
		}
		return err
	}
	if err := writeJSON(filepath.Join(dir, manifestFile), m); err != nil {
		return fail(err)
	}
	if err := m.validate(dir, cfg.AgentDigest); err != nil {
		return fail(fmt.Errorf("%s: %w", id, err))
	}
	return nil
}

// Discard removes a folder a receiver filled and the network Import made
// for it, when the environment is not adopted after all.
func Discard(ctx context.Context, cfg Config, dir string) error {
	m, err := readManifest(dir)
	if err == nil && m.Network != nil && cfg.Net != nil && m.ID == filepath.Base(dir) {
		if err := cfg.Net.Remove(ctx, *m.Network); err != nil {
			cfg.withDefaults().Log.Warn("removing a moved environment's network", "env", m.ID, "err", err)
		}
	}
	return os.RemoveAll(dir)
}
