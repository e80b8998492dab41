package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// filesAnswer is what the agent answered to one files request: its
// status, Info frames, the bytes read, and how it ended.
type filesAnswer struct {
	status guestproto.StreamStatus
	infos  []guestproto.FileStat
	data   []byte
	done   *guestproto.FilesResult
	err    *guestproto.FilesErr
}

// filesCall serves req with x over a pipe, sending data for a write.
func filesCall(t *testing.T, x execAs, req guestproto.FilesRequest, data []byte) filesAnswer {
	t.Helper()
	host, guest := net.Pipe()
	defer host.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		defer guest.Close()
		x.serveFiles(guest, req)
	}()
	_ = host.SetDeadline(time.Now().Add(10 * time.Second))
	var a filesAnswer
	st, msg, err := guestproto.ReadStreamAnswer(host)
	if err != nil {
		t.Fatal(err)
	}
	if a.status = st; st != guestproto.StreamOK {
		t.Fatalf("answer %d %q", st, msg)
	}
	if req.Op == guestproto.FileOpWrite {
		go func() {
			for p := data; len(p) > 0; {
				k := min(len(p), guestproto.MaxExecFrame)
				if guestproto.WriteExecFrame(host, guestproto.FilesData, p[:k]) != nil {
					return
				}
				p = p[k:]
			}
			_ = guestproto.WriteExecFrame(host, guestproto.FilesDataEnd, nil)
		}()
	}
	for a.done == nil && a.err == nil {
		typ, p, err := guestproto.ReadExecFrame(host)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Op, req.Path, err)
		}
		switch typ {
		case guestproto.FilesInfo:
			s, err := guestproto.DecodeFileStat(p)
			if err != nil {
				t.Fatal(err)
			}
			a.infos = append(a.infos, s)
		case guestproto.FilesData:
			a.data = append(a.data, p...)
		case guestproto.FilesDone:
			a.done = new(guestproto.FilesResult)
			if err := json.Unmarshal(p, a.done); err != nil {
				t.Fatal(err)
			}
		case guestproto.FilesError:
			a.err = guestproto.DecodeFilesErr(p)
		default:
			t.Fatalf("frame type %d", typ)
		}
	}
	host.Close()
	<-served
	return a
}

