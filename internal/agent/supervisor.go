package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// supervisor runs the function's runtime process and watches it end.
type supervisor struct {
	reap bool // PID 1: reap every child, including orphans
	// cred is who the runtime runs as; nil runs it as the agent's user.
	cred *syscall.Credential
	log  *slog.Logger
	logs *logPump

	mu     sync.Mutex
	cmd    *exec.Cmd
	pid    int
	onExit func(status string, code int)
	exited chan struct{}

	// startMu is held across a claimed process's start and its claim, and
	// by the reaper around each wait: a process cannot be reaped before it
	// is claimed. claims are the statuses claimed processes wait for.
	startMu sync.Mutex
	claims  map[int]chan syscall.WaitStatus
}

// startClaimed starts a process with start and claims its exit status
// from the reaper: as PID 1 the reaper waits for every child, so the
// process's own Wait would find it gone.
func (s *supervisor) startClaimed(cmd *exec.Cmd, start func() error) (<-chan syscall.WaitStatus, error) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if err := start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	s.mu.Lock()
	if s.claims == nil {
		s.claims = map[int]chan syscall.WaitStatus{}
	}
	s.claims[cmd.Process.Pid] = ch
	s.mu.Unlock()
	return ch, nil
}

func newSupervisor(reap bool, out *guestproto.Writer, log *slog.Logger) *supervisor {
	s := &supervisor{reap: reap, log: log, logs: newLogPump(out)}
	if reap {
		go s.reaper()
	}
	return s
}

// runtimeCmd is how the runtime is started.
type runtimeCmd struct {
	argv []string
	dir  string
	// chroot, when set, is the root the runtime runs in; argv[0] and dir
	// are paths in it.
	chroot string
	env    []string
}

// bootstrapCmd runs root/bootstrap of a zip, in root.
func bootstrapCmd(root string, env []string) (runtimeCmd, error) {
	bootstrap := filepath.Join(root, "bootstrap")
	fi, err := os.Stat(bootstrap)
	switch {
	case err != nil:
		return runtimeCmd{}, fmt.Errorf("Couldn't find valid bootstrap(s): [%s]: %w", bootstrap, err)
	case fi.Mode()&0o111 == 0:
		return runtimeCmd{}, fmt.Errorf("fork/exec %s: permission denied (bootstrap is not executable)", bootstrap)
	}
	return runtimeCmd{argv: []string{bootstrap}, dir: root, env: env}, nil
}

// start runs root/bootstrap with env; onExit is called once it has ended and
// its output has been forwarded.
func (s *supervisor) start(root string, env []string, onExit func(status string, code int)) error {
	rc, err := bootstrapCmd(root, env)
	if err != nil {
		return err
	}
	return s.run(rc, onExit)
}

// run starts rc as the runtime; onExit is called once it has ended and its
// output has been forwarded.
func (s *supervisor) run(rc runtimeCmd, onExit func(status string, code int)) error {
	if len(rc.argv) == 0 {
		return errors.New("no command to start")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	// Not exec.Command: argv[0] is a path in the chroot, not to be looked
	// up in the agent's PATH.
	cmd := &exec.Cmd{Path: rc.argv[0], Args: rc.argv, Dir: rc.dir, Env: rc.env, Stdout: outW, Stderr: errW}
	cmd.SysProcAttr = runtimeAttr(s.cred)
	// The kernel enters the root before it changes to dir and drops to the
	// function's user, so dir and the program are the root's.
	cmd.SysProcAttr.Chroot = rc.chroot

	s.mu.Lock()
	err = startUnprivileged(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		s.mu.Unlock()
		outR.Close()
		errR.Close()
		return err
	}
	s.cmd, s.pid, s.onExit = cmd, cmd.Process.Pid, onExit
	s.exited = make(chan struct{})
	s.logs.attach(outR, errR)
	s.mu.Unlock()
	if !s.reap {
		go func() {
			_ = cmd.Wait()
			s.ended(cmd.ProcessState.Sys().(syscall.WaitStatus))
		}()
	}
	return nil
}

// runtimeAttr is how the runtime process is made: in a process group of its
// own, so that stop ends its children too, and as cred when set. With a
// non-root cred the runtime keeps no capability: the kernel clears them on a
// change from uid 0 to others, and execve gives none back to a non-root
// user.
func runtimeAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// startUnprivileged starts cmd with no_new_privs set, so that neither it nor
// anything it runs gains privileges by execve: a setuid-root program or a
// file with capabilities in the function's package runs with the function's.
// The flag belongs to a thread and what it forks, so it is set on a thread
// locked to this goroutine that ends with it, not on one the agent reuses.
func startUnprivileged(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			done <- fmt.Errorf("no_new_privs: %w", err)
			return
		}
		done <- cmd.Start()
	}()
	return <-done
}

// reaper collects every child that ends, as PID 1 must, and passes the
// runtime's own status on.
func (s *supervisor) reaper() {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGCHLD)
	for range sig {
		for {
			var ws unix.WaitStatus
			s.startMu.Lock()
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				s.startMu.Unlock()
				break
			}
			s.mu.Lock()
			mine := pid == s.pid
			claim, claimed := s.claims[pid]
			delete(s.claims, pid)
			s.mu.Unlock()
			s.startMu.Unlock()
			switch {
			case mine:
				s.ended(syscall.WaitStatus(ws))
			case claimed:
				claim <- syscall.WaitStatus(ws)
			}
		}
	}
}

func (s *supervisor) ended(ws syscall.WaitStatus) {
	s.mu.Lock()
	onExit, exited := s.onExit, s.exited
	s.pid, s.onExit = 0, nil
	s.mu.Unlock()
	if onExit == nil {
		return
	}
	// Forward what it wrote before it died, but don't wait on grandchildren
	// that still hold the pipes open.
	s.logs.waitEOF(200 * time.Millisecond)
	close(exited)
	status, code := describe(ws)
	onExit(status, code)
}

// describe words an exit status as Go's os.ProcessState does, which is also
// what Lambda prints after "Runtime exited with error: ".
func describe(ws syscall.WaitStatus) (string, int) {
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus()), ws.ExitStatus()
	case ws.Signaled():
		return "signal: " + ws.Signal().String(), 128 + int(ws.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws)), -1
	}
}

// stop kills the runtime and its process group.
func (s *supervisor) stop() {
	s.mu.Lock()
	pid, exited := s.pid, s.exited
	s.mu.Unlock()
	if pid == 0 {
		return
	}
	_ = unix.Kill(-pid, unix.SIGKILL)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
	}
}

// maxRSSKiB reads the runtime's peak resident set (VmHWM).
func (s *supervisor) maxRSSKiB() int64 {
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return vmHWM(string(b))
}

// vmHWM reads the peak resident set, in KiB, from a /proc/PID/status text;
// 0 when it has none.
func vmHWM(status string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func (s *supervisor) flush() int64 { return s.logs.flush() }
