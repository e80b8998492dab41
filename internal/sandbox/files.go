package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// File operations in an environment: each is a stream of kind files
// (guestproto.StreamKindFiles) on which the agent does the operation in
// the function's root, as the function's user. Everything the guest sends
// back is bounded here: a stat's name, a listing's length, and a wait of
// at most filesStall for each of its frames.

// FileInfo describes a file in the guest. Errors of the file operations
// wrap fs.ErrNotExist, fs.ErrExist or fs.ErrPermission where the guest
// said so.
type FileInfo struct {
	Name    string      `json:"name"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"modTime"`
	IsDir   bool        `json:"isDir"`
}

// ErrInvalidPath is a path the file operations do not take: it must be
// absolute and clean (no "..", "." or "//", no trailing "/"), without NUL,
// at most guestproto.MaxPathLen bytes.
var ErrInvalidPath = errors.New("invalid path")

// filesStall bounds the wait for each frame of the guest's answer: a
// guest that stops answering mid-way fails the operation.
const filesStall = 30 * time.Second

// StatFile describes the file at path (absolute, in the function's root);
// a symlink is followed.
func (e *Env) StatFile(ctx context.Context, path string) (FileInfo, error) {
	var fi FileInfo
	err := e.fileOp(ctx, guestproto.FilesRequest{Op: guestproto.FileOpStat, Path: path}, func(s *filesStream) error {
		var err error
		if fi, err = s.info(); err != nil {
			return err
		}
		_, err = s.done()
		return err
	})
	return fi, err
}

