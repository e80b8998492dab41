package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"syscall"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Exec runs processes in an environment (hearth env exec): the agent
// starts the process as the function's user, in the function's root, and
// carries its stdin, stdout, stderr and exit status over a stream of kind
// exec (guestproto.StreamKindExec).

// ExecRequest is a process to run: Argv[0] is a path in the guest (no
// PATH lookup).
type ExecRequest = guestproto.ExecRequest

// ExitStatus is how an exec'd process ended: Code, or Signal (Code -1).
type ExitStatus = guestproto.ExecExitStatus

// ExecSession is a running process. The caller reads Stdout and Stderr
// both (an unread one holds the other back), then calls Wait. With a
// terminal (ExecRequest.TTY) all output is on Stdout, Stderr ends empty,
// and closing Stdin types a ^D.
type ExecSession struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader

	st   *guestConn
	tty  bool
	wmu  sync.Mutex
	done chan struct{}
	stat ExitStatus
	err  error
}

// Exec starts req in the environment, which must be running.
func (e *Env) Exec(ctx context.Context, req ExecRequest) (*ExecSession, error) {
	c, err := e.runningConn()
	if err != nil {
		return nil, err
	}
	return c.exec(ctx, req)
}

func (c *conn) exec(ctx context.Context, req ExecRequest) (*ExecSession, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	b, err := guestproto.EncodeKindRequest(guestproto.StreamKindExec, req)
	if err != nil {
		return nil, err
	}
	st, err := c.openStream(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", printable(req.Argv[0], 255), startError(err))
	}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	s := &ExecSession{Stdout: outR, Stderr: errR, st: st, tty: req.TTY, done: make(chan struct{})}
	s.Stdin = execStdin{s}
	go s.demux(outW, errW)
	return s, nil
}

// demux reads the agent's frames into the output pipes until the exit.
func (s *ExecSession) demux(out, errw *io.PipeWriter) {
	err := func() error {
		for {
			typ, p, err := guestproto.ReadExecFrame(s.st)
			if err != nil {
				return fmt.Errorf("exec stream: %w", err)
			}
			switch typ {
			case guestproto.ExecStdout:
				_, _ = out.Write(p)
			case guestproto.ExecStderr:
				_, _ = errw.Write(p)
			case guestproto.ExecExit:
				if err := json.Unmarshal(p, &s.stat); err != nil {
					return fmt.Errorf("exec exit status: %w", err)
				}
				return nil
			default:
				return fmt.Errorf("exec stream: frame of type %d", typ)
			}
		}
	}()
	s.err = err
	out.CloseWithError(err)
	errw.CloseWithError(err)
	s.st.Close()
	close(s.done)
}

// Wait waits for the process to end and its output to be read.
func (s *ExecSession) Wait() (ExitStatus, error) {
	<-s.done
	return s.stat, s.err
}

// Signal forwards SIGINT, SIGTERM or SIGKILL to the process's group.
func (s *ExecSession) Signal(sig syscall.Signal) error {
	switch sig {
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL:
	default:
		return fmt.Errorf("signal %v not forwarded", sig)
	}
	return s.send(guestproto.ExecSignal, []byte{byte(sig)})
}

// Resize sets the size of the session's terminal (an ExecRequest with
// TTY), rows and cols each 1 to guestproto.MaxTermSize; the process's
// foreground group is sent SIGWINCH.
func (s *ExecSession) Resize(rows, cols int) error {
	if !s.tty {
		return errors.New("resize: the session has no terminal")
	}
	p, err := guestproto.EncodeResize(rows, cols)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	return s.send(guestproto.ExecResize, p)
}

// Close ends the session; a process still running is killed by the agent.
func (s *ExecSession) Close() error { return s.st.Close() }

func (s *ExecSession) send(typ byte, p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return guestproto.WriteExecFrame(s.st, typ, p)
}

// execStdin writes the process's stdin in frames; Close closes it.
type execStdin struct{ s *ExecSession }

func (w execStdin) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), guestproto.MaxExecFrame)
		if err := w.s.send(guestproto.ExecStdin, p[:k]); err != nil {
			return n, err
		}
		n, p = n+k, p[k:]
	}
	return n, nil
}

func (w execStdin) Close() error {
	err := w.s.send(guestproto.ExecStdinClose, nil)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// startError classifies the agent's account of a process that could not
// start (the kernel's words, as Go's os/exec gives them) so callers can
// tell a missing program or folder, or a refusal, from other failures.
func startError(err error) error {
	msg := err.Error()
	switch {
	case strings.HasSuffix(msg, "no such file or directory"), strings.HasSuffix(msg, "not a directory"):
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	case strings.HasSuffix(msg, "permission denied"):
		return fmt.Errorf("%w (%w)", err, fs.ErrPermission)
	}
	return err
}
