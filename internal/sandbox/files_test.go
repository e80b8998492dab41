package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// runningEnv is an environment running on c.
func runningEnv(c *conn) *Env { return &Env{id: "env-files", state: StateReady, conn: c} }

// A file's round trip through the real agent over a pipe (as the test's
// user, on the host's files): write, stat, list, read back, remove.
func TestFilesRoundTrip(t *testing.T) {
	env := runningEnv(pipeConn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	p := filepath.Join(dir, "sub/data.bin")
	data := bytes.Repeat([]byte("hearth "), 20000) // frames of several sizes

	n, err := env.WriteFile(ctx, p, 0o640, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("write: %d, %v", n, err)
	}
	fi, err := env.StatFile(ctx, p)
	if err != nil || fi.Name != "data.bin" || fi.Size != int64(len(data)) || fi.Mode != 0o640 || fi.IsDir || time.Since(fi.ModTime) > time.Minute {
		t.Fatalf("stat: %+v, %v", fi, err)
	}
	if err := env.MakeDir(ctx, filepath.Join(dir, "sub/a/b")); err != nil {
		t.Fatal(err)
	}
	list, err := env.ListDir(ctx, filepath.Join(dir, "sub"))
	if err != nil || len(list) != 2 || list[0].Name != "a" || !list[0].IsDir || list[1].Name != "data.bin" {
		t.Fatalf("list: %+v, %v", list, err)
	}
	rc, rfi, err := env.ReadFile(ctx, p)
	if err != nil || rfi.Size != int64(len(data)) {
		t.Fatalf("read: %+v, %v", rfi, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if err := env.RemoveFile(ctx, filepath.Join(dir, "sub"), false); err == nil {
		t.Fatal("a folder that is not empty was removed without recursive")
	}
	if err := env.RemoveFile(ctx, filepath.Join(dir, "sub"), true); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"stat": func() error { _, err := env.StatFile(ctx, p); return err }(),
		"read": func() error { _, _, err := env.ReadFile(ctx, p); return err }(),
		"list": func() error { _, err := env.ListDir(ctx, filepath.Join(dir, "sub")); return err }(),
		"rm":   env.RemoveFile(ctx, p, false),
	} {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after remove: %v, want ErrNotExist", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the folder is still there: %v", err)
	}
}

// Paths are checked before anything is sent: absolute and clean.
func TestFilesPathRefused(t *testing.T) {
	env := runningEnv(pipeConn(t))
	ctx := context.Background()
	for _, p := range []string{"", "tmp/x", "/tmp/../etc/passwd", "/tmp/./x", "/tmp//x", "/tmp/", "/tmp/\x00x", "/" + strings.Repeat("a", guestproto.MaxPathLen)} {
		if _, err := env.StatFile(ctx, p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("stat %q: %v, want ErrInvalidPath", p, err)
		}
	}
	if err := env.RemoveFile(ctx, "/", true); err == nil {
		t.Error("the root was removed")
	}
}

// fakeFilesGuest is a guest whose agent answers each files stream OK and
// then does what answer does.
func fakeFilesGuest(t *testing.T, answer func(st net.Conn, req guestproto.FilesRequest)) *conn {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	t.Cleanup(func() { hostEnd.Close(); guestEnd.Close() })
	go func() {
		br := bufio.NewReader(guestEnd)
		nonce, err := guestproto.AwaitHello(br)
		if err != nil {
			return
		}
		if _, err := guestEnd.Write(guestproto.StreamsOK(nonce)); err != nil {
			return
		}
		if guestproto.AwaitGo(br, nonce) != nil {
			return
		}
		sess, err := yamux.Server(struct {
			io.Reader
			io.Writer
			io.Closer
		}{br, guestEnd, guestEnd}, guestproto.YamuxConfig())
		if err != nil {
			return
		}
		for {
			st, err := sess.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				var v [1]byte
				if _, err := io.ReadFull(st, v[:]); err != nil {
					return
				}
				_, body, err := guestproto.ReadKindRequest(st)
				if err != nil {
					return
				}
				req, err := guestproto.DecodeFilesRequest(body)
				if err != nil {
					return
				}
				if guestproto.WriteStreamAnswer(st, guestproto.StreamOK, "") == nil {
					answer(st, req)
				}
			}()
		}
	}()
	c := &conn{m: pipeMachine{host: hostEnd}, gone: make(chan struct{})}
	c.streams.filesStall = 300 * time.Millisecond
	t.Cleanup(func() { close(c.gone) })
	return c
}

func frame(w io.Writer, typ byte, v any) {
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	_ = guestproto.WriteExecFrame(w, typ, b)
}

