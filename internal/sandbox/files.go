package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

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

// StatFile describes the file at path (absolute, in the function's root).
func (e *Env) StatFile(ctx context.Context, path string) (FileInfo, error) {
	return FileInfo{}, fmt.Errorf("stat %s: %w", path, errors.ErrUnsupported)
}

// ListDir lists the folder at path.
func (e *Env) ListDir(ctx context.Context, path string) ([]FileInfo, error) {
	return nil, fmt.Errorf("list %s: %w", path, errors.ErrUnsupported)
}

// ReadFile streams the file at path; the caller closes it.
func (e *Env) ReadFile(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	return nil, FileInfo{}, fmt.Errorf("read %s: %w", path, errors.ErrUnsupported)
}

// WriteFile writes r to path (its parent folders made), replacing what
// was there, with mode's permission bits; it returns the bytes written.
func (e *Env) WriteFile(ctx context.Context, path string, mode fs.FileMode, r io.Reader) (int64, error) {
	return 0, fmt.Errorf("write %s: %w", path, errors.ErrUnsupported)
}

// RemoveFile removes path; a folder only with recursive (or empty).
func (e *Env) RemoveFile(ctx context.Context, path string, recursive bool) error {
	return fmt.Errorf("remove %s: %w", path, errors.ErrUnsupported)
}

// MakeDir makes the folder path and its parents.
func (e *Env) MakeDir(ctx context.Context, path string) error {
	return fmt.Errorf("mkdir %s: %w", path, errors.ErrUnsupported)
}
