// Package atomicfile writes files so that a crash leaves under a file's name
// either its old content or its new one, whole, and so that the new one is
// on disk once the write returns: it is written aside, fsynced, renamed
// over the name, and the folder is fsynced so that the rename itself
// survives a power cut. Every file Hearth keeps by name (code packages,
// images, manifests, snapshots, credentials) is written through it.
//
// The file written aside is named <name>.<pid>.<random>.tmp, so that
// RemoveStale can tell the leftovers of a process that died from a write in
// progress in a live one.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Write writes data to path atomically and durably, with mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc writes path atomically and durably with what write writes; on
// any error nothing is left, and path keeps its old content.
func WriteFunc(path string, perm os.FileMode, write func(w io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := write(f); err != nil {
		return err
	}
	return f.Commit()
}

// File is a file being written aside; Commit puts it under its name,
// Abort drops it.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts writing path: the file is made aside, in path's folder,
// with mode perm.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("%s.%d.*.tmp", base, os.Getpid()))
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit flushes the file to disk, closes it, renames it over its name and
// flushes the folder. On an error the file written aside is removed.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: already committed or aborted")
	}
	f.done = true
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(tmp, f.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Abort closes and removes the file written aside; after Commit it does
// nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// Commit makes tmp, a complete file another writer made (a VMM, say), the
// content of path, durably: tmp is flushed, renamed over path, and the
// folder flushed. tmp must be in path's folder.
func Commit(tmp, path string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	return rename(tmp, path)
}

func rename(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir flushes a folder, so that the names made, renamed or removed in
// it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// RemoveStale removes the files written aside in dir by processes that no
// longer run (a crash between Create and Commit), and returns their names.
// A file of a live process is a write in progress and is kept.
func RemoveStale(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if pid, ok := writer(name); ok && alive(pid) {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed, nil
}

// writer is the PID in a name Create made (<name>.<pid>.<random>.tmp).
// A .tmp file named otherwise is an older writer's, and stale.
func writer(name string) (int, bool) {
	parts := strings.Split(strings.TrimSuffix(name, ".tmp"), ".")
	if len(parts) < 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	return pid, err == nil && pid > 0
}

// alive reports whether a process with pid runs (EPERM: it does, as
// another user's).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
