package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Exec streams run a process in the guest for the host (hearth env exec):
// as the function's user with no_new_privs, in the function's root when it
// has one, just as the runtime is started (supervisor.go).

// execAs is who an exec stream's process runs as and where.
type execAs struct {
	cred *syscall.Credential // nil: the agent's own user (tests)
	root func() string       // the root to chroot into; nil or "": none
	// reaper, as PID 1, waits for every child: a process's status is
	// claimed from it. Nil (tests): the process is waited for itself.
	reaper *supervisor
}

// mountedRoot is the function's root when one is mounted at RootDir.
func mountedRoot() string {
	var r, n unix.Stat_t
	if unix.Stat("/", &r) != nil || unix.Stat(RootDir, &n) != nil || r.Dev == n.Dev {
		return ""
	}
	return RootDir
}

// handleKind serves a version-2 stream, whose version byte was read.
func (s *streamServer) handleKind(ctx context.Context, st net.Conn) {
	kind, body, err := guestproto.ReadKindRequest(st)
	if err != nil {
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, err.Error())
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	switch kind {
	case guestproto.StreamKindExec:
		var req guestproto.ExecRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, err.Error())
			return
		}
		if err := req.Validate(); err != nil {
			_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, err.Error())
			return
		}
		s.exec.run(ctx, st, req)
	case guestproto.StreamKindFiles:
		req, err := guestproto.DecodeFilesRequest(body)
		if err != nil {
			_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, err.Error())
			return
		}
		s.exec.serveFiles(st, req)
	default:
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, fmt.Sprintf("unknown stream kind %d", kind))
	}
}

// run starts req's process, answers, and then carries its stdin, output
// and exit status over st.
func (x execAs) run(ctx context.Context, st net.Conn, req guestproto.ExecRequest) {
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	root := ""
	if x.root != nil {
		root = x.root()
	}
	// Not exec.Command: a bare name is looked up in the PATH the request
	// gives (or the usual one), in the root the process will see.
	cmd := &exec.Cmd{Path: lookPathIn(root, req.Argv[0], req.Env), Args: req.Argv, Env: req.Env, Dir: dir}
	cmd.SysProcAttr = runtimeAttr(x.cred)
	cmd.SysProcAttr.Chroot = root
	var sio *execIO
	var err error
	if req.TTY {
		sio, err = ttyIO(cmd, req, x.cred)
	} else {
		sio, err = pipeIO(cmd)
	}
	if err != nil {
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
		return
	}
	var reaped <-chan syscall.WaitStatus
	if x.reaper != nil && x.reaper.reap {
		reaped, err = x.reaper.startClaimed(cmd, func() error { return startUnprivileged(cmd) })
	} else {
		err = startUnprivileged(cmd)
	}
	sio.started()
	if err != nil {
		sio.close()
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
		return
	}
	pgid := cmd.Process.Pid
	if err := guestproto.WriteStreamAnswer(st, guestproto.StreamOK, ""); err != nil {
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
	var wmu sync.Mutex
	write := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return guestproto.WriteExecFrame(st, typ, p)
	}
	var pumps sync.WaitGroup
	pump := func(r *os.File, typ byte) {
		defer pumps.Done()
		buf := make([]byte, guestproto.MaxExecFrame)
		for {
			n, err := r.Read(buf)
			if n > 0 && write(typ, buf[:n]) != nil {
				// The host is gone: drain, so the process is not held.
				_, _ = io.Copy(io.Discard, r)
				return
			}
			if err != nil {
				return
			}
		}
	}
	for _, o := range sio.outs {
		pumps.Add(1)
		go pump(o.r, o.typ)
	}

	exited := make(chan struct{})
	go func() {
		// What the host sends: stdin, its end, signals, a terminal's size.
		// The host leaving ends the process group.
		defer sio.stdin.Close()
		for {
			typ, p, err := guestproto.ReadExecFrame(st)
			if err != nil {
				select {
				case <-exited:
				default:
					_ = unix.Kill(-pgid, unix.SIGKILL)
				}
				return
			}
			switch typ {
			case guestproto.ExecStdin:
				_, _ = sio.stdin.Write(p)
			case guestproto.ExecStdinClose:
				sio.closeStdin()
			case guestproto.ExecSignal:
				if sig, ok := execSignal(p); ok {
					_ = unix.Kill(-pgid, sig)
				}
			case guestproto.ExecResize:
				if rows, cols, err := guestproto.DecodeResize(p); err == nil && sio.term != nil {
					_ = setTermSize(sio.term, rows, cols)
				}
			}
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = unix.Kill(-pgid, unix.SIGKILL)
		case <-exited:
		}
	}()
	status := guestproto.ExecExitStatus{Code: -1}
	var ws syscall.WaitStatus
	waited := false
	if reaped != nil {
		ws, waited = <-reaped, true
		sio.closeStdin()
	} else if _ = cmd.Wait(); cmd.ProcessState != nil {
		ws, waited = cmd.ProcessState.Sys().(syscall.WaitStatus), true
	}
	close(exited)
	sio.drain(&pumps)
	if waited {
		if ws.Signaled() {
			status.Signal = int(ws.Signal())
		} else {
			status.Code = ws.ExitStatus()
		}
	}
	b, _ := json.Marshal(status)
	_ = write(guestproto.ExecExit, b)
}

