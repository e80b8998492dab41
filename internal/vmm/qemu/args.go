package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearthdev/hearth/internal/vmm"
)

// Files in a machine's folder.
const (
	qmpSocket     = "qmp.sock"
	agentSocket   = "agent.sock"
	consoleSocket = "console.sock"
	streamsSocket = "streams.sock"
	consoleFile   = "console.log"
	vmmLogFile    = "qemu.log"
)

// sandboxOpts is QEMU's seccomp filter: no obsolete system calls, no change
// of user or group, no new processes or programs, no change of priorities or
// affinities. A QEMU that a guest took over can still do what QEMU does, but
// not start a shell or regain privileges.
const sandboxOpts = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// DefaultTCGCacheMiB caps TCG's translated-code cache (Options.TCGCacheMiB
// sets another, MachineSpec.TCGCacheMiB one machine's). QEMU's default (up
// to 1 GiB) would let a long-lived emulated guest grow QEMU past its
// cgroup's memory limit; this one holds a booted Linux and an interpreter
// many times over. It is most of what a paused environment keeps (hello's
// boot fills ~44 MiB). A smaller one is flushed and refilled during a
// boot: fine for one static binary (InitramfsTCGCacheMiB), not for an
// interpreter: at 20 MiB a Node.js cold start took 8.5 s instead of 4.5.
const DefaultTCGCacheMiB = 128

// InitramfsTCGCacheMiB is the translated-code cache Hearth gives, under
// emulation, a function whose code is in its initramfs (a zip on a
// provided runtime: the agent and one static binary). Measured with hello
// (README, "Speed on the host"): a paused environment holds 58 MiB of host
// RSS instead of 85, its warm and paused calls as at 128 MiB within the
// runs' spread, its cold start ~0.1 s slower; 16 MiB held 53 but slowed
// warm calls in some runs.
const InitramfsTCGCacheMiB = 20

// tcgCache is spec's translated-code cache in MiB: its own, or the
// driver's.
func (d *Driver) tcgCache(spec vmm.MachineSpec) int {
	if spec.TCGCacheMiB > 0 {
		return spec.TCGCacheMiB
	}
	return d.tcgCacheMiB
}

// reportingOrder is the size, as a power of two of pages, of the free blocks
// the guest reports (see balloonArgs).
const reportingOrder = "page_reporting.page_reporting_order=5"

// tcgCPU is the emulated CPU: all tcg can do, less ERMS and FSRM. With them
// the guest kernel copies and clears memory (memcpy, clear_page, copies to
// and from user space) with `rep movsb` / `rep stosb`, which tcg runs one
// byte per iteration; without them it takes its unrolled 8-byte loops.
const tcgCPU = "max,-erms,-fsrm"

// Descriptors QEMU inherits, in this order, from 3 on: it opens nothing by
// path, so it needs no right to any folder on the way to the machine's.
const (
	fdKernel = 3 + iota
	fdInitrd
	fdMemory
	fdQMP
	fdAgent
	fdConsole
	fdStreams
	// fdDisks is the first disk's; the others follow in spec.Disks' order.
	fdDisks
)