// jailRoot is a function's root as the agent has one: root's folders and
// files, a world-writable /tmp, and a file outside it.
func jailRoot(t *testing.T) (root, outside string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the files jail needs root (it changes user): run the tests as root, as .ci/run does")
	}
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside.txt")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(outside, []byte("host secret"), 0o644))
	must(os.Chmod(base, 0o755))
	for _, d := range []string{"etc", "tmp"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(os.WriteFile(filepath.Join(root, "etc/secret"), []byte("s"), 0o600))
	must(os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	must(os.Symlink(outside, filepath.Join(root, "tmp/out")))
	must(os.Symlink("/../../../etc/hosts", filepath.Join(root, "tmp/up")))
	must(unix.Mkfifo(filepath.Join(root, "tmp/fifo"), 0o666))
	return root, outside
}

// File operations run as the function's user in its root: what it writes
// is its own, what is root's stays closed, and no symlink leads out.
func TestFilesJailed(t *testing.T) {
	root, _ := jailRoot(t)
	x := execAs{cred: functionCredential(), root: func() string { return root }}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // several frames

	type check func(t *testing.T, a filesAnswer)
	fails := func(code string) check {
		return func(t *testing.T, a filesAnswer) {
			if a.err == nil || a.err.Code != code {
				t.Fatalf("answer %+v, err %+v; want error %s", a.done, a.err, code)
			}
		}
	}
	ok := func(t *testing.T, a filesAnswer) {
		if a.err != nil {
			t.Fatalf("error %s: %s", a.err.Code, a.err.Message)
		}
	}
	tests := []struct {
		name  string
		req   guestproto.FilesRequest
		data  []byte
		check check
	}{
		{"write with parents", guestproto.FilesRequest{Op: "write", Path: "/tmp/a/b.bin", Mode: 0o600}, big, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if a.done.Size != int64(len(big)) {
				t.Errorf("size %d", a.done.Size)
			}
			for p, mode := range map[string]fs.FileMode{"tmp/a/b.bin": 0o600, "tmp/a": fs.ModeDir | 0o755} {
				fi, err := os.Stat(filepath.Join(root, p))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != FunctionUID || st.Gid != FunctionGID || fi.Mode() != mode {
					t.Errorf("%s: owner %d:%d mode %v; want %d:%d %v", p, st.Uid, st.Gid, fi.Mode(), FunctionUID, FunctionGID, mode)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(root, "tmp/a/b.bin")); !bytes.Equal(b, big) {
				t.Errorf("content of %d bytes", len(b))
			}
			if m, _ := filepath.Glob(filepath.Join(root, "tmp/a/.*")); len(m) != 0 {
				t.Errorf("left behind: %v", m)
			}
		}},
		{"write replaces", guestproto.FilesRequest{Op: "write", Path: "/tmp/a/b.bin"}, []byte("new"), func(t *testing.T, a filesAnswer) {
			ok(t, a)
			fi, _ := os.Stat(filepath.Join(root, "tmp/a/b.bin"))
			if b, _ := os.ReadFile(filepath.Join(root, "tmp/a/b.bin")); string(b) != "new" || fi.Mode() != 0o644 {
				t.Errorf("content %q mode %v", b, fi.Mode())
			}
		}},
		{"a name of 255 bytes", guestproto.FilesRequest{Op: "write", Path: "/tmp/" + strings.Repeat("n", 255)}, []byte("x"), ok},
		{"stat", guestproto.FilesRequest{Op: "stat", Path: "/tmp/a/b.bin"}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if len(a.infos) != 1 || a.infos[0].Name != "b.bin" || a.infos[0].Size != 3 || a.infos[0].Mode != 0o644 {
				t.Errorf("stat %+v", a.infos)
			}
		}},
		{"stat the root", guestproto.FilesRequest{Op: "stat", Path: "/"}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if len(a.infos) != 1 || a.infos[0].Name != "/" || !a.infos[0].Mode.IsDir() {
				t.Errorf("stat %+v", a.infos)
			}
		}},
		{"list", guestproto.FilesRequest{Op: "list", Path: "/tmp"}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			var names []string
			for _, s := range a.infos {
				names = append(names, s.Name)
			}
			if got := strings.Join(slices.Sorted(slices.Values(names)), " "); got != "a fifo "+strings.Repeat("n", 255)+" out up" {
				t.Errorf("entries %q", got)
			}
		}},
		{"read", guestproto.FilesRequest{Op: "read", Path: "/tmp/a/b.bin"}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if string(a.data) != "new" || a.done.Size != 3 || len(a.infos) != 1 {
				t.Errorf("read %q size %d infos %+v", a.data, a.done.Size, a.infos)
			}
		}},
		{"a symlink stays in the root", guestproto.FilesRequest{Op: "read", Path: "/tmp/up"}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if string(a.data) != "127.0.0.1 localhost\n" {
				t.Errorf("read %q", a.data)
			}
		}},
		{"no symlink out", guestproto.FilesRequest{Op: "read", Path: "/tmp/out"}, nil, fails(guestproto.FilesErrNotExist)},
		{"not found", guestproto.FilesRequest{Op: "stat", Path: "/nope"}, nil, fails(guestproto.FilesErrNotExist)},
		{"root's file", guestproto.FilesRequest{Op: "read", Path: "/etc/secret"}, nil, fails(guestproto.FilesErrPermission)},
		{"root's folder", guestproto.FilesRequest{Op: "write", Path: "/etc/x"}, []byte("x"), fails(guestproto.FilesErrPermission)},
		{"remove root's file", guestproto.FilesRequest{Op: "remove", Path: "/etc/hosts"}, nil, fails(guestproto.FilesErrPermission)},
		{"a fifo is not read", guestproto.FilesRequest{Op: "read", Path: "/tmp/fifo"}, nil, fails(guestproto.FilesErrInvalid)},
		{"a folder is not read", guestproto.FilesRequest{Op: "read", Path: "/tmp"}, nil, fails(guestproto.FilesErrIsDir)},
		{"a file is no folder", guestproto.FilesRequest{Op: "list", Path: "/tmp/a/b.bin"}, nil, fails(guestproto.FilesErrNotDir)},
		{"a folder that is not empty", guestproto.FilesRequest{Op: "remove", Path: "/tmp/a"}, nil, fails(guestproto.FilesErrNotEmpty)},
		{"remove recursive", guestproto.FilesRequest{Op: "remove", Path: "/tmp/a", Recursive: true}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			if _, err := os.Lstat(filepath.Join(root, "tmp/a")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("still there: %v", err)
			}
		}},
		{"remove what is gone", guestproto.FilesRequest{Op: "remove", Path: "/tmp/a"}, nil, fails(guestproto.FilesErrNotExist)},
		{"mkdir", guestproto.FilesRequest{Op: "mkdir", Path: "/tmp/m/n", Mode: 0o700}, nil, func(t *testing.T, a filesAnswer) {
			ok(t, a)
			fi, err := os.Stat(filepath.Join(root, "tmp/m/n"))
			if err != nil || fi.Mode() != fs.ModeDir|0o700 || fi.Sys().(*syscall.Stat_t).Uid != FunctionUID {
				t.Errorf("made %v %v", fi, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, filesCall(t, x, tc.req, tc.data))
		})
	}
	// The jailed threads ended with their goroutines: the agent is still
	// root, in its own root.
	if os.Geteuid() != 0 {
		t.Fatalf("the agent's euid is %d", os.Geteuid())
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("the agent's root changed: %v", err)
	}
}
