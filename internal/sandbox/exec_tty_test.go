package sandbox

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// A process on a terminal, over a pipe to the real agent: it has a tty
// of the size asked for, sees a resize, gets its input through the
// terminal (echoed back), and ends at a ^D.
func TestExecTTY(t *testing.T) {
	c := pipeConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	script := `stty -echo; tty; stty size; read line; echo "got $line"; trap 'stty size; exit 7' WINCH; echo waiting; while :; do sleep 0.05; done`
	s, err := c.exec(ctx, ExecRequest{Argv: []string{"/bin/sh", "-c", script}, TTY: true, Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := bufio.NewReader(s.Stdout)
	line := func() string {
		t.Helper()
		l, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %q %v", l, err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if got := line(); !strings.HasPrefix(got, "/dev/pts/") {
		t.Fatalf("tty: %q", got)
	}
	if got := line(); got != "33 101" {
		t.Fatalf("stty size %q, want 33 101", got)
	}
	if _, err := io.WriteString(s.Stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if got := line(); got != "got hello" {
		t.Fatalf("after input: %q", got)
	}
	if got := line(); got != "waiting" {
		t.Fatalf("%q", got)
	}
	if err := s.Resize(0, 80); err == nil {
		t.Error("resize to 0 rows was sent")
	}
	if err := s.Resize(50, 132); err != nil {
		t.Fatal(err)
	}
	if got := line(); got != "50 132" {
		t.Fatalf("size after resize %q", got)
	}
	if rest, _ := io.ReadAll(out); len(rest) != 0 {
		t.Errorf("more output %q", rest)
	}
	if b, _ := io.ReadAll(s.Stderr); len(b) != 0 {
		t.Errorf("stderr %q", b)
	}
	st, err := s.Wait()
	if err != nil || st.Code != 7 {
		t.Fatalf("status %+v %v", st, err)
	}
}

// A ^D (stdin's end) ends a program reading the terminal; a session
// without a terminal takes no resize.
func TestExecTTYEndOfInput(t *testing.T) {
	c := pipeConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.exec(ctx, ExecRequest{Argv: []string{"/bin/cat"}, TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, s.Stderr) }()
	_, _ = io.WriteString(s.Stdin, "abc\n")
	_ = s.Stdin.Close()
	b, _ := io.ReadAll(s.Stdout)
	// The terminal echoes the line and cat writes it, each with \r\n.
	if string(b) != "abc\r\nabc\r\n" {
		t.Errorf("output %q", b)
	}
	if st, err := s.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("status %+v %v", st, err)
	}

	p, err := c.exec(ctx, ExecRequest{Argv: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Resize(24, 80); err == nil {
		t.Error("a session without a terminal was resized")
	}
}
