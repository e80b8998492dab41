package guestproto

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestExecRequestTerminal(t *testing.T) {
	argv := []string{"/bin/sh"}
	tests := []struct {
		name string
		req  ExecRequest
		ok   bool
	}{
		{"tty", ExecRequest{Argv: argv, TTY: true, Rows: 24, Cols: 80}, true},
		{"tty at the bounds", ExecRequest{Argv: argv, TTY: true, Rows: 1, Cols: MaxTermSize}, true},
		{"tty of no size", ExecRequest{Argv: argv, TTY: true}, false},
		{"tty too wide", ExecRequest{Argv: argv, TTY: true, Rows: 24, Cols: MaxTermSize + 1}, false},
		{"negative rows", ExecRequest{Argv: argv, TTY: true, Rows: -1, Cols: 80}, false},
		{"a size without tty", ExecRequest{Argv: argv, Rows: 24, Cols: 80}, false},
		{"pipes", ExecRequest{Argv: argv}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.req.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestResizeFrame(t *testing.T) {
	p, err := EncodeResize(50, 132)
	if err != nil {
		t.Fatal(err)
	}
	if rows, cols, err := DecodeResize(p); rows != 50 || cols != 132 || err != nil {
		t.Fatalf("decoded %d %d %v", rows, cols, err)
	}
	for _, bad := range [][]byte{nil, {0, 1, 0}, {0, 0, 0, 80}, {0x03, 0xe9, 0, 80}, {0, 24, 0, 80, 0}} {
		if _, _, err := DecodeResize(bad); !errors.Is(err, ErrBadStreamRequest) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	if _, err := EncodeResize(0, 80); err == nil {
		t.Error("a size of 0 rows was encoded")
	}
}

func TestFilesRequestValidate(t *testing.T) {
	tests := []struct {
		name string
		req  FilesRequest
		ok   bool
	}{
		{"stat", FilesRequest{Op: FileOpStat, Path: "/tmp/x"}, true},
		{"the root", FilesRequest{Op: FileOpList, Path: "/"}, true},
		{"write with a mode", FilesRequest{Op: FileOpWrite, Path: "/tmp/x", Mode: 0o755}, true},
		{"remove recursive", FilesRequest{Op: FileOpRemove, Path: "/tmp/x", Recursive: true}, true},
		{"unknown op", FilesRequest{Op: "chmod", Path: "/tmp/x"}, false},
		{"relative", FilesRequest{Op: FileOpStat, Path: "tmp/x"}, false},
		{"empty", FilesRequest{Op: FileOpStat}, false},
		{"dot dot", FilesRequest{Op: FileOpStat, Path: "/tmp/../etc"}, false},
		{"leading dot dot", FilesRequest{Op: FileOpStat, Path: "/../etc"}, false},
		{"dot", FilesRequest{Op: FileOpStat, Path: "/tmp/."}, false},
		{"double slash", FilesRequest{Op: FileOpStat, Path: "//tmp"}, false},
		{"trailing slash", FilesRequest{Op: FileOpStat, Path: "/tmp/"}, false},
		{"NUL", FilesRequest{Op: FileOpStat, Path: "/tmp/a\x00b"}, false},
		{"too long", FilesRequest{Op: FileOpStat, Path: "/" + strings.Repeat("a", MaxPathLen)}, false},
		{"setuid", FilesRequest{Op: FileOpWrite, Path: "/tmp/x", Mode: fs.ModeSetuid | 0o755}, false},
		{"recursive mkdir", FilesRequest{Op: FileOpMkdir, Path: "/tmp/x", Recursive: true}, false},
		{"remove the root", FilesRequest{Op: FileOpRemove, Path: "/", Recursive: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadStreamRequest)) {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			b, err := EncodeKindRequest(StreamKindFiles, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			k, body, err := ReadKindRequest(bytes.NewReader(b[1:]))
			if err != nil || k != StreamKindFiles {
				t.Fatalf("read back: kind %d, %v", k, err)
			}
			if got, err := DecodeFilesRequest(body); err != nil || got != tc.req {
				t.Fatalf("decoded %+v, %v", got, err)
			}
		})
	}
	if _, err := DecodeFilesRequest([]byte(`{"op":"stat","path":"/x","uid":0}`)); err == nil {
		t.Error("an unknown field was taken")
	}
}

func TestDecodeFileStat(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"file", `{"name":"a.txt","size":3,"mode":420,"mtime":1}`, true},
		{"root", `{"name":"/","size":0,"mode":2147484141,"mtime":1}`, true},
		{"no name", `{"name":"","size":3,"mode":420,"mtime":1}`, false},
		{"dot dot", `{"name":"..","size":3,"mode":420,"mtime":1}`, false},
		{"slash", `{"name":"a/b","size":3,"mode":420,"mtime":1}`, false},
		{"NUL", `{"name":"a\u0000b","size":3,"mode":420,"mtime":1}`, false},
		{"negative size", `{"name":"a","size":-1,"mode":420,"mtime":1}`, false},
		{"unknown field", `{"name":"a","size":1,"mode":420,"mtime":1,"uid":0}`, false},
		{"trailing", `{"name":"a","size":1,"mode":420,"mtime":1}{}`, false},
		{"long name", `{"name":"` + strings.Repeat("n", MaxNameLen+1) + `","size":1,"mode":420,"mtime":1}`, false},
		{"not json", `nope`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFileStat([]byte(tc.in))
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadFileStat)) {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestDecodeFilesErr(t *testing.T) {
	tests := []struct {
		in   string
		code string
		is   error
	}{
		{`{"code":"notexist","message":"gone"}`, FilesErrNotExist, fs.ErrNotExist},
		{`{"code":"exist","message":"there"}`, FilesErrExist, fs.ErrExist},
		{`{"code":"permission","message":"no"}`, FilesErrPermission, fs.ErrPermission},
		{`{"code":"notempty","message":"full"}`, FilesErrNotEmpty, nil},
		{`{"code":"rootkit","message":"x"}`, FilesErrOther, nil},
		{`garbage`, FilesErrOther, nil},
	}
	for _, tc := range tests {
		e := DecodeFilesErr([]byte(tc.in))
		if e.Code != tc.code || (tc.is != nil && !errors.Is(e, tc.is)) {
			t.Errorf("%s: %+v", tc.in, e)
		}
		if tc.is == nil && (errors.Is(e, fs.ErrNotExist) || errors.Is(e, fs.ErrExist) || errors.Is(e, fs.ErrPermission)) {
			t.Errorf("%s matches an fs error", tc.in)
		}
	}
	long := DecodeFilesErr([]byte(`{"code":"other","message":"` + strings.Repeat(`\u001b[2Jé`, 1000) + `"}`))
	if len(long.Message) > MaxFilesMessage || strings.ContainsAny(long.Message, "\x1bé") {
		t.Errorf("message of %d bytes: %.40q", len(long.Message), long.Message)
	}
}

// What the agent reads of a host (a files request) and the host of a
// guest (a stat, an error) is decoded without panic, and what is taken
// holds to the bounds.
func FuzzFilesDecode(f *testing.F) {
	f.Add([]byte(`{"op":"write","path":"/tmp/x","mode":420}`))
	f.Add([]byte(`{"name":"a.txt","size":3,"mode":420,"mtime":1}`))
	f.Add([]byte(`{"code":"notexist","message":"gone"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeFilesRequest(b); err == nil {
			if CheckPath(r.Path) != nil || r.Mode&^fs.ModePerm != 0 {
				t.Fatalf("took %+v", r)
			}
		}
		if s, err := DecodeFileStat(b); err == nil {
			if s.Name == "" || len(s.Name) > MaxNameLen || s.Size < 0 || (s.Name != "/" && strings.ContainsAny(s.Name, "/\x00")) {
				t.Fatalf("took %+v", s)
			}
		}
		e := DecodeFilesErr(b)
		if len(e.Message) > MaxFilesMessage || !utf8.ValidString(e.Message) {
			t.Fatalf("message %q", e.Message)
		}
	})
}
