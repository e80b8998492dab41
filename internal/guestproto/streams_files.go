package guestproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
)

// A files stream (StreamKindFiles) is one file operation in the function's
// root, done by the agent as the function's user. Its request is a
// FilesRequest; after the agent's StreamOK both ends send frames of the
// exec streams' form (WriteExecFrame, ReadExecFrame) and these types:
//
//	stat:   guest → Info, Done
//	list:   guest → Info (one an entry, at most MaxListEntries), Done
//	read:   guest → Info (the file's), Data…, Done
//	write:  host → Data…, DataEnd; guest → Done (its Size the bytes written)
//	remove, mkdir: guest → Done
//
// Any of them may end instead with an Error frame from the guest.
const (
	FilesData    byte = 0 // both ways: a file's bytes
	FilesDataEnd byte = 1 // host → guest: the end of a write's bytes
	FilesInfo    byte = 2 // guest → host: a FileStat as JSON
	FilesDone    byte = 3 // guest → host, last: a FilesResult as JSON
	FilesError   byte = 4 // guest → host, last: a FilesErr as JSON
)

// File operations.
const (
	FileOpStat   = "stat"
	FileOpList   = "list"
	FileOpRead   = "read"
	FileOpWrite  = "write"
	FileOpRemove = "remove"
	FileOpMkdir  = "mkdir"
)

// Bounds of the files protocol. The host checks what the guest sends
// against them; the agent keeps to them.
const (
	MaxPathLen     = 4096
	MaxNameLen     = 4096
	MaxListEntries = 10000
	// MaxFilesMessage bounds an error's message.
	MaxFilesMessage = 1024
)

// FilesRequest is one file operation. Path is absolute and clean (no
// "..", no NUL): the agent resolves it inside the function's root. Mode
// is the permission bits of a file written or a folder made (0: 0644 for
// a file, 0755 for a folder).
type FilesRequest struct {
	Op        string      `json:"op"`
	Path      string      `json:"path"`
	Mode      fs.FileMode `json:"mode,omitempty"`
	Recursive bool        `json:"recursive,omitempty"`
}

// Validate checks the request: a known operation, a path CheckPath takes,
// permission bits only, recursive only for remove.
func (r FilesRequest) Validate() error {
	switch r.Op {
	case FileOpStat, FileOpList, FileOpRead, FileOpWrite, FileOpRemove, FileOpMkdir:
	default:
		return fmt.Errorf("%w: unknown file operation %q", ErrBadStreamRequest, r.Op)
	}
	if err := CheckPath(r.Path); err != nil {
		return err
	}
	if r.Mode&^fs.ModePerm != 0 {
		return fmt.Errorf("%w: mode %v is more than permission bits", ErrBadStreamRequest, r.Mode)
	}
	if r.Recursive && r.Op != FileOpRemove {
		return fmt.Errorf("%w: recursive is for remove", ErrBadStreamRequest)
	}
	if r.Op == FileOpRemove && r.Path == "/" {
		return fmt.Errorf("%w: the root is not removed", ErrBadStreamRequest)
	}
	return nil
}

// DecodeFilesRequest decodes a files stream's request and validates it;
// unknown fields are refused.
func DecodeFilesRequest(body []byte) (FilesRequest, error) {
	var r FilesRequest
	if err := decodeStrict(body, &r); err != nil {
		return FilesRequest{}, fmt.Errorf("%w: %w", ErrBadStreamRequest, err)
	}
	return r, r.Validate()
}

// CheckPath takes an absolute, clean path of at most MaxPathLen bytes
// without NUL.
func CheckPath(p string) error {
	switch {
	case p == "" || p[0] != '/':
		return fmt.Errorf("%w: path %.64q is not absolute", ErrBadStreamRequest, p)
	case len(p) > MaxPathLen:
		return fmt.Errorf("%w: path of %d bytes", ErrBadStreamRequest, len(p))
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%w: NUL in path", ErrBadStreamRequest)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: path %.64q is not clean (\"..\", \".\", \"//\" or a trailing /)", ErrBadStreamRequest, p)
	}
	return nil
}

