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
	// Not exec.Command: argv[0] is a path in the root, not looked up in
	// the agent's PATH.
	cmd := &exec.Cmd{Path: req.Argv[0], Args: req.Argv, Env: req.Env, Dir: dir}
	cmd.SysProcAttr = runtimeAttr(x.cred)
	if x.root != nil {
		cmd.SysProcAttr.Chroot = x.root()
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamFailed, err.Error())
		return
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	var reaped <-chan syscall.WaitStatus
	if x.reaper != nil && x.reaper.reap {
		reaped, err = x.reaper.startClaimed(cmd, func() error { return startUnprivileged(cmd) })
	} else {
		err = startUnprivileged(cmd)
	}
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
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
		defer r.Close()
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
	pumps.Add(2)
	go pump(outR, guestproto.ExecStdout)
	go pump(errR, guestproto.ExecStderr)

	exited := make(chan struct{})
	go func() {
		// What the host sends: stdin, its end, signals. The host leaving
		// ends the process group.
		defer stdin.Close()
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
				_, _ = stdin.Write(p)
			case guestproto.ExecStdinClose:
				_ = stdin.Close()
			case guestproto.ExecSignal:
				if sig, ok := execSignal(p); ok {
					_ = unix.Kill(-pgid, sig)
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
		_ = stdin.Close()
	} else if _ = cmd.Wait(); cmd.ProcessState != nil {
		ws, waited = cmd.ProcessState.Sys().(syscall.WaitStatus), true
	}
	close(exited)
	pumps.Wait()
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
