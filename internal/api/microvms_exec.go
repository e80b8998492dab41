package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	wire "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// guest is what the sandbox interface does in a held MicroVM: a
// *sandbox.Env (through envGuest), or a fake in unit tests.
type guest interface {
	Exec(ctx context.Context, req sandbox.ExecRequest) (guestProcess, error)
	StatFile(ctx context.Context, path string) (sandbox.FileInfo, error)
	ListDir(ctx context.Context, path string) ([]sandbox.FileInfo, error)
	ReadFile(ctx context.Context, path string) (io.ReadCloser, sandbox.FileInfo, error)
	WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) (int64, error)
	RemoveFile(ctx context.Context, path string, recursive bool) error
	MakeDir(ctx context.Context, path string) error
}

// guestProcess is an exec'd process: *sandbox.ExecSession's methods.
type guestProcess interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	Stderr() io.Reader
	Wait() (sandbox.ExitStatus, error)
	Signal(sig syscall.Signal) error
	Resize(rows, cols int) error
	Close() error
}

// guestHolder is a MicroVMs that holds guests itself (the unit tests'
// fake); the Manager holds a *sandbox.Env.
type guestHolder interface {
	HoldGuest(ctx context.Context, id string) (guest, func(), error)
}

type envGuest struct{ *sandbox.Env }

func (g envGuest) Exec(ctx context.Context, req sandbox.ExecRequest) (guestProcess, error) {
	s, err := g.Env.Exec(ctx, req)
	if err != nil {
		return nil, err
	}
	return envProcess{s}, nil
}

type envProcess struct{ *sandbox.ExecSession }

func (p envProcess) Stdin() io.WriteCloser { return p.ExecSession.Stdin }
func (p envProcess) Stdout() io.Reader     { return p.ExecSession.Stdout }
func (p envProcess) Stderr() io.Reader     { return p.ExecSession.Stderr }

// hold resumes the MicroVM the request names and holds it for the
// sandbox interface.
func (a *API) hold(r *http.Request) (guest, func(), error) {
	m, err := a.microvms()
	if err != nil {
		return nil, nil, err
	}
	id, err := identifier(r, "id", "microvmIdentifier")
	if err != nil {
		return nil, nil, err
	}
	if h, ok := m.(guestHolder); ok {
		g, release, err := h.HoldGuest(r.Context(), id)
		return g, release, microvmError(err)
	}
	env, release, err := m.Hold(r.Context(), id)
	if err != nil {
		return nil, nil, microvmError(err)
	}
	return envGuest{env}, release, nil
}

// Bounds of an exec session.
const (
	execStartTimeout = 30 * time.Second // for the FrameStart message
	execReadLimit    = wire.MaxFrame + 1
)

var execSignals = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}

