package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/vmm"
)

// machine is one QEMU process. It implements vmm.Machine.
type machine struct {
	spec         vmm.MachineSpec
	pid          int
	proc         *os.Process
	qmp          *qmp
	agent        net.Conn
	done         chan struct{}
	consoleLimit int64
	log          *slog.Logger

	mu          sync.Mutex
	console     net.Conn
	consoleDone chan struct{} // closed when the console's copy has ended

	stopOnce sync.Once

	// workingSet is the guest memory the last pause found mapped (what the
	// guest touched since the pause before): Unpause reads it back ahead.
	workingSet []vmm.FileRun
}

var timeZero time.Time

// Boot starts QEMU paused, connects to its QMP socket and to the agent
// channel, and returns the machine. Call Start to run the guest.
func (d *Driver) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := d.start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *Driver) start(ctx context.Context, spec vmm.MachineSpec, extra ...string) (*machine, error) {
	if spec.Accel != vmm.AccelKVM && spec.Accel != vmm.AccelTCG {
		return nil, fmt.Errorf("qemu: accel %q: resolve auto before booting", spec.Accel)
	}
	if spec.MemoryMiB <= 0 {
		return nil, errors.New("qemu: memory size must be positive")
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, err
	}
	if m, err := d.takeIdle(ctx, spec, extra); err == nil {
		return m, nil
	} else if !errors.Is(err, errNoPool) {
		// The pool is an optimisation: a process that could not be bound
		// is killed and a fresh one started.
		d.log.Warn("pre-started QEMU not used", "id", spec.ID, "err", err)
	}
	files, err := d.openFiles(spec)
	if err != nil {
		return nil, err
	}
	defer closeAll(files)
	logf, err := os.OpenFile(filepath.Join(spec.Dir, vmmLogFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, append(d.args(spec), extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = files
	// QEMU's cwd is never used; / keeps it from holding the caller's.
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: d.jail.credential(spec)}
	if !spec.Detached {
		// A VM started for one command must not outlive it.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.bin, err)
	}
	m := &machine{spec: spec, pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{}), consoleLimit: d.consoleLimit, log: d.log}
	cgs, err := d.limitProcess(spec.ID, m.pid, limitsFor(spec, imageBytes(files[:2]), d.tcgCache(spec)))
	if err != nil {
		d.warnOnce.Do(func() { d.log.Warn("VMs run without some cgroup limits", "err", err) })
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		for _, cg := range cgs {
			_ = os.Remove(cg) // empty now that QEMU has exited
		}
		close(exited)
	}()
	go m.finish(exited)
	if err := m.connect(ctx, true); err != nil {
		_ = m.Stop(context.Background())
		return nil, fmt.Errorf("qemu: %w%s", err, m.vmmLog())
	}
	d.log.Debug("qemu started", "id", spec.ID, "pid", m.pid, "user", d.jail.name)
	return m, nil
}

// openFiles opens what QEMU is handed, in the order of the fd constants:
// the kernel and initramfs (made readable to its user), the memory file
// (made its user's), and the three sockets it listens on, bound here.
func (d *Driver) openFiles(spec vmm.MachineSpec) (files []*os.File, err error) {
	defer func() {
		if err != nil {
			closeAll(files)
		}
	}()
	if files, err = d.openImages(spec); err != nil {
		return files, err
	}
	dir := sockDir(spec)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, err
	}
	for _, name := range []string{qmpSocket, agentSocket, consoleSocket, streamsSocket} {
		f, err := listenUnix(filepath.Join(dir, name))
		if err != nil {
			return files, fmt.Errorf("qemu: %w", err)
		}
		files = append(files, f)
	}
	for _, disk := range spec.Disks {
		f, err := d.openDisk(disk)
		if err != nil {
			return files, err
		}
		files = append(files, f)
	}
	if nic := spec.NIC; nic != nil && nic.Tap != "" {
		f, err := network.OpenTap(nic.Netns, nic.Tap)
		if err != nil {
			return files, fmt.Errorf("qemu: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

// openImages opens the kernel and initramfs (made readable to QEMU's user)
// and the memory file (made its user's), in that order.
func (d *Driver) openImages(spec vmm.MachineSpec) (files []*os.File, err error) {
	defer func() {
		if err != nil {
			closeAll(files)
			files = nil
		}
	}()
	for _, p := range []string{spec.Kernel, spec.Initrd} {
		f, err := os.Open(p)
		if err != nil {
			return files, fmt.Errorf("qemu: %w", err)
		}
		files = append(files, f)
		if err := d.jail.grantRead(f); err != nil {
			return files, err
		}
	}
	// A private memory file is a template's: QEMU maps it copy-on-write.
	flags := os.O_RDWR | os.O_CREATE
	if spec.MemoryPrivate {
		flags = os.O_RDONLY
	}
	mem, err := os.OpenFile(spec.MemoryFile(), flags, 0o600)
	if err != nil {
		return files, fmt.Errorf("qemu: memory file: %w", err)
	}
	files = append(files, mem)
	// QEMU reopens it read-write through /proc/self/fd: its user must own it.
	if err := d.jail.own(mem); err != nil {
		return files, err
	}
	return files, nil
}

// openDisk opens a disk for QEMU (fd fdDisks onward): a read-only one made
// readable to QEMU's user (never writable), a writable one made its own.
func (d *Driver) openDisk(disk vmm.Disk) (*os.File, error) {
	if !validSerial(disk.Serial) {
		return nil, fmt.Errorf("qemu: disk %s: serial %q must be 1 to 20 letters, digits or dashes", disk.Path, disk.Serial)
	}
	flags := os.O_RDWR
	if disk.ReadOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(disk.Path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("qemu: disk: %w", err)
	}
	if disk.ReadOnly {
		err = d.jail.grantRead(f)
	} else {
		err = d.jail.own(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// validSerial keeps a serial to what fits QEMU's option syntax and
// virtio-blk's 20-byte serial field.
func validSerial(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// listenUnix binds and listens on a unix socket at path (replacing one an
// earlier QEMU left) and returns the listening descriptor for QEMU to
// accept on; the path stays for clients to dial.
func listenUnix(path string) (*os.File, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return f, nil
}

// imageBytes is the size of the files, as far as it can be told.
func imageBytes(files []*os.File) int64 {
	var n int64
	for _, f := range files {
		if fi, err := f.Stat(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// finish closes done once QEMU has exited and the last of its console is
// in the file (bounded: a console copy that cannot finish is not waited for).
func (m *machine) finish(exited <-chan struct{}) {
	<-exited
	m.mu.Lock()
	cd := m.consoleDone
	m.mu.Unlock()
	if cd != nil {
		select {
		case <-cd:
		case <-time.After(consoleDrainWait):
		}
	}
	close(m.done)
}

// Attach connects to a QEMU that another process started (a detached
// machine): its QMP socket and agent channel are in spec.Dir.
func (d *Driver) Attach(ctx context.Context, spec vmm.MachineSpec, pid int) (vmm.Machine, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("qemu %d is not running: %w", pid, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		unix.Close(pidfd)
		return nil, err
	}
	m := &machine{spec: spec, pid: pid, proc: proc, done: make(chan struct{}), consoleLimit: d.consoleLimit, log: d.log}
	exited := make(chan struct{})
	go m.finish(exited)
	go func() {
		// A pidfd becomes readable when the process exits.
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(pidfd)
		close(exited)
	}()
	if err := m.connect(ctx, false); err != nil {
		return nil, fmt.Errorf("attach to qemu %d: %w", pid, err)
	}
	return m, nil
}

// connect dials QEMU's sockets: QMP, the agent channel and the console,
// whose copy into console.log starts afresh when fresh (a new QEMU) and
// appends otherwise (an attach).
func (m *machine) connect(ctx context.Context, fresh bool) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if m.qmp == nil { // a pre-started process's is connected already
		q, err := waitFor(ctx, m.done, func(ctx context.Context) (*qmp, error) {
			return dialQMP(ctx, filepath.Join(sockDir(m.spec), qmpSocket))
		})
		if err != nil {
			return fmt.Errorf("qmp: %w", err)
		}
		m.qmp = q
	}
	var d net.Dialer
	conn, err := waitFor(ctx, m.done, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", filepath.Join(sockDir(m.spec), agentSocket))
	})
	if err != nil {
		return fmt.Errorf("agent channel: %w", err)
	}
	m.agent = conn
	consolePath := filepath.Join(sockDir(m.spec), consoleSocket)
	if _, err := os.Stat(consolePath); !fresh && errors.Is(err, os.ErrNotExist) {
		// A QEMU started by an older Hearth writes its console itself.
		return nil
	}
	cc, err := waitFor(ctx, m.done, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", consolePath)
	})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	done := make(chan struct{})
	if err := copyConsole(cc, m.ConsolePath(), m.consoleLimit, fresh, done); err != nil {
		cc.Close()
		return fmt.Errorf("console: %w", err)
	}
	m.mu.Lock()
	m.console, m.consoleDone = cc, done
	m.mu.Unlock()
	return nil
}

// vmmLogTail bounds how much of QEMU's own output an error carries.
const vmmLogTail = 4 << 10

// vmmLog returns the end of QEMU's own output, for errors.
func (m *machine) vmmLog() string {
	b, _ := vmm.ReadTail(filepath.Join(m.spec.Dir, vmmLogFile), vmmLogTail)
	if s := strings.TrimSpace(string(b)); s != "" {
		return ": " + s
	}
	return ""
}

func (m *machine) ID() string            { return m.spec.ID }
func (m *machine) PID() int              { return m.pid }
func (m *machine) Agent() io.ReadWriter  { return m.agent }
func (m *machine) Done() <-chan struct{} { return m.done }
func (m *machine) ConsolePath() string   { return filepath.Join(m.spec.Dir, consoleFile) }
func (m *machine) Start(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "cont", nil)
	return err
}

// Pause stops the vCPUs and pages the guest's memory out to its file. A
// private mapping (a clone's) would need swap to be paged out: its vCPUs
// only are stopped.
func (m *machine) Pause(ctx context.Context) (vmm.PauseInfo, error) {
	info := vmm.PauseInfo{RSSBeforeKiB: vmm.ProcessVmRSSKiB(m.pid)}
	if _, err := m.qmp.execute(ctx, "stop", nil); err != nil {
		return info, fmt.Errorf("pause: %w", err)
	}
	if !m.spec.MemoryPrivate {
		// Recorded before the page-out empties the page tables. Without
		// it, each fault of the first call after would read the file's
		// read-ahead window (8 MiB on this host's disk) around it: 72 MiB
		// for hello's ~12 MiB.
		ws, err := vmm.MappedRuns(m.pid, m.spec.MemoryFile(), prefetchMergeGap)
		if err != nil {
			m.log.Debug("pause: working set not recorded", "id", m.spec.ID, "err", err)
		}
		m.workingSet = ws
		for _, r := range ws {
			info.WorkingSetBytes += r.Len
		}
		n, err := vmm.PageOutFile(m.pid, m.spec.MemoryFile(), m.spec.Kernel, m.spec.Initrd)
		info.AdvisedBytes = n
		if err != nil {
			info.RSSAfterKiB = vmm.ProcessVmRSSKiB(m.pid)
			return info, err
		}
		info.PagedOut = true
	}
	info.RSSAfterKiB = vmm.ProcessVmRSSKiB(m.pid)
	return info, nil
}

// prefetchMergeGap joins working-set runs this close: a few pages read for
// nothing cost less than another request to the disk.
const prefetchMergeGap = 64 << 10

// Unpause runs the vCPUs again, once the reads of the guest memory the last
// pause recorded are queued: the first faults then find it in the page cache.
func (m *machine) Unpause(ctx context.Context) error {
	if ws := m.workingSet; len(ws) > 0 {
		m.workingSet = nil
		if _, err := vmm.Prefetch(m.spec.MemoryFile(), ws); err != nil {
			m.log.Debug("unpause: prefetch", "id", m.spec.ID, "err", err)
		}
	}
	if _, err := m.qmp.execute(ctx, "cont", nil); err != nil {
		return fmt.Errorf("unpause: %w", err)
	}
	return nil
}

// Disconnect closes this process's connections to a detached machine and
// leaves it running.
func (m *machine) Disconnect() {
	if m.qmp != nil {
		_ = m.qmp.close()
	}
	if m.agent != nil {
		_ = m.agent.Close()
	}
	m.mu.Lock()
	cc := m.console
	m.mu.Unlock()
	if cc != nil {
		_ = cc.Close()
	}
}

// Stop asks QEMU to quit, and kills it by PID if it has not within a
// second: a leaked QEMU would hold a core and the guest's memory for ever.
func (m *machine) Stop(ctx context.Context) error {
	m.stopOnce.Do(func() {
		select {
		case <-m.done:
		default:
			if m.qmp != nil {
				qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				_, _ = m.qmp.execute(qctx, "quit", nil)
				cancel()
			}
			select {
			case <-m.done:
			case <-time.After(time.Second):
				_ = m.proc.Kill()
				<-m.done
			}
		}
		m.Disconnect()
		for _, s := range []string{qmpSocket, agentSocket, consoleSocket, streamsSocket} {
			_ = os.Remove(filepath.Join(sockDir(m.spec), s))
		}
		if d := sockDir(m.spec); d != m.spec.Dir {
			_ = os.Remove(d)
		}
	})
	return nil
}
