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
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	consoleFile = "console.log"
	vmmLogFile  = "qemu.log"
)

// args is QEMU's command line for spec. The machine starts paused (-S) and
// exits instead of rebooting, so a guest that reboots or panics ends it.
func (d *Driver) args(spec vmm.MachineSpec) []string {
	acpi := "off"
	if spec.ACPI {
		acpi = "on"
	}
	cpu := "max"
	if spec.Accel == vmm.AccelKVM {
		cpu = "host"
	}
	// rtc=on: without a CMOS clock the kernel spends 1–2 s polling for one.
	machine := fmt.Sprintf("microvm,isa-serial=on,rtc=on,acpi=%s,memory-backend=mem", acpi)
	cmdline := []string{"console=ttyS0", "quiet", "reboot=t", "panic=-1", "no_timer_check"}
	if d.tscKHz > 0 {
		cmdline = append(cmdline, fmt.Sprintf("tsc_early_khz=%d", d.tscKHz))
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
	dir := spec.Dir
	return []string{
		"-name", "hearth-" + spec.ID,
		"-M", machine,
		"-accel", string(spec.Accel),
		"-cpu", cpu,
		"-smp", fmt.Sprint(max(spec.VCPUs, 1)),
		"-m", fmt.Sprintf("%dM", spec.MemoryMiB),
		// The guest's RAM is this file, mapped shared: a suspend then writes
		// only the device state, and a resume maps the file back.
		"-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", spec.MemoryMiB, optValue(spec.MemoryFile()), share),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-S",
		"-kernel", spec.Kernel,
		"-initrd", spec.Initrd,
		"-append", strings.Join(cmdline, " "),
		// Paths go in key=value options only (never QEMU's "unix:PATH" or
		// "file:PATH" shorthands, which break on '='), commas doubled.
		"-chardev", "file,id=console,path=" + optValue(filepath.Join(dir, consoleFile)),
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path=" + optValue(filepath.Join(sockDir(spec), qmpSocket)) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=" + optValue(filepath.Join(sockDir(spec), agentSocket)) + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=hearth.agent",
	}
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

// optValue escapes a value for QEMU's key=value options: a comma is
// written twice.
func optValue(v string) string { return strings.ReplaceAll(v, ",", ",,") }
