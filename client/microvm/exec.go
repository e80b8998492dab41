package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"

	"github.com/coder/websocket"
)

// Session is a process started by Exec. Read Stdout and Stderr until EOF
// (as with os/exec's pipes: output not read holds the process's output
// back), write Stdin and close it, then Wait.
type Session struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader

	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	wmu    sync.Mutex
	outW   *io.PipeWriter
	errW   *io.PipeWriter
	done   chan struct{}
	status ExitStatus
	err    error
}

// Exec starts a process in the MicroVM (resuming it if suspended; it
// stays active while the session is open). The context bounds the whole
// session.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest) (*Session, error) {
	if len(req.Argv) == 0 {
		return nil, errors.New("exec: argv is empty")
	}
	u := c.url(SandboxPrefix+id+"/exec", nil)
	// The handshake is signed as a GET with no body; the WebSocket's own
	// headers are not signed.
	probe, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	empty := hashOf(nil)
	probe.Header.Set("X-Amz-Content-Sha256", empty)
	if err := c.sign(ctx, probe, empty); err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, k := range []string{"Authorization", "X-Amz-Date", "X-Amz-Content-Sha256", "X-Amz-Security-Token"} {
		if v := probe.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	conn, resp, err := websocket.Dial(sctx, u.String(), &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h})
	if err != nil {
		cancel()
		if resp != nil && resp.StatusCode >= 300 {
			defer resp.Body.Close()
			return nil, readAPIError(resp)
		}
		return nil, fmt.Errorf("exec: %w", err)
	}
	conn.SetReadLimit(MaxFrame + 1 + 4096)
	start, err := json.Marshal(req)
	if err != nil {
		cancel()
		conn.CloseNow()
		return nil, err
	}
	if err := conn.Write(sctx, websocket.MessageBinary, append([]byte{FrameStart}, start...)); err != nil {
		cancel()
		conn.CloseNow()
		return nil, fmt.Errorf("exec: %w", err)
	}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	s := &Session{Stdout: outR, Stderr: errR, c: conn, ctx: sctx, cancel: cancel, outW: outW, errW: errW, done: make(chan struct{})}
	s.Stdin = &stdinWriter{s: s}
	go s.read()
	return s, nil
}

// read demultiplexes the daemon's frames until the exit frame.
func (s *Session) read() {
	defer close(s.done)
	err := func() error {
		for {
			typ, b, err := s.c.Read(s.ctx)
			if err != nil {
				return fmt.Errorf("exec: the session ended without an exit status: %w", err)
			}
			if typ != websocket.MessageBinary || len(b) == 0 {
				continue
			}
			switch b[0] {
			case FrameStdout:
				if _, err := s.outW.Write(b[1:]); err != nil {
					return err
				}
			case FrameStderr:
				if _, err := s.errW.Write(b[1:]); err != nil {
					return err
				}
			case FrameExit:
				if err := json.Unmarshal(b[1:], &s.status); err != nil {
					return fmt.Errorf("exec: bad exit frame: %w", err)
				}
				if s.status.Error != "" {
					return fmt.Errorf("exec: %s", s.status.Error)
				}
				return nil
			}
		}
	}()
	s.err = err
	if err == nil {
		_ = s.c.Close(websocket.StatusNormalClosure, "")
	} else {
		s.c.CloseNow()
	}
	s.outW.CloseWithError(err)
	s.errW.CloseWithError(err)
	s.cancel()
}

func (s *Session) send(typ byte, p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.c.Write(s.ctx, websocket.MessageBinary, append([]byte{typ}, p...))
}

// Wait waits for the process to end and returns how it ended; an error
// when it could not start or the session broke.
func (s *Session) Wait() (ExitStatus, error) {
	<-s.done
	return s.status, s.err
}

// Resize sets the size of the session's terminal (ExecRequest.TTY).
func (s *Session) Resize(rows, cols int) error {
	b, _ := json.Marshal(Resize{Rows: rows, Cols: cols})
	return s.send(FrameResize, b)
}

// Signal sends SIGINT, SIGTERM or SIGKILL to the process.
func (s *Session) Signal(sig syscall.Signal) error {
	var name string
	switch sig {
	case syscall.SIGINT:
		name = "INT"
	case syscall.SIGTERM:
		name = "TERM"
	case syscall.SIGKILL:
		name = "KILL"
	default:
		return fmt.Errorf("exec: signal %v cannot be sent (INT, TERM or KILL)", sig)
	}
	b, _ := json.Marshal(SignalMessage{Signal: name})
	return s.send(FrameSignal, b)
}

// Close ends the session at once (the daemon kills the process).
func (s *Session) Close() error {
	s.cancel()
	<-s.done
	return nil
}

type stdinWriter struct {
	s    *Session
	once sync.Once
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFrame)]
		if err := w.s.send(FrameStdin, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

func (w *stdinWriter) Close() error {
	var err error
	w.once.Do(func() { err = w.s.send(FrameCloseStdin, nil) })
	return err
}

// ExecAll runs a process to its end: stdin (may be nil) is its input,
// stdout and stderr (io.Discard when nil) get its output.
func (c *Client) ExecAll(ctx context.Context, id string, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error) {
	s, err := c.Exec(ctx, id, req)
	if err != nil {
		return ExitStatus{}, err
	}
	return s.Attach(stdin, stdout, stderr)
}

// Attach copies stdin (may be nil) into the process until EOF, and its
// output into stdout and stderr (io.Discard when nil), and waits for it.
func (s *Session) Attach(stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if stdin != nil {
		go func() {
			_, _ = io.Copy(s.Stdin, stdin)
			_ = s.Stdin.Close()
		}()
	} else {
		_ = s.Stdin.Close()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(stdout, s.Stdout) }()
	go func() { defer wg.Done(); _, _ = io.Copy(stderr, s.Stderr) }()
	wg.Wait()
	return s.Wait()
}
