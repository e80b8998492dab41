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

	"github.com/hearthdev/hearth/internal/vmm"
)

// machine is one QEMU process. It implements vmm.Machine.
type machine struct {
	id, dir string
	cmd     *exec.Cmd
	qmp     *qmp
	agent   net.Conn
	done    chan struct{}

	stopOnce sync.Once
	stopErr  error
}

var timeZero time.Time

// Boot starts QEMU paused, connects to its QMP socket and to the agent
// channel, and returns the machine. Call Start to run the guest.
func (d *Driver) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	if spec.Accel != vmm.AccelKVM && spec.Accel != vmm.AccelTCG {
		return nil, fmt.Errorf("qemu: accel %q: resolve auto before booting", spec.Accel)
	}
	if spec.MemoryMiB <= 0 {
		return nil, errors.New("qemu: memory size must be positive")
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, vmmLogFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, d.args(spec)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !spec.Detached {
		// A VM started for one command must not outlive it.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.bin, err)
	}
	m := &machine{id: spec.ID, dir: spec.Dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(m.done)
	}()
	if err := m.connect(ctx); err != nil {
		_ = m.Stop(context.Background())
		return nil, fmt.Errorf("qemu: %w%s", err, m.vmmLog())
	}
	d.log.Debug("qemu started", "id", spec.ID, "pid", cmd.Process.Pid)
	return m, nil
}

func (m *machine) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	q, err := waitFor(ctx, m.done, func(ctx context.Context) (*qmp, error) {
		return dialQMP(ctx, filepath.Join(m.dir, qmpSocket))
	})
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	m.qmp = q
	var d net.Dialer
	conn, err := waitFor(ctx, m.done, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "unix", filepath.Join(m.dir, agentSocket))
	})
	if err != nil {
		return fmt.Errorf("agent channel: %w", err)
	}
	m.agent = conn
	return nil
}

// vmmLog returns QEMU's own output, for errors.
func (m *machine) vmmLog() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, vmmLogFile))
	if s := strings.TrimSpace(string(b)); s != "" {
		return ": " + s
	}
	return ""
}

func (m *machine) ID() string            { return m.id }
func (m *machine) PID() int              { return m.cmd.Process.Pid }
func (m *machine) Agent() io.ReadWriter  { return m.agent }
func (m *machine) Done() <-chan struct{} { return m.done }
func (m *machine) ConsolePath() string   { return filepath.Join(m.dir, consoleFile) }
func (m *machine) Start(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "cont", nil)
	return err
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
				_ = m.cmd.Process.Kill()
				<-m.done
			}
		}
		if m.qmp != nil {
			_ = m.qmp.close()
		}
		if m.agent != nil {
			_ = m.agent.Close()
		}
	})
	return m.stopErr
}
