package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/vmm"
)

// machine is one QEMU process. It implements vmm.Machine.
type machine struct {
	spec  vmm.MachineSpec
	pid   int
	proc  *os.Process
	qmp   *qmp
	agent net.Conn
	done  chan struct{}

	stopOnce sync.Once
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
	if err := os.MkdirAll(sockDir(spec), 0o700); err != nil {
		return nil, err
	}
	// Sockets of an earlier QEMU in this folder would make the new one fail.
	for _, s := range []string{qmpSocket, agentSocket} {
		_ = os.Remove(filepath.Join(sockDir(spec), s))
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, vmmLogFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, append(d.args(spec), extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !spec.Detached {
		// A VM started for one command must not outlive it.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.bin, err)
	}
	m := &machine{spec: spec, pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	cg, err := cpuShare(spec.ID, m.pid, spec.MemoryMiB)
	if err != nil {
		d.warnOnce.Do(func() { d.log.Warn("VMs run without a CPU share", "err", err) })
	}
	go func() {
		_ = cmd.Wait()
		if cg != "" {
			_ = os.Remove(cg) // empty now that QEMU has exited
		}
		close(m.done)
	}()
	if err := m.connect(ctx); err != nil {
		_ = m.Stop(context.Background())
		return nil, fmt.Errorf("qemu: %w%s", err, m.vmmLog())
	}
	d.log.Debug("qemu started", "id", spec.ID, "pid", m.pid)
	return m, nil
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
	m := &machine{spec: spec, pid: pid, proc: proc, done: make(chan struct{})}
	go func() {
		// A pidfd becomes readable when the process exits.
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(pidfd)
		close(m.done)
	}()
	if err := m.connect(ctx); err != nil {
		return nil, fmt.Errorf("attach to qemu %d: %w", pid, err)
	}
	return m, nil
}

func (m *machine) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := waitFor(ctx, m.done, func(ctx context.Context) (*qmp, error) {
		return dialQMP(ctx, filepath.Join(sockDir(m.spec), qmpSocket))
	})
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	m.qmp = q
	var d net.Dialer
	conn, err := waitFor(ctx, m.done, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", filepath.Join(sockDir(m.spec), agentSocket))
	})
	if err != nil {
		return fmt.Errorf("agent channel: %w", err)
	}
	m.agent = conn
	return nil
}

// vmmLog returns QEMU's own output, for errors.
func (m *machine) vmmLog() string {
	b, _ := os.ReadFile(filepath.Join(m.spec.Dir, vmmLogFile))
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

// Disconnect closes this process's connections to a detached machine and
// leaves it running.
func (m *machine) Disconnect() {
	if m.qmp != nil {
		_ = m.qmp.close()
	}
	if m.agent != nil {
		_ = m.agent.Close()
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
		for _, s := range []string{qmpSocket, agentSocket} {
			_ = os.Remove(filepath.Join(sockDir(m.spec), s))
		}
		if d := sockDir(m.spec); d != m.spec.Dir {
			_ = os.Remove(d)
		}
	})
	return nil
}