// execMicrovm is the exec WebSocket: GET /hearth/v1/microvms/{id}/exec.
// The MicroVM is held (resumed, kept active) before the upgrade, so an
// unknown or terminated MicroVM is an ordinary error answer; the protocol
// after the upgrade is in client/microvm's protocol.go.
func (a *API) execMicrovm(w http.ResponseWriter, r *http.Request) {
	g, release, err := a.hold(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	defer release()
	// A shell may stay open for hours: the server's whole-request
	// deadlines (which the hijacked connection would keep) do not apply.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	c.SetReadLimit(execReadLimit)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	req, err := readExecStart(ctx, c)
	if err != nil {
		a.endExec(ctx, c, wire.ExitStatus{Code: -1, Error: err.Error()})
		return
	}
	p, err := g.Exec(ctx, req)
	if err != nil {
		a.endExec(ctx, c, wire.ExitStatus{Code: -1, Error: execStartError(err)})
		return
	}
	defer p.Close()

	// The client's frames: stdin, resize, signal, close-stdin. When the
	// client goes away the process is killed: nobody is left to read it.
	go func() {
		defer cancel()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				_ = p.Signal(syscall.SIGKILL)
				return
			}
			if typ != websocket.MessageBinary || len(b) == 0 {
				continue
			}
			payload := b[1:]
			switch b[0] {
			case wire.FrameStdin:
				if _, err := p.Stdin().Write(payload); err != nil {
					a.cfg.Log.Debug("exec: stdin", "err", err)
				}
			case wire.FrameCloseStdin:
				_ = p.Stdin().Close()
			case wire.FrameResize:
				var rs wire.Resize
				if json.Unmarshal(payload, &rs) == nil && rs.Rows > 0 && rs.Cols > 0 && rs.Rows < 1<<15 && rs.Cols < 1<<15 {
					_ = p.Resize(rs.Rows, rs.Cols)
				}
			case wire.FrameSignal:
				var sm wire.SignalMessage
				if json.Unmarshal(payload, &sm) == nil {
					if sig, ok := execSignals[sm.Signal]; ok {
						_ = p.Signal(sig)
					}
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for _, s := range []struct {
		typ byte
		r   io.Reader
	}{{wire.FrameStdout, p.Stdout()}, {wire.FrameStderr, p.Stderr()}} {
		if s.r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pumpFrames(ctx, c, s.typ, s.r)
		}()
	}
	wg.Wait()
	st, err := p.Wait()
	out := wire.ExitStatus{Code: st.Code, Signal: st.Signal}
	if err != nil {
		out = wire.ExitStatus{Code: -1, Error: "the session with the guest broke"}
		a.cfg.Log.Warn("exec: wait", "err", err)
	}
	a.endExec(ctx, c, out)
}

// readExecStart reads the FrameStart message and checks the request.
func readExecStart(ctx context.Context, c *websocket.Conn) (sandbox.ExecRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, execStartTimeout)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return sandbox.ExecRequest{}, fmt.Errorf("no start message: %w", err)
	}
	if typ != websocket.MessageBinary || len(b) == 0 || b[0] != wire.FrameStart {
		return sandbox.ExecRequest{}, errors.New("the first message must be a binary start frame (type 0) with the request as JSON")
	}
	var in wire.ExecRequest
	if err := json.Unmarshal(b[1:], &in); err != nil {
		return sandbox.ExecRequest{}, fmt.Errorf("the start frame is not a JSON request: %w", err)
	}
	req := sandbox.ExecRequest{Argv: in.Argv, Env: in.Env, Dir: in.Dir, TTY: in.TTY, Rows: in.Rows, Cols: in.Cols}
	if err := req.Validate(); err != nil {
		return sandbox.ExecRequest{}, fmt.Errorf("bad request: %w", err)
	}
	if req.TTY && (req.Rows < 0 || req.Cols < 0 || req.Rows >= 1<<15 || req.Cols >= 1<<15) {
		return sandbox.ExecRequest{}, errors.New("bad request: rows and cols must be 0 to 32767")
	}
	return req, nil
}

// execStartError is what the client is told of a process that did not
// start: the guest's reasons (no such file, permission) are the user's to
// see; the rest is only named.
func execStartError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "the program or folder does not exist in the MicroVM"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied in the MicroVM"
	case errors.Is(err, errors.ErrUnsupported):
		return "this MicroVM's guest does not support that"
	}
	return "the process could not start: " + err.Error()
}

// pumpFrames sends r's bytes as frames of typ until EOF.
func pumpFrames(ctx context.Context, c *websocket.Conn, typ byte, r io.Reader) {
	buf := make([]byte, 1+wire.MaxFrame)
	buf[0] = typ
	for {
		n, err := r.Read(buf[1:])
		if n > 0 {
			if werr := c.Write(ctx, websocket.MessageBinary, buf[:1+n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// endExec sends the exit frame and closes the WebSocket normally.
func (a *API) endExec(ctx context.Context, c *websocket.Conn, st wire.ExitStatus) {
	b, _ := json.Marshal(st)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.Write(wctx, websocket.MessageBinary, append([]byte{wire.FrameExit}, b...)); err != nil {
		return
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}