// What a guest answers is bounded and checked: a listing's length, a
// stat's name, a read's count, a frame's size, an error's message, and
// the time between frames.
func TestFilesHostileGuest(t *testing.T) {
	stat := func(name string) guestproto.FileStat { return guestproto.FileStat{Name: name, Size: 1} }
	tests := []struct {
		name   string
		answer func(st net.Conn, req guestproto.FilesRequest)
		op     func(ctx context.Context, env *Env) error
		want   func(error) bool
	}{
		{"a listing too long", func(st net.Conn, _ guestproto.FilesRequest) {
			for i := range guestproto.MaxListEntries + 5 {
				frame(st, guestproto.FilesInfo, stat("f"+strings.Repeat("x", i%7)))
			}
			frame(st, guestproto.FilesDone, guestproto.FilesResult{})
		}, func(ctx context.Context, env *Env) error { _, err := env.ListDir(ctx, "/tmp"); return err },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "more than 10000 entries") }},
		{"a name with a slash", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesInfo, stat("../etc"))
			frame(st, guestproto.FilesDone, guestproto.FilesResult{})
		}, func(ctx context.Context, env *Env) error { _, err := env.ListDir(ctx, "/tmp"); return err },
			func(err error) bool { return errors.Is(err, errGuestProtocol) }},
		{"a name too long", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesInfo, stat(strings.Repeat("n", guestproto.MaxNameLen+1)))
		}, func(ctx context.Context, env *Env) error { _, err := env.StatFile(ctx, "/tmp/x"); return err },
			func(err error) bool { return errors.Is(err, errGuestProtocol) }},
		{"a stat with fields of its own", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesInfo, []byte(`{"name":"x","size":1,"mode":0,"mtime":0,"uid":0}`))
		}, func(ctx context.Context, env *Env) error { _, err := env.StatFile(ctx, "/tmp/x"); return err },
			func(err error) bool { return errors.Is(err, errGuestProtocol) }},
		{"a frame too large", func(st net.Conn, _ guestproto.FilesRequest) {
			_, _ = st.Write([]byte{guestproto.FilesInfo, 0, 1, 0, 0})
		}, func(ctx context.Context, env *Env) error { _, err := env.StatFile(ctx, "/tmp/x"); return err },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "exec frame of") }},
		{"a silent guest", func(st net.Conn, _ guestproto.FilesRequest) {
			time.Sleep(5 * time.Second)
		}, func(ctx context.Context, env *Env) error { _, err := env.StatFile(ctx, "/tmp/x"); return err },
			func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"a read that stalls", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesInfo, stat("x"))
			frame(st, guestproto.FilesData, []byte("a"))
			time.Sleep(5 * time.Second)
		}, func(ctx context.Context, env *Env) error {
			rc, _, err := env.ReadFile(ctx, "/tmp/x")
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			return err
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"a read miscounted", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesInfo, stat("x"))
			frame(st, guestproto.FilesData, []byte("abc"))
			frame(st, guestproto.FilesDone, guestproto.FilesResult{Size: 2})
		}, func(ctx context.Context, env *Env) error {
			rc, _, err := env.ReadFile(ctx, "/tmp/x")
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			return err
		}, func(err error) bool { return errors.Is(err, errGuestProtocol) }},
		{"an error with a long message", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesError, guestproto.FilesErr{Code: "notexist", Message: strings.Repeat("\x1b[2J", 1000)})
		}, func(ctx context.Context, env *Env) error { _, err := env.StatFile(ctx, "/tmp/x"); return err },
			func(err error) bool {
				return errors.Is(err, fs.ErrNotExist) && len(err.Error()) < guestproto.MaxFilesMessage+100 && !strings.Contains(err.Error(), "\x1b")
			}},
		{"a write refused at once", func(st net.Conn, _ guestproto.FilesRequest) {
			frame(st, guestproto.FilesError, guestproto.FilesErr{Code: "permission", Message: "no"})
		}, func(ctx context.Context, env *Env) error {
			// An endless file: the refusal ends its sending.
			_, err := env.WriteFile(ctx, "/etc/x", 0, zeros{})
			return err
		}, func(err error) bool { return errors.Is(err, fs.ErrPermission) }},
		{"a write that stops being read", func(st net.Conn, _ guestproto.FilesRequest) {
			time.Sleep(5 * time.Second)
		}, func(ctx context.Context, env *Env) error {
			_, err := env.WriteFile(ctx, "/tmp/x", 0, zeros{})
			return err
		}, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
		{"a write miscounted", func(st net.Conn, _ guestproto.FilesRequest) {
			for {
				typ, _, err := guestproto.ReadExecFrame(st)
				if err != nil || typ == guestproto.FilesDataEnd {
					break
				}
			}
			frame(st, guestproto.FilesDone, guestproto.FilesResult{Size: 1})
		}, func(ctx context.Context, env *Env) error {
			_, err := env.WriteFile(ctx, "/tmp/x", 0, strings.NewReader("abc"))
			return err
		}, func(err error) bool { return errors.Is(err, errGuestProtocol) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := runningEnv(fakeFilesGuest(t, tc.answer))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.op(ctx, env)
			if !tc.want(err) {
				t.Fatalf("err %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// A caller's context ends a read at once.
func TestFilesReadCanceled(t *testing.T) {
	env := runningEnv(fakeFilesGuest(t, func(st net.Conn, _ guestproto.FilesRequest) {
		frame(st, guestproto.FilesInfo, guestproto.FileStat{Name: "x"})
		time.Sleep(5 * time.Second)
	}))
	env.conn.streams.filesStall = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	rc, _, err := env.ReadFile(ctx, "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A guest that refuses a write and reads no more (as the agent does: it
// keeps the stream) ends the upload at once, not at the stall deadline.
func TestFilesWriteRefusedStopsSending(t *testing.T) {
	env := runningEnv(fakeFilesGuest(t, func(st net.Conn, _ guestproto.FilesRequest) {
		frame(st, guestproto.FilesError, guestproto.FilesErr{Code: "permission", Message: "read-only"})
		time.Sleep(5 * time.Second)
	}))
	env.conn.streams.filesStall = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := env.WriteFile(ctx, "/app/x", 0, zeros{}); !errors.Is(err, fs.ErrPermission) || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v after %v, want a permission error at once", err, time.Since(start))
	}
}
