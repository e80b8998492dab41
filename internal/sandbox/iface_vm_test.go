package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// The sandbox interface of a MicroVM, in a real guest: a service whose
// command ends at once leaves the environment usable; a process runs on
// a terminal and is resized; a file makes a round trip as the function's
// user, who may not write the code.
func TestSandboxInterfaceVM(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	// The test function in exec mode: it prints, reads its (empty) stdin
	// and exits 3.
	env := f.boot(t, sandbox.Function{Name: "svc", MemoryMB: 256, Timeout: 30 * time.Second, Service: true,
		Env: map[string]string{"TESTFN_EXEC": "3"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("service ended", func(t *testing.T) {
		var procs []string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if procs = userProcs(ctx, t, env); len(procs) == 0 {
				return
			}
		}
		t.Fatalf("the service's processes are still there: %v", procs)
	})

	t.Run("pty", func(t *testing.T) {
		s, err := env.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/var/task/bootstrap"}, Env: []string{"TESTFN_EXEC=0"},
			TTY: true, Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// Typed once the program runs, the input is echoed after its
		// first line.
		first := make([]byte, len("uid 993\r\n"))
		if _, err := io.ReadFull(s.Stdout, first); err != nil {
			t.Fatalf("first line %q: %v", first, err)
		}
		// While it waits for its input, the function's user sees it: the
		// listing that found the service gone would have found it.
		if procs := userProcs(ctx, t, env); len(procs) != 1 {
			t.Errorf("processes of the function's user: %v, want the one exec'd", procs)
		}
		out := bytes.NewBuffer(first)
		done := make(chan struct{})
		go func() { defer close(done); _, _ = io.Copy(out, s.Stdout) }()
		if err := s.Resize(40, 132); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(s.Stdin, "hello\n"); err != nil {
			t.Fatal(err)
		}
		_ = s.Stdin.Close() // a ^D
		<-done
		if b, _ := io.ReadAll(s.Stderr); len(b) != 0 {
			t.Errorf("stderr %q", b)
		}
		st, err := s.Wait()
		// The terminal's line discipline: \r\n line ends, the input
		// echoed, stderr on the one output.
		if want := "uid 993\r\nhello\r\nhello\r\nto stderr\r\n"; err != nil || st.Code != 0 || out.String() != want {
			t.Fatalf("status %+v %v, output %q, want %q", st, err, out.String(), want)
		}
	})

	t.Run("files", func(t *testing.T) {
		data := bytes.Repeat([]byte("sandbox "), 10000)
		if n, err := env.WriteFile(ctx, "/tmp/work/data.txt", 0o600, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
			t.Fatalf("write: %d %v", n, err)
		}
		fi, err := env.StatFile(ctx, "/tmp/work/data.txt")
		if err != nil || fi.Size != int64(len(data)) || fi.Mode != 0o600 {
			t.Fatalf("stat %+v %v", fi, err)
		}
		list, err := env.ListDir(ctx, "/tmp/work")
		if err != nil || len(list) != 1 || list[0].Name != "data.txt" {
			t.Fatalf("list %+v %v", list, err)
		}
		rc, _, err := env.ReadFile(ctx, "/tmp/work/data.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, %v", len(got), err)
		}
		if _, err := env.WriteFile(ctx, "/var/task/bootstrap", 0o755, strings.NewReader("x")); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("write over the code: %v, want ErrPermission", err)
		}
		if err := env.RemoveFile(ctx, "/tmp/work", true); err != nil {
			t.Fatal(err)
		}
		if _, err := env.StatFile(ctx, "/tmp/work/data.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat after remove: %v, want ErrNotExist", err)
		}
	})
}

// userProcs lists the processes the function's user sees in /proc
// (hidepid=2: its own), but PID 1: the agent, whose thread lists them.
func userProcs(ctx context.Context, t *testing.T, env *sandbox.Env) []string {
	t.Helper()
	list, err := env.ListDir(ctx, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range list {
		if fi.Name != "1" && strings.Trim(fi.Name, "0123456789") == "" {
			names = append(names, fi.Name)
		}
	}
	return names
}

// In a container image's root, the agent's thread for files enters that
// root (and may not write the read-only image) and a terminal's process
// finds its terminal there.
func TestSandboxInterfaceImageVM(t *testing.T) {
	f, root := imageFixture(t)
	fn := imageFunction(root, []string{"/app/testfunction"}, "/app")
	fn.Service = true
	fn.Env["TESTFN_SERVERS"] = "1" // a long-lived server
	env := f.boot(t, fn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	list, err := env.ListDir(ctx, "/app")
	if err != nil || len(list) != 1 || list[0].Name != "testfunction" {
		t.Fatalf("the image's /app: %+v %v", list, err)
	}
	if _, err := env.StatFile(ctx, "/newroot"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the initramfs is reachable: %v", err)
	}
	if err := env.MakeDir(ctx, "/app/new"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("mkdir in the image: %v, want ErrPermission", err)
	}
	if _, err := env.WriteFile(ctx, "/tmp/a/b", 0, strings.NewReader("on the disk")); err != nil {
		t.Fatal(err)
	}
	s, err := env.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/app/testfunction"}, Env: []string{"TESTFN_EXEC=5"},
		TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.Stdin.Close()
	out, _ := io.ReadAll(s.Stdout)
	if st, err := s.Wait(); err != nil || st.Code != 5 || string(out) != "uid 993\r\nto stderr\r\n" {
		t.Fatalf("status %+v %v, output %q", st, err, out)
	}
}
