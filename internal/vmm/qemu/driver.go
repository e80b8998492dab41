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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Pool is how many QEMU processes of each machine shape (the last two
	// started) are kept started ahead, bound to no machine, so that a boot,
	// a restore or a clone skips the process's start; 0 keeps none. They
	// die with this process; Close ends them.
	Pool int
	// PoolDir holds the pre-started processes' sockets and doors. It must
	// be on the file system of the machines' folders (sockets are moved,
	// files linked); empty is a folder under the system's temporary one.
	PoolDir string
	// TCGCacheMiB is TCG's translated-code cache per machine under
	// emulation (QEMU's tb-size); zero is DefaultTCGCacheMiB. It is most
	// of what a paused environment keeps: smaller holds less, and
	// translates again more (README, "Speed on the host").
	TCGCacheMiB int
	Log         *slog.Logger
}

// Driver boots QEMU microvm machines. It implements vmm.Driver.
type Driver struct {
	bin          string
	tscKHz       int
	jail         jail
	consoleLimit int64
	tcgCacheMiB  int
	log          *slog.Logger
	warnOnce     sync.Once

	// cgMu keeps one cgroup join at a time: join sweeps its empty
	// siblings, and would remove one another start has just made (a
	// pre-started process's start runs beside a machine's).
	cgMu sync.Mutex

	pool    *pool[poolKey, *pooled] // nil: no pre-started processes
	poolDir string
	poolSeq atomic.Int64
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
	if opts.TCGCacheMiB <= 0 {
		opts.TCGCacheMiB = DefaultTCGCacheMiB
	}
	j, err := resolveJail(opts.User, opts.Log)
	if err != nil {
		return nil, err
	}
	d := &Driver{bin: path, tscKHz: opts.TSCkHz, jail: j, consoleLimit: opts.ConsoleLimit, tcgCacheMiB: opts.TCGCacheMiB, log: opts.Log}
	if opts.Pool > 0 {
		if err := d.enablePool(opts.Pool, opts.PoolDir); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// enablePool makes the pool's folder, root's alone: QEMU reaches its door
// in it only through the descriptor it inherits.
func (d *Driver) enablePool(n int, dir string) error {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("hearth-pool-%d", os.Getpid()))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("qemu pool: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("qemu pool: %w", err)
	}
	d.poolDir = dir
	d.pool = newPool(n, 2, func(ctx context.Context, key poolKey) (*pooled, error) {
		p, err := d.startIdle(ctx, key)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("qemu pool: a process did not start", "err", err)
		}
		return p, err
	})
	d.pool.refillDelay = poolRefillDelay
	return nil
}

func (d *Driver) limitProcess(id string, pid int, l limits) ([]string, error) {
	d.cgMu.Lock()
	defer d.cgMu.Unlock()
	return limitProcess(id, pid, l)
}

// poolRefillDelay lets a machine taken from the pool get going before its
// replacement starts beside it.
const poolRefillDelay = 300 * time.Millisecond

// Close ends the pre-started processes (by PID) and waits for them. The
// driver still boots machines afterwards, each in a process of its own.
func (d *Driver) Close() {
	if d.pool != nil {
		d.pool.close()
	}
}

// PoolIdle is how many pre-started processes wait, for tests and metrics.
func (d *Driver) PoolIdle() int {
	if d.pool == nil {
		return 0
	}
	n := 0
	for _, c := range d.pool.counts() {
		n += c
	}
	return n
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
