// Package vmm is the seam between Hearth and a virtual machine monitor. A
// Driver boots Machines from a MachineSpec; the sandbox above uses only these
// types, so QEMU and Firecracker are interchangeable behind them.
package vmm

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Accel is how the VMM runs guest code.
type Accel string

// Accelerations.
const (
	AccelAuto Accel = "auto" // probe once whether KVM runs a standard guest
	AccelKVM  Accel = "kvm"  // hardware virtualisation
	AccelTCG  Accel = "tcg"  // QEMU's software emulation: slower, but runs anywhere
)

// ParseAccel checks a --accel value.
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case AccelAuto, AccelKVM, AccelTCG:
		return a, nil
	case "":
		return AccelAuto, nil
	}
	return "", errors.New(`accel must be "auto", "kvm" or "tcg"`)
}

// MachineSpec says what to boot.
type MachineSpec struct {
	// ID names the machine in logs and process listings.
	ID string
	// Dir is the machine's state folder: its memory file, its sockets, its
	// console log. The caller owns it and removes it. The VMM may run as
	// another user and needs no right to the folder or those above it: the
	// driver opens its files and hands them over.
	Dir string
	// Kernel is an ELF vmlinux; Initrd an uncompressed newc cpio.
	Kernel string
	Initrd string
	// Cmdline is appended to the driver's own kernel arguments.
	Cmdline string
	// ACPI is on for kernels that find their devices through ACPI.
	ACPI bool
	// MemoryMiB is the guest's memory; it lives in a file (MemoryPath, by
	// default Dir/memory) so that a snapshot writes only the device state.
	MemoryMiB int
	// MemoryPath overrides where the memory file is.
	MemoryPath string
	// MemoryPrivate maps the memory file copy-on-write: the file is never
	// written (a clone of a template). A snapshot of such a machine carries
	// its memory in the state file.
	MemoryPrivate bool
	// DeltaSnapshot, with MemoryPrivate, lets a snapshot's state carry
	// only the pages that differ from the memory file (Snapshot.MemoryBase
	// then names it): its restore must map that same file privately again.
	DeltaSnapshot bool `json:",omitempty"`
	// FreePageReporting gives the guest a virtio-balloon that reports the
	// pages it frees, which the VMM then drops from the memory file. Never
	// with MemoryPrivate (the file is a template's), and so never on a
	// template either: its clones restore its devices. A restore must have
	// it if the saved machine had. Nothing sets it yet: with QEMU 7.2's
	// legacy virtio-mmio balloon the guest (CONFIG_VIRTIO_BALLOON) was seen
	// to report no page, so no memory file shrank.
	FreePageReporting bool
	VCPUs             int
	// Accel must be kvm or tcg here: a Driver does not probe.
	Accel Accel
	// TCGCacheMiB is, under emulation, this machine's translated-code
	// cache (QEMU's tb-size); 0 takes the driver's. Code that translates
	// to little (one static binary) needs little, and a paused machine
	// holds what it has.
	TCGCacheMiB int `json:",omitempty"`
	// Detached, when true, lets the VMM outlive the process that started it
	// (a long-lived environment); otherwise it dies with its parent.
	Detached bool
	// Disks are attached as virtio-blk devices. The guest finds each by
	// its Serial (/sys/block/vd*/serial), not by its order: virtio-mmio
	// probes devices in an order of its own. A restore must attach the
	// same disks as the machine that was saved.
	Disks []Disk
	// NIC, when set, is a virtio-net device. A restore must have one if
	// the saved machine had.
	NIC *NIC `json:"nic,omitempty"`
}

// NIC is a network interface whose backend is a TAP device in a network
// namespace, opened by the driver and handed to the VMM as a descriptor.
// With no Tap it is a card with no cable (a template's: its clones get
// theirs).
type NIC struct {
	MAC string `json:"mac"`
	// Netns is the path of the namespace the TAP is in.
	Netns string `json:"netns,omitempty"`
	Tap   string `json:"tap,omitempty"`
}

// Disk is a raw disk image on the host.
type Disk struct {
	Path string `json:"path"`
	// ReadOnly disks are opened read-only by the VMM and refused writes by
	// the device: a root shared by every environment of an image.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Serial names the disk to the guest (at most 20 bytes of letters,
	// digits and dashes).
	Serial string `json:"serial"`
}

// Machine is one running VMM process.
type Machine interface {
	ID() string
	// PID is the VMM's process id.
	PID() int
	// Start runs the guest's vCPUs: Boot leaves a machine paused so that the
	// VMM's own start-up and the guest's boot can be told apart.
	Start(ctx context.Context) error
	// Agent is the host end of the byte stream to the guest agent.
	Agent() io.ReadWriter
	// Stop ends the VMM, gently if it can, by force if it must. It is safe to
	// call more than once and after the VMM exited on its own.
	Stop(ctx context.Context) error
	// Done is closed when the VMM process has exited.
	Done() <-chan struct{}
	// ConsolePath is the file that receives the guest's serial console. It
	// is bounded in size; read it with ReadTail.
	ConsolePath() string
	// Snapshot pauses the guest, writes its device state to statePath and
	// ends the VMM. The guest's memory stays in its memory file (whose page
	// cache is released); for a machine with private memory, the memory goes
	// into the state file too.
	Snapshot(ctx context.Context, statePath string) (Snapshot, error)
	// Pause stops the guest's vCPUs and pushes its memory out of host RAM
	// into its memory file; the VMM process stays, with what it holds
	// (QEMU's translation cache). Unpause runs the vCPUs again; the guest's
	// memory comes back by page faults as it is touched.
	Pause(ctx context.Context) (PauseInfo, error)
	Unpause(ctx context.Context) error
	// Disconnect drops this process's connections to the VMM and leaves it
	// running, for a detached machine another process will attach to.
	Disconnect()
}

// Snapshot describes a snapshot just written.
type Snapshot struct {
	StatePath  string
	StateBytes int64
	// MemoryInState is true when the state file carries the guest's memory.
	MemoryInState bool
	// MemoryBase, when set, is the file the state's memory is a delta
	// over: the pages not in the state are this file's. A restore maps it
	// privately (MachineSpec.MemoryPrivate with this MemoryPath).
	MemoryBase string
}

// PauseInfo says what a pause released.
type PauseInfo struct {
	// RSSBeforeKiB and RSSAfterKiB are the VMM's VmRSS around the page-out.
	RSSBeforeKiB, RSSAfterKiB int64
	// PagedOut is false when the memory could not be pushed out (a private
	// mapping with no swap, or no right over the VMM): the vCPUs are
	// stopped all the same.
	PagedOut bool
	// AdvisedBytes is how much of the guest-RAM mapping was paged out.
	AdvisedBytes int64
	// WorkingSetBytes is how much guest memory was mapped at the pause:
	// what Unpause reads back ahead.
	WorkingSetBytes int64
}

// Driver boots machines.
type Driver interface {
	Boot(ctx context.Context, spec MachineSpec) (Machine, error)
}

// MemoryFile is where spec's memory file is.
func (s MachineSpec) MemoryFile() string {
	if s.MemoryPath != "" {
		return s.MemoryPath
	}
	return filepath.Join(s.Dir, "memory")
}

// ReadTail returns at most the last n bytes of the file at path: logs a
// guest writes (its console) are read only this way, never whole.
func ReadTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-max(n, 0), 0)
	b := make([]byte, fi.Size()-off)
	k, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b[:k], nil
}