// FileStat is a file as the guest describes it: its mode is Go's
// fs.FileMode, its time Unix nanoseconds.
type FileStat struct {
	Name    string      `json:"name"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime int64       `json:"mtime"`
}

// FileStatOf describes fi.
func FileStatOf(fi fs.FileInfo) FileStat {
	return FileStat{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime().UnixNano()}
}

// Time is the stat's modification time.
func (s FileStat) Time() time.Time { return time.Unix(0, s.ModTime) }

// ErrBadFileStat is a stat from the guest the host does not take.
var ErrBadFileStat = errors.New("bad file stat from the guest")

// DecodeFileStat decodes an Info frame and checks it: one name (not "."
// or "..", no "/" or NUL, at most MaxNameLen bytes, "/" only for the
// root), a size not below 0. Unknown fields are refused.
func DecodeFileStat(p []byte) (FileStat, error) {
	var s FileStat
	if err := decodeStrict(p, &s); err != nil {
		return FileStat{}, fmt.Errorf("%w: %w", ErrBadFileStat, err)
	}
	switch {
	case s.Name == "" || s.Name == "." || s.Name == "..":
		return FileStat{}, fmt.Errorf("%w: name %q", ErrBadFileStat, s.Name)
	case len(s.Name) > MaxNameLen:
		return FileStat{}, fmt.Errorf("%w: name of %d bytes", ErrBadFileStat, len(s.Name))
	case s.Name != "/" && strings.ContainsAny(s.Name, "/\x00"):
		return FileStat{}, fmt.Errorf("%w: name %.64q", ErrBadFileStat, s.Name)
	case s.Size < 0:
		return FileStat{}, fmt.Errorf("%w: size %d", ErrBadFileStat, s.Size)
	}
	return s, nil
}

// FilesResult ends an operation that went well: Size is the bytes read
// or written.
type FilesResult struct {
	Size int64 `json:"size,omitempty"`
}

// Codes of a FilesErr.
const (
	FilesErrNotExist   = "notexist"
	FilesErrExist      = "exist"
	FilesErrPermission = "permission"
	FilesErrIsDir      = "isdir"
	FilesErrNotDir     = "notdir"
	FilesErrNotEmpty   = "notempty"
	FilesErrTooMany    = "toomany" // a folder of more than MaxListEntries
	FilesErrInvalid    = "invalid" // e.g. a read of what is no regular file
	FilesErrOther      = "other"
)

// FilesErr is why an operation failed.
type FilesErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *FilesErr) Error() string { return e.Message }

// Is makes a FilesErr match the fs errors its code names.
func (e *FilesErr) Is(target error) bool {
	switch e.Code {
	case FilesErrNotExist:
		return target == fs.ErrNotExist
	case FilesErrExist:
		return target == fs.ErrExist
	case FilesErrPermission:
		return target == fs.ErrPermission
	}
	return false
}

// DecodeFilesErr decodes an Error frame: an unknown code is "other", a
// message is cut to MaxFilesMessage bytes and what is not printable ASCII
// replaced.
func DecodeFilesErr(p []byte) *FilesErr {
	var e FilesErr
	if err := json.Unmarshal(p, &e); err != nil {
		return &FilesErr{Code: FilesErrOther, Message: "undecodable error from the guest"}
	}
	switch e.Code {
	case FilesErrNotExist, FilesErrExist, FilesErrPermission, FilesErrIsDir, FilesErrNotDir,
		FilesErrNotEmpty, FilesErrTooMany, FilesErrInvalid:
	default:
		e.Code = FilesErrOther
	}
	if len(e.Message) > MaxFilesMessage {
		e.Message = e.Message[:MaxFilesMessage]
	}
	e.Message = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, e.Message)
	return &e
}

func decodeStrict(p []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
