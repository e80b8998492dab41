// Package vmboot is what running microVMs on this machine takes: a VMM
// driver, a guest kernel, the agent binary and the acceleration, found and
// checked once, and the images (initramfs) built from code packages.
package vmboot

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

// Options choose the host's parts; empty ones are found.
type Options struct {
	// Kernel is an explicit guest kernel; Agent an explicit hearth-agent.
	Kernel string
	Agent  string
	// Accel is auto, kvm or tcg.
	Accel string
	// QEMU overrides the QEMU binary.
	QEMU string
	// VMMUser is who QEMU runs as; empty is qemu.DefaultUser when root.
	VMMUser string
	// VMMPool is how many QEMU processes of each machine shape are started
	// ahead (qemu.Options.Pool); PoolDir where their sockets are.
	VMMPool int
	PoolDir string
	// TCGCacheMiB is, under emulation, every VM's translated-code cache
	// (qemu.Options.TCGCacheMiB); 0 sizes it by what the VM runs:
	// qemu.InitramfsTCGCacheMiB for a function whose code is in its
	// initramfs, qemu.DefaultTCGCacheMiB for the others.
	TCGCacheMiB int
	// CacheDir is Hearth's cache (the minimal kernel, the probe's answer).
	CacheDir string
	Log      *slog.Logger
}

// Host is what running VMs on this machine takes.
type Host struct {
	Driver      *qemu.Driver
	Kernel      *guestimage.Kernel
	Agent       string
	AgentDigest string
	Accel       vmm.Accel
	cache       string
	log         *slog.Logger
	images      imageCache
	// initramfsTCG is the sandboxes' InitramfsTCGCacheMiB.
	initramfsTCG int
}

// Open finds and checks the host's parts.
func Open(opts Options) (*Host, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	accel, err := vmm.ParseAccel(opts.Accel)
	if err != nil {
		return nil, err
	}
	cache := opts.CacheDir
	k, err := guestimage.FindKernel(guestimage.KernelOptions{Path: opts.Kernel, CacheDir: cache})
	if err != nil {
		return nil, err
	}
	agent, err := guestimage.FindAgent(opts.Agent)
	if err != nil {
		return nil, err
	}
	drv, err := qemu.New(qemu.Options{Binary: opts.QEMU, User: opts.VMMUser, Log: log, Pool: opts.VMMPool, PoolDir: opts.PoolDir, TCGCacheMiB: opts.TCGCacheMiB})
	if err != nil {
		return nil, err
	}
	digest, err := guestimage.FileDigest(agent)
	if err != nil {
		return nil, err
	}
	log.Debug("host", "kernel", k.Path, "kernel_source", k.Source, "modules", len(k.Modules), "agent", agent)
	h := &Host{Driver: drv, Kernel: k, Agent: agent, AgentDigest: digest, Accel: accel, cache: cache, log: log}
	if opts.TCGCacheMiB == 0 {
		h.initramfsTCG = qemu.InitramfsTCGCacheMiB
	}
	return h, nil
}

// ResolveAccel settles auto, probing with img once per host.
func (h *Host) ResolveAccel(ctx context.Context, img sandbox.Image) error {
	if h.Accel != vmm.AccelAuto {
		return nil
	}
	spec := vmm.MachineSpec{Kernel: img.Kernel.Path, Initrd: img.Initrd, ACPI: img.Kernel.ACPI, MemoryMiB: 128, VCPUs: 1}
	a, err := h.Driver.ResolveAccel(ctx, vmm.AccelAuto, spec, filepath.Join(h.cache, "accel-probe.json"))
	if err != nil {
		return err
	}
	h.Accel = a
	return nil
}

// Close ends the VMM processes started ahead.
func (h *Host) Close() { h.Driver.Close() }

func (h *Host) SandboxConfig(dir string, logs io.Writer) sandbox.Config {
	return sandbox.Config{VMM: h.Driver, Dir: dir, Accel: h.Accel, Logs: logs, Log: h.log, AgentDigest: h.AgentDigest,
		InitramfsTCGCacheMiB: h.initramfsTCG}
}