// ListDir lists the folder at path, sorted by name; a symlink in it is
// described as such. A folder of more than guestproto.MaxListEntries
// entries is an error.
func (e *Env) ListDir(ctx context.Context, path string) ([]FileInfo, error) {
	var list []FileInfo
	err := e.fileOp(ctx, guestproto.FilesRequest{Op: guestproto.FileOpList, Path: path}, func(s *filesStream) error {
		for {
			typ, p, err := s.next()
			if err != nil {
				return err
			}
			switch typ {
			case guestproto.FilesInfo:
				if len(list) == guestproto.MaxListEntries {
					return fmt.Errorf("more than %d entries", guestproto.MaxListEntries)
				}
				fi, err := decodeFileInfo(p)
				if err != nil {
					return err
				}
				list = append(list, fi)
			case guestproto.FilesDone:
				return nil
			default:
				return s.unexpected(typ, p)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// ReadFile streams the regular file at path; the caller closes it. A read
// of the stream ends with io.EOF once all the file was read, or with the
// guest's error.
func (e *Env) ReadFile(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	req := guestproto.FilesRequest{Op: guestproto.FileOpRead, Path: path}
	s, err := e.openFiles(ctx, req)
	if err != nil {
		return nil, FileInfo{}, err
	}
	fi, err := s.info()
	if err != nil {
		s.close()
		return nil, FileInfo{}, fmt.Errorf("read %s: %w", path, err)
	}
	return &fileReader{s: s, path: path}, fi, nil
}

// WriteFile writes r to path (its parent folders made), replacing what
// was there, with mode's permission bits (0: 0644); it returns the bytes
// written. The file appears whole or not at all: the guest writes a file
// beside it and renames it over path once all of r came.
func (e *Env) WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) (int64, error) {
	var n int64
	err := e.fileOp(ctx, guestproto.FilesRequest{Op: guestproto.FileOpWrite, Path: path, Mode: mode.Perm()}, func(s *filesStream) error {
		// The guest answers at the end, or as soon as it refuses: its
		// answer is awaited while r is sent, with no stall bound until all
		// was sent (r may be slow).
		if err := s.setDeadline(s.st.SetReadDeadline, time.Time{}); err != nil {
			return err
		}
		answered := make(chan struct{})
		var got int64
		var gerr error
		go func() {
			got, gerr = s.parseDone(s.readFrame())
			close(answered)
			// A write blocked on a guest that refused and reads no more
			// ends now, not at its stall deadline; sendAll sees answered
			// closed before it sets another.
			_ = s.st.SetWriteDeadline(time.Now())
		}()
		sent, serr := s.sendAll(r, answered)
		_ = s.setDeadline(s.st.SetReadDeadline, time.Now().Add(s.stall))
		var refused *guestproto.FilesErr
		switch {
		case errors.Is(serr, errGuestAnswered) && gerr == nil:
			return fmt.Errorf("%w: the write's answer came before its end", errGuestProtocol)
		case serr != nil && !errors.Is(serr, errGuestAnswered):
			// The guest drops its file when the stream ends.
			s.close()
			<-answered
			if errors.As(gerr, &refused) {
				return gerr
			}
			return serr
		}
		<-answered
		if gerr == nil && got != sent {
			gerr = fmt.Errorf("%w: the guest wrote %d bytes of %d", errGuestProtocol, got, sent)
		}
		n = got
		return gerr
	})
	return n, err
}

// RemoveFile removes path; a folder only with recursive (or empty).
func (e *Env) RemoveFile(ctx context.Context, path string, recursive bool) error {
	return e.fileOp(ctx, guestproto.FilesRequest{Op: guestproto.FileOpRemove, Path: path, Recursive: recursive}, doneOnly)
}

// MakeDir makes the folder path and its parents (mode 0755); a folder
// that exists is no error.
func (e *Env) MakeDir(ctx context.Context, path string) error {
	return e.fileOp(ctx, guestproto.FilesRequest{Op: guestproto.FileOpMkdir, Path: path}, doneOnly)
}

func doneOnly(s *filesStream) error {
	_, err := s.done()
	return err
}

// fileOp opens a files stream for req, runs do on it and closes it; its
// errors name the operation and path.
func (e *Env) fileOp(ctx context.Context, req guestproto.FilesRequest, do func(*filesStream) error) error {
	s, err := e.openFiles(ctx, req)
	if err != nil {
		return err
	}
	defer s.close()
	if err := do(s); err != nil {
		return fmt.Errorf("%s %s: %w", req.Op, printable(req.Path, 255), err)
	}
	return nil
}

func (e *Env) openFiles(ctx context.Context, req guestproto.FilesRequest) (*filesStream, error) {
	if err := guestproto.CheckPath(req.Path); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", req.Op, ErrInvalidPath, err)
	}
	c, err := e.runningConn()
	if err != nil {
		return nil, err
	}
	return c.openFiles(ctx, req)
}

// runningConn is the environment's connection, if it is running.
func (e *Env) runningConn() (*conn, error) {
	e.mu.Lock()
	state, c := e.state, e.conn
	e.mu.Unlock()
	if (state != StateReady && state != StateBusy) || c == nil {
		return nil, fmt.Errorf("%s: %w (%s)", e.id, ErrNotRunning, state)
	}
	return c, nil
}

func (c *conn) openFiles(ctx context.Context, req guestproto.FilesRequest) (*filesStream, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Op, printable(req.Path, 255), err)
	}
	b, err := guestproto.EncodeKindRequest(guestproto.StreamKindFiles, req)
	if err != nil {
		return nil, err
	}
	st, err := c.openStream(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Op, printable(req.Path, 255), err)
	}
	s := &filesStream{st: st, ctx: ctx, stall: filesStall}
	if c.streams.filesStall > 0 {
		s.stall = c.streams.filesStall
	}
	// The caller's context ending ends any wait on the stream (a yamux
	// stream's Close only ends its sending half).
	s.stop = context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	return s, nil
}

// filesStream is an open files stream.
type filesStream struct {
	st    *guestConn
	ctx   context.Context
	stall time.Duration
	stop  func() bool
	once  sync.Once
}

func (s *filesStream) close() {
	s.once.Do(func() {
		s.stop()
		s.st.Close()
	})
}

// next reads the guest's next frame within filesStall.
func (s *filesStream) next() (byte, []byte, error) {
	if err := s.setDeadline(s.st.SetReadDeadline, time.Now().Add(s.stall)); err != nil {
		return 0, nil, err
	}
	return s.readFrame()
}

// setDeadline sets a deadline unless the caller's context ended: then
// the one in the past its end set stays.
func (s *filesStream) setDeadline(set func(time.Time) error, t time.Time) error {
	_ = set(t)
	if err := s.ctx.Err(); err != nil {
		_ = set(time.Unix(1, 0))
		return err
	}
	return nil
}

// readFrame reads the guest's next frame by the deadline set; an Error
// frame is returned as its error (wrapping the fs error it names).
func (s *filesStream) readFrame() (byte, []byte, error) {
	typ, p, err := guestproto.ReadExecFrame(s.st)
	if err != nil {
		return 0, nil, s.streamErr(err)
	}
	if typ == guestproto.FilesError {
		return 0, nil, guestproto.DecodeFilesErr(p)
	}
	return typ, p, nil
}