// execIO is how an exec'd process's standard streams reach its stream:
// pipes, or a terminal.
type execIO struct {
	stdin io.WriteCloser
	outs  []execOut
	term  *os.File   // the terminal's master; nil for pipes
	child []*os.File // the process's ends, closed once it started
	once  sync.Once
}

type execOut struct {
	r   *os.File
	typ byte
}

// pipeIO gives cmd three pipes.
func pipeIO(cmd *exec.Cmd) (*execIO, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	return &execIO{stdin: stdin, child: []*os.File{outW, errW},
		outs: []execOut{{outR, guestproto.ExecStdout}, {errR, guestproto.ExecStderr}}}, nil
}

// ttyIO puts cmd on a new terminal of req's size: the process leads a
// session of its own whose controlling terminal it is (so ^C and a resize
// reach its foreground group), and the terminal's slave is the function
// user's, as a login's is.
func ttyIO(cmd *exec.Cmd, req guestproto.ExecRequest, cred *syscall.Credential) (*execIO, error) {
	master, slave, err := openPTY(req.Rows, req.Cols)
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := slave.Chown(int(cred.Uid), -1); err != nil {
			master.Close()
			slave.Close()
			return nil, fmt.Errorf("terminal: %w", err)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session leader cannot also join a group: Setsid makes its own.
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0 // the child's stdin
	if !slices.ContainsFunc(cmd.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		cmd.Env = append(slices.Clip(cmd.Env), "TERM=xterm")
	}
	return &execIO{stdin: nopCloser{master}, term: master, child: []*os.File{slave},
		outs: []execOut{{master, guestproto.ExecStdout}}}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// started closes the process's ends of its streams in the agent, so that
// its output ends when it (and whatever it left running) closes them.
func (s *execIO) started() {
	for _, f := range s.child {
		f.Close()
	}
}

// closeStdin ends the process's input: a pipe is closed; a terminal is
// sent its end-of-file character (^D), as a user would type it.
func (s *execIO) closeStdin() {
	if s.term != nil {
		s.once.Do(func() { _, _ = s.term.Write([]byte{4}) })
		return
	}
	_ = s.stdin.Close()
}

// ttyDrainWait is how long a terminal's output is read once its process
// has ended: a process it left in the background may hold it open, and
// the exit status is not to wait for that.
const ttyDrainWait = 2 * time.Second

// drain waits for the output pumps and closes the readers.
func (s *execIO) drain(pumps *sync.WaitGroup) {
	if s.term == nil {
		pumps.Wait()
	} else {
		done := make(chan struct{})
		go func() { pumps.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(ttyDrainWait):
		}
	}
	s.close()
	pumps.Wait()
}

func (s *execIO) close() {
	s.started()
	_ = s.stdin.Close()
	for _, o := range s.outs {
		o.r.Close()
	}
}

// execSignal is the one signal the host may send: INT, TERM or KILL.
func execSignal(p []byte) (unix.Signal, bool) {
	if len(p) != 1 {
		return 0, false
	}
	switch s := unix.Signal(p[0]); s {
	case unix.SIGINT, unix.SIGTERM, unix.SIGKILL:
		return s, true
	}
	return 0, false
}

// defaultPath is where a bare program name is looked for without a PATH
// in the request's environment.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPathIn resolves a program name without a slash against PATH (from
// env, else defaultPath) inside root, as a shell in that root would; it
// returns the path as the process sees it, or name unchanged when nothing
// is found (the start then fails with "no such file").
func lookPathIn(root, name string, env []string) string {
	if name == "" || strings.Contains(name, "/") {
		return name
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(filepath.Join(root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return name
}
