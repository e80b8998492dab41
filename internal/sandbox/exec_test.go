package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// execAll runs req over a pipe to the real agent, writes stdin and returns
// the outputs and the exit status.
func execAll(t *testing.T, c *conn, req ExecRequest, stdin string) (string, string, ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.exec(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&out, s.Stdout) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&errb, s.Stderr) }()
	if _, err := io.WriteString(s.Stdin, stdin); err != nil {
		t.Fatal(err)
	}
	if err := s.Stdin.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	st, err := s.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), st
}

func TestExec(t *testing.T) {
	big := strings.Repeat("x", 3*guestproto.MaxExecFrame+7)
	tests := []struct {
		name             string
		script, stdin    string
		wantOut, wantErr string
		want             ExitStatus
	}{
		{"streams and code", "echo out; echo err >&2; exit 3", "", "out\n", "err\n", ExitStatus{Code: 3}},
		{"stdin to its end", "cat; echo done", big, big + "done\n", "", ExitStatus{Code: 0}},
		{"killed by a signal", "kill -TERM $$", "", "", "", ExitStatus{Code: -1, Signal: int(syscall.SIGTERM)}},
	}
	c := pipeConn(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, st := execAll(t, c, ExecRequest{Argv: []string{"/bin/sh", "-c", tc.script}}, tc.stdin)
			if out != tc.wantOut || errs != tc.wantErr || st != tc.want {
				t.Errorf("got out %.40q err %q status %+v; want %.40q %q %+v", out, errs, st, tc.wantOut, tc.wantErr, tc.want)
			}
		})
	}
}

func TestExecSignal(t *testing.T) {
	c := pipeConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.exec(ctx, ExecRequest{Argv: []string{"/bin/sh", "-c", "echo ready; exec sleep 30"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, s.Stderr) }()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s.Stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q: %v", buf, err)
	}
	if err := s.Signal(syscall.SIGHUP); err == nil {
		t.Error("SIGHUP was forwarded")
	}
	if err := s.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, s.Stdout)
	st, err := s.Wait()
	if err != nil || st.Signal != int(syscall.SIGINT) {
		t.Fatalf("status %+v, %v; want SIGINT", st, err)
	}
}

func TestExecRefused(t *testing.T) {
	c := pipeConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct {
		name string
		req  []byte
		want string
	}{
		{"unknown kind", mustKind(t, 9, ExecRequest{Argv: []string{"/bin/true"}}), "unknown stream kind 9"},
		{"unknown field", mustKind(t, guestproto.StreamKindExec, map[string]any{"argv": []string{"/bin/true"}, "uid": 0}), "unknown field"},
		{"no argv", mustKind(t, guestproto.StreamKindExec, map[string]any{"argv": []string{}}), "argv or env count"},
		{"too many args", mustKind(t, guestproto.StreamKindExec, ExecRequest{Argv: make([]string, guestproto.MaxExecArgs+1)}), "argv or env count"},
		{"no such program", mustKind(t, guestproto.StreamKindExec, ExecRequest{Argv: []string{"/nonexistent"}}), "no such file"},
		{"body too long", []byte{guestproto.StreamVersion2, 1, 0xff, 0xff, 0xff, 0xff}, "request of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.openStream(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func mustKind(t *testing.T, k guestproto.StreamKind, v any) []byte {
	t.Helper()
	b, err := guestproto.EncodeKindRequest(k, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The agent's account of a process that could not start is classified.
func TestExecStartError(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want error
	}{
		{"agent answered 4: fork/exec /nope: no such file or directory", fs.ErrNotExist},
		{"agent answered 4: chdir /nope: not a directory", fs.ErrNotExist},
		{"agent answered 4: fork/exec /etc/shadow: permission denied", fs.ErrPermission},
	} {
		if err := startError(errors.New(tc.msg)); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want %v", tc.msg, err, tc.want)
		}
	}
	if err := startError(errors.New("agent answered 3: too many")); errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		t.Errorf("an unrelated failure classified: %v", err)
	}
}