// procFD is how QEMU names an inherited descriptor where it wants a path:
// opening it reopens the same file, with the file's own permissions checked
// and not those of the folders above it.
func procFD(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// args is QEMU's command line for spec. The machine starts paused (-S) and
// exits instead of rebooting, so a guest that reboots or panics ends it.
// Its files and listening sockets are the descriptors above.
func (d *Driver) args(spec vmm.MachineSpec) []string {
	acpi := "off"
	if spec.ACPI {
		acpi = "on"
	}
	cpu := tcgCPU
	accel := string(spec.Accel)
	if spec.Accel == vmm.AccelKVM {
		cpu = "host"
	} else {
		accel += fmt.Sprintf(",tb-size=%d", d.tcgCache(spec))
	}
	// rtc=on: without a CMOS clock the kernel spends 1–2 s polling for one.
	machine := fmt.Sprintf("microvm,isa-serial=on,rtc=on,acpi=%s,memory-backend=mem", acpi)
	cmdline := []string{"console=ttyS0", "quiet", "reboot=t", "panic=-1", "no_timer_check"}
	if d.tscKHz > 0 {
		cmdline = append(cmdline, fmt.Sprintf("tsc_early_khz=%d", d.tscKHz))
	}
	if len(balloonArgs(spec)) > 0 {
		cmdline = append(cmdline, reportingOrder)
	}
	if spec.Cmdline != "" {
		cmdline = append(cmdline, spec.Cmdline)
	}
	// share=off maps the memory file privately: a clone's writes stay in
	// its own process and the template's file is never changed.
	share := "on"
	if spec.MemoryPrivate {
		share = "off"
	}
	args := []string{
		"-name", "hearth-" + spec.ID,
		"-M", machine,
		"-accel", accel,
		"-cpu", cpu,
		"-smp", fmt.Sprint(max(spec.VCPUs, 1)),
		"-m", fmt.Sprintf("%dM", spec.MemoryMiB),
		// The guest's RAM is this file, mapped shared: a suspend then writes
		// only the device state, and a resume maps the file back.
		"-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", spec.MemoryMiB, procFD(fdMemory), share),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-S",
		"-sandbox", sandboxOpts,
		"-kernel", procFD(fdKernel),
		"-initrd", procFD(fdInitrd),
		"-append", strings.Join(cmdline, " "),
		// The sockets are bound by the driver and listened on by QEMU. The
		// console is a socket too: the driver reads it into a file of
		// bounded size, and while no one reads it QEMU drops the output.
		"-chardev", fmt.Sprintf("socket,id=console,fd=%d,server=on,wait=off", fdConsole),
		"-serial", "chardev:console",
		"-chardev", fmt.Sprintf("socket,id=qmp,fd=%d,server=on,wait=off", fdQMP),
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-device",
		"-chardev", fmt.Sprintf("socket,id=agent,fd=%d,server=on,wait=off", fdAgent),
		"-device", "virtserialport,chardev=agent,name=hearth.agent",
		// Connections into the guest have their own port (see DialStreams).
		"-chardev", fmt.Sprintf("socket,id=streams,fd=%d,server=on,wait=off", fdStreams),
		"-device", "virtserialport,chardev=streams,name=hearth.streams",
	}
	args = append(args, diskArgs(spec.Disks)...)
	args = append(args, nicArgs(spec.NIC, fdDisks+len(spec.Disks))...)
	return append(args, balloonArgs(spec)...)
}

// balloonArgs attaches a virtio-balloon that only reports free pages: the
// guest hands back the 2 MiB blocks it has freed and QEMU punches them out
// of the memory file, so that a suspended environment keeps on disk only
// what its guest still uses. It is never inflated. It comes last, so that
// the other devices keep their virtio-mmio slots.
//
// Never on a private mapping: QEMU 7.2 discards a reported range of a file
// mapped copy-on-write by punching the file itself, which would zero that
// range of the template's memory under all its clones. A clone and its
// template (and a clone resumed later, with a file of its own) must have
// the same devices to restore, so the template's spec leaves reporting off;
// a private spec that asks for it gets no balloon and fails to restore
// rather than corrupt the template.
//
// The guest reports free blocks of 2^5 pages (128 KiB), not its default of
// a 2 MiB pageblock: it reports only while its free memory stays above the
// low watermark plus 32 blocks, which with 2 MiB blocks is 64 MiB, more
// than a 128 MiB guest has free; measured, a hello guest then gave back
// 4 MiB of the ~11 MiB initramfs image it had freed.
func balloonArgs(spec vmm.MachineSpec) []string {
	if !spec.FreePageReporting || spec.MemoryPrivate {
		return nil
	}
	return []string{"-device", "virtio-balloon-device,free-page-reporting=on"}
}

// nicArgs attaches the network card, its TAP the descriptor fd (after the
// disks'), or no backend when it has no TAP. QEMU opens nothing: the TAP
// was opened in the environment's namespace by the driver.
func nicArgs(nic *vmm.NIC, fd int) []string {
	if nic == nil {
		return nil
	}
	dev := "virtio-net-device,mac=" + nic.MAC
	if nic.Tap == "" {
		return []string{"-device", dev}
	}
	return []string{"-netdev", fmt.Sprintf("tap,id=net0,fd=%d,vhost=off", fd), "-device", dev + ",netdev=net0"}
}

// diskArgs attaches each disk, by its inherited descriptor, as a virtio-blk
// device on the microvm's virtio-mmio bus. A read-only disk is read-only to
// QEMU and to the guest; a writable one passes the guest's discards on, so
// that files deleted in the guest free the sparse file's blocks again.
func diskArgs(disks []vmm.Disk) []string {
	var args []string
	for i, d := range disks {
		id := fmt.Sprintf("disk%d", i)
		drive := fmt.Sprintf("if=none,id=%s,file=%s,format=raw", id, procFD(fdDisks+i))
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			drive += ",readonly=off,discard=unmap"
		}
		dev := "virtio-blk-device,drive=" + id
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	return args
}

// sockDir is where a machine's sockets are: its own folder, unless that
// path is too long for a unix socket (108 bytes), then a private folder
// under the system's temporary one, named by the machine's id so that
// another process attaching to it finds the same place.
func sockDir(spec vmm.MachineSpec) string {
	if len(filepath.Join(spec.Dir, agentSocket)) < 100 {
		return spec.Dir
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("hearth-%d", os.Getuid()), spec.ID)
}
