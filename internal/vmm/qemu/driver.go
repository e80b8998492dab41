// Package qemu drives QEMU's microvm machine over QMP: boot from a
// vmm.MachineSpec with the guest's memory in a file under the machine's
// folder, the serial console captured to a file of bounded size, and the
// agent channel on a virtio-serial port backed by a unix socket. QEMU runs
// as an unprivileged user (DefaultUser) under its seccomp sandbox, in
// cgroups that cap its memory and tasks, and opens no file by path: the
// driver hands it its kernel, initramfs, memory file and sockets.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Binary is QEMU's x86-64 system emulator.
const Binary = "qemu-system-x86_64"

// ErrNotInstalled is returned when QEMU cannot be found.
var ErrNotInstalled = errors.New("QEMU is not installed: install it with `apt-get install qemu-system-x86`")

// Options configure the driver.
type Options struct {
	// Binary overrides the QEMU executable's path.
	Binary string
	// TSCkHz is passed to the guest as tsc_early_khz: without it, a guest
	// under emulation can spend a minute calibrating its clock. Zero reads
	// the host's from /proc/cpuinfo.
	TSCkHz int
	// User is who QEMU runs as. Empty is DefaultUser when this process is
	// root and that user exists, else this process's own user (with a
	// warning when root). Naming a user other than one's own needs root.
	User string
	// ConsoleLimit caps each machine's console.log, in bytes; zero is
	// DefaultConsoleLimit.
	ConsoleLimit int64
	Log          *slog.Logger
}

// Driver boots QEMU microvm machines. It implements vmm.Driver.
type Driver struct {
	bin          string
	tscKHz       int
	jail         jail
	consoleLimit int64
	log          *slog.Logger
	warnOnce     sync.Once
}

// New finds QEMU and returns a Driver.
func New(opts Options) (*Driver, error) {
	bin := opts.Binary
	if bin == "" {
		bin = Binary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w (%s: %v)", ErrNotInstalled, bin, err)
	}
	if opts.TSCkHz == 0 {
		opts.TSCkHz = hostTSCkHz()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.ConsoleLimit <= 0 {
		opts.ConsoleLimit = DefaultConsoleLimit
	}
	j, err := resolveJail(opts.User, opts.Log)
	if err != nil {
		return nil, err
	}
	return &Driver{bin: path, tscKHz: opts.TSCkHz, jail: j, consoleLimit: opts.ConsoleLimit, log: opts.Log}, nil
}

// User is who QEMU runs as; empty is this process's own user.
func (d *Driver) User() string { return d.jail.name }

// hostTSCkHz reads the CPU's clock from /proc/cpuinfo, in kHz.
func hostTSCkHz() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

// waitFor polls fn until it succeeds, the process exits or ctx ends.
func waitFor[T any](ctx context.Context, exited <-chan struct{}, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	for {
		v, err := fn(ctx)
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return zero, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-exited:
			return zero, errors.New("QEMU exited during start-up")
		case <-time.After(2 * time.Millisecond):
		}
	}
}