// info reads an Info frame.
func (s *filesStream) info() (FileInfo, error) {
	typ, p, err := s.next()
	if err != nil {
		return FileInfo{}, err
	}
	if typ != guestproto.FilesInfo {
		return FileInfo{}, s.unexpected(typ, p)
	}
	return decodeFileInfo(p)
}

// done reads the Done frame and returns its size.
func (s *filesStream) done() (int64, error) { return s.parseDone(s.next()) }

func (s *filesStream) parseDone(typ byte, p []byte, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	if typ != guestproto.FilesDone {
		return 0, s.unexpected(typ, p)
	}
	var r guestproto.FilesResult
	if err := json.Unmarshal(p, &r); err != nil || r.Size < 0 {
		return 0, fmt.Errorf("%w: bad result %s", errGuestProtocol, printable(string(p), 64))
	}
	return r.Size, nil
}

// streamErr is err of the stream as the caller sees it: its context's
// end, a guest that stalled, or the stream's failure.
func (s *filesStream) streamErr(err error) error {
	switch {
	case s.ctx.Err() != nil:
		return s.ctx.Err()
	case errors.Is(err, yamux.ErrTimeout):
		return fmt.Errorf("files stream: the guest stalled for %v: %w", s.stall, os.ErrDeadlineExceeded)
	}
	return fmt.Errorf("files stream: %w", err)
}

func (s *filesStream) unexpected(typ byte, p []byte) error {
	return fmt.Errorf("%w: files frame of type %d (%d bytes)", errGuestProtocol, typ, len(p))
}

// errGuestAnswered stops sendAll: the guest answered before all was sent.
var errGuestAnswered = errors.New("the guest answered")

// sendAll sends r in Data frames, then DataEnd, each within filesStall;
// it stops with errGuestAnswered once answered is closed (the guest
// refused).
func (s *filesStream) sendAll(r io.Reader, answered <-chan struct{}) (int64, error) {
	buf := make([]byte, guestproto.MaxExecFrame)
	var n int64
	send := func(typ byte, p []byte) error {
		if err := s.setDeadline(s.st.SetWriteDeadline, time.Now().Add(s.stall)); err != nil {
			return err
		}
		select {
		case <-answered:
			return errGuestAnswered
		default:
		}
		if err := guestproto.WriteExecFrame(s.st, typ, p); err != nil {
			select {
			case <-answered:
				return errGuestAnswered
			default:
			}
			return s.streamErr(err)
		}
		return nil
	}
	for {
		select {
		case <-answered:
			return n, errGuestAnswered
		default:
		}
		k, rerr := r.Read(buf)
		if k > 0 {
			if err := send(guestproto.FilesData, buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) {
			return n, send(guestproto.FilesDataEnd, nil)
		}
		if rerr != nil {
			return n, fmt.Errorf("the file to write: %w", rerr)
		}
	}
}

func decodeFileInfo(p []byte) (FileInfo, error) {
	st, err := guestproto.DecodeFileStat(p)
	if err != nil {
		return FileInfo{}, fmt.Errorf("%w: %w", errGuestProtocol, err)
	}
	return FileInfo{Name: st.Name, Size: st.Size, Mode: st.Mode, ModTime: st.Time(), IsDir: st.Mode.IsDir()}, nil
}

// fileReader is a file's bytes as the guest streams them.
type fileReader struct {
	s    *filesStream
	path string
	buf  []byte
	n    int64
	err  error
}

func (r *fileReader) Read(b []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		typ, p, err := r.s.next()
		switch {
		case err != nil:
			r.err = fmt.Errorf("read %s: %w", printable(r.path, 255), err)
		case typ == guestproto.FilesData:
			r.buf, r.n = p, r.n+int64(len(p))
		case typ == guestproto.FilesDone:
			var res guestproto.FilesResult
			if json.Unmarshal(p, &res) != nil || res.Size != r.n {
				r.err = fmt.Errorf("read %s: %w: the guest counted other bytes than it sent", printable(r.path, 255), errGuestProtocol)
			} else {
				r.err = io.EOF
			}
			r.s.close()
		default:
			r.err = fmt.Errorf("read %s: %w", printable(r.path, 255), r.s.unexpected(typ, p))
		}
	}
	k := copy(b, r.buf)
	r.buf = r.buf[k:]
	return k, nil
}

func (r *fileReader) Close() error {
	r.s.close()
	return nil
}
