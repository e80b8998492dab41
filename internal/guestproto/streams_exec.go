package guestproto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// A stream of version 2 names its kind: its request is the version byte
// (2), a kind byte, a big-endian uint32 length and that many bytes of
// JSON (at most MaxStreamRequestBody). Version 1 (a TCP port, three
// bytes) stays as it is. The agent refuses an unknown kind with
// StreamBadRequest.
const (
	StreamVersion2       = 2
	MaxStreamRequestBody = 64 << 10
)

// StreamKind is what a version-2 stream is for.
type StreamKind byte

// Kinds.
const (
	StreamKindExec  StreamKind = 1 // run a process (ExecRequest)
	StreamKindFiles StreamKind = 2 // a file operation (FilesRequest)
)

// Bounds of an exec request, checked by the agent.
const (
	MaxExecArgs   = 1024
	MaxExecArgLen = 16 << 10
	MaxExecEnv    = 1024
	// MaxTermSize bounds a terminal's rows and columns.
	MaxTermSize = 1000
)

// ExecRequest is a process to run in the guest, as the function's user.
type ExecRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	// TTY runs the process on a pseudo-terminal of Rows x Cols (each
	// 1 to MaxTermSize), in a session of its own with the terminal as its
	// controlling one: its stdout and stderr are the terminal's one
	// output (stdout frames), stdin frames are typed into it, and the
	// end of stdin is a ^D. Without TTY, Rows and Cols are 0.
	TTY  bool `json:"tty,omitempty"`
	Rows int  `json:"rows,omitempty"`
	Cols int  `json:"cols,omitempty"`
}

// Validate checks the request's bounds.
func (r ExecRequest) Validate() error {
	if len(r.Argv) == 0 || len(r.Argv) > MaxExecArgs || len(r.Env) > MaxExecEnv {
		return fmt.Errorf("%w: argv or env count", ErrBadStreamRequest)
	}
	for _, s := range append(append([]string{r.Dir}, r.Argv...), r.Env...) {
		if len(s) > MaxExecArgLen {
			return fmt.Errorf("%w: argument longer than %d bytes", ErrBadStreamRequest, MaxExecArgLen)
		}
	}
	if r.Argv[0] == "" {
		return fmt.Errorf("%w: empty program", ErrBadStreamRequest)
	}
	if r.TTY {
		if err := checkTermSize(r.Rows, r.Cols); err != nil {
			return err
		}
	} else if r.Rows != 0 || r.Cols != 0 {
		return fmt.Errorf("%w: rows and cols without a tty", ErrBadStreamRequest)
	}
	return nil
}

func checkTermSize(rows, cols int) error {
	if rows < 1 || rows > MaxTermSize || cols < 1 || cols > MaxTermSize {
		return fmt.Errorf("%w: terminal size %dx%d out of 1..%d", ErrBadStreamRequest, rows, cols, MaxTermSize)
	}
	return nil
}

// EncodeKindRequest is a version-2 request of kind k with body v.
func EncodeKindRequest(k StreamKind, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxStreamRequestBody {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrBadStreamRequest, len(body))
	}
	b := []byte{StreamVersion2, byte(k), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], uint32(len(body)))
	return append(b, body...), nil
}

// ReadKindRequest reads what follows a version-2 byte: kind and body. An
// unknown kind is refused before its length is read.
func ReadKindRequest(r io.Reader) (StreamKind, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:1]); err != nil {
		return 0, nil, err
	}
	if k := StreamKind(h[0]); k != StreamKindExec && k != StreamKindFiles {
		return 0, nil, fmt.Errorf("%w: unknown stream kind %d", ErrBadStreamRequest, k)
	}
	if _, err := io.ReadFull(r, h[1:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxStreamRequestBody {
		return 0, nil, fmt.Errorf("%w: request of %d bytes", ErrBadStreamRequest, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return StreamKind(h[0]), body, nil
}

// After the agent's StreamOK, an exec stream carries frames both ways: a
// type byte, a big-endian uint32 length and at most MaxExecFrame bytes. A
// files stream carries frames of the same form (streams_files.go).
const MaxExecFrame = 32 << 10

// Exec frame types.
const (
	ExecStdin      byte = 0 // host → guest: bytes for the process's stdin
	ExecStdinClose byte = 1 // host → guest: close its stdin
	ExecSignal     byte = 2 // host → guest: one byte, a signal number
	ExecStdout     byte = 3 // guest → host
	ExecStderr     byte = 4 // guest → host
	ExecExit       byte = 5 // guest → host, last: ExecExitStatus as JSON
	ExecResize     byte = 6 // host → guest: the terminal's size (EncodeResize)
)

// EncodeResize is an ExecResize frame's payload: rows and cols, each a
// big-endian uint16.
func EncodeResize(rows, cols int) ([]byte, error) {
	if err := checkTermSize(rows, cols); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, uint16(rows))
	binary.BigEndian.PutUint16(b[2:], uint16(cols))
	return b, nil
}

// DecodeResize checks an ExecResize payload.
func DecodeResize(p []byte) (rows, cols int, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("%w: resize of %d bytes", ErrBadStreamRequest, len(p))
	}
	rows, cols = int(binary.BigEndian.Uint16(p)), int(binary.BigEndian.Uint16(p[2:]))
	if err := checkTermSize(rows, cols); err != nil {
		return 0, 0, err
	}
	return rows, cols, nil
}

// ExecExitStatus is how the process ended: its code, or the signal that
// ended it (Code -1 then).
type ExecExitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
}

// WriteExecFrame writes one frame; p longer than MaxExecFrame is an error.
func WriteExecFrame(w io.Writer, typ byte, p []byte) error {
	if len(p) > MaxExecFrame {
		return fmt.Errorf("exec frame of %d bytes", len(p))
	}
	b := make([]byte, 5, 5+len(p))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	_, err := w.Write(append(b, p...))
	return err
}

// ReadExecFrame reads one frame, refusing one longer than MaxExecFrame.
func ReadExecFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxExecFrame {
		return 0, nil, fmt.Errorf("exec frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}
