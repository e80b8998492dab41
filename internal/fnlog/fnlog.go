// Package fnlog keeps each function's log: its output and Lambda's
// START / END / REPORT lines, one append-only file per function, rotated
// when it grows past a size, and read back for `hearth logs`.
package fnlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// MaxBytes is the size past which a function's log is rotated (the older
// half is kept as <name>.log.1).
const MaxBytes = 16 << 20

// Logs is the folder of function logs.
type Logs struct {
	dir string
	// locks holds a *sync.Mutex per function: a write and a rotation of
	// one function's log exclude each other, while other functions' logs
	// are written at the same time (one lock for all made every
	// invocation of every function wait on every other's file writes).
	locks sync.Map
}

// lock is function's log's lock.
func (l *Logs) lock(function string) *sync.Mutex {
	if m, ok := l.locks.Load(function); ok {
		return m.(*sync.Mutex)
	}
	m, _ := l.locks.LoadOrStore(function, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// New returns the logs kept in dir.
func New(dir string) (*Logs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Logs{dir: dir}, nil
}

// Path is a function's log file.
func (l *Logs) Path(function string) string { return filepath.Join(l.dir, function+".log") }

// Writer appends to a function's log.
func (l *Logs) Writer(function string) io.Writer { return writer{l: l, function: function} }

type writer struct {
	l        *Logs
	function string
}

func (w writer) Write(b []byte) (int, error) {
	mu := w.l.lock(w.function)
	mu.Lock()
	defer mu.Unlock()
	p := w.l.Path(w.function)
	if fi, err := os.Stat(p); err == nil && fi.Size()+int64(len(b)) > MaxBytes {
		_ = os.Rename(p, p+".1")
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Write(b)
}

// Printf appends a line to a function's log.
func (l *Logs) Printf(function, format string, args ...any) {
	_, _ = fmt.Fprintf(l.Writer(function), format+"\n", args...)
}

// Tail returns the last n lines of a function's log and the offset after
// them, from which Follow goes on.
func (l *Logs) Tail(function string, n int) ([]byte, int64, error) {
	b, err := os.ReadFile(l.Path(function))
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	start := len(b)
	for lines := 0; start > 0 && lines < n; lines++ {
		// Step back over one line: its newline, then its text.
		j := bytes.LastIndexByte(b[:start-1], '\n')
		start = j + 1
	}
	return b[start:], int64(len(b)), nil
}

// ReadFrom returns what was appended to a function's log after off, and the
// new offset. A rotation starts it over.
func (l *Logs) ReadFrom(function string, off int64) ([]byte, int64, error) {
	f, err := os.Open(l.Path(function))
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, off, err
	}
	if fi.Size() < off {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return b, off + int64(len(b)), err
}
