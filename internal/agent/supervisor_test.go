package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		name       string
		ws         syscall.WaitStatus // as wait(2) encodes it
		wantStatus string
		wantCode   int
	}{
		{"exit 0", 0, "exit status 0", 0},
		{"exit 2", 2 << 8, "exit status 2", 2},
		{"exit 255", 255 << 8, "exit status 255", 255},
		{"killed", syscall.WaitStatus(syscall.SIGKILL), "signal: killed", 137},
		{"segfault", syscall.WaitStatus(syscall.SIGSEGV), "signal: segmentation fault", 139},
		{"stopped", syscall.WaitStatus(0x7f | int(syscall.SIGSTOP)<<8), "wait status 0x137f", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := describe(tt.ws)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("describe(%#x) = %q, %d; want %q, %d", uint32(tt.ws), status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestVmHWM(t *testing.T) {
	tests := []struct {
		name, status string
		want         int64
	}{
		{"proc status", "Name:\tbootstrap\nVmPeak:\t  712340 kB\nVmHWM:\t    7212 kB\nVmRSS:\t    7000 kB\n", 7212},
		{"last line, no newline", "VmRSS:\t1 kB\nVmHWM:\t42 kB", 42},
		{"missing", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0},
		{"empty value", "VmHWM:\n", 0},
		{"not a number", "VmHWM:\tlots kB\n", 0},
		{"empty", "", 0},
	}
	for _, tt := range tests {
		if got := vmHWM(tt.status); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
}

// bootstrapDir writes an executable bootstrap script into a task root.
func bootstrapDir(t *testing.T, script string, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	if script != "" {
		if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\n"+script), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type exitSeen struct {
	status string
	code   int
	frames int // frames the host had when onExit ran
}

// The runtime process as the agent supervises it outside PID 1: its output
// reaches the host before its exit is reported, and the exit is worded as
// Lambda words it.
func TestSupervisorStart(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		mode       os.FileMode
		wantErr    string
		wantStatus string
		wantCode   int
		wantOut    string
		wantErrOut string
	}{
		{name: "exits with a status", script: "echo out-line\necho err-line >&2\nexit 3\n", mode: 0o755,
			wantStatus: "exit status 3", wantCode: 3, wantOut: "out-line\n", wantErrOut: "err-line\n"},
		{name: "sees its environment and task root", script: "echo \"$HEARTH_TEST_VAR $(pwd)\"\n", mode: 0o755,
			wantStatus: "exit status 0", wantCode: 0, wantOut: "from-env {root}\n"},
		{name: "killed", script: "echo bye\nkill -KILL $$\n", mode: 0o755,
			wantStatus: "signal: killed", wantCode: 137, wantOut: "bye\n"},
		{name: "cannot gain privileges by execve", script: "grep NoNewPrivs /proc/self/status\n", mode: 0o755,
			wantStatus: "exit status 0", wantCode: 0, wantOut: "NoNewPrivs:\t1\n"},
		{name: "no bootstrap", wantErr: "Couldn't find valid bootstrap(s): [{root}/bootstrap]"},
		{name: "bootstrap not executable", script: "exit 0\n", mode: 0o644, wantErr: "permission denied (bootstrap is not executable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &frameLog{}
			s := newSupervisor(false, guestproto.NewWriter(l), slog.New(slog.NewTextHandler(io.Discard, nil)))
			root := bootstrapDir(t, tt.script, tt.mode)
			exited := make(chan exitSeen, 1)
			err := s.start(root, []string{"HEARTH_TEST_VAR=from-env", "PATH=/usr/bin:/bin"}, func(status string, code int) {
				exited <- exitSeen{status, code, len(l.frames(t))}
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(tt.wantErr, "{root}", root)) {
					t.Fatalf("start: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var x exitSeen
			select {
			case x = <-exited:
			case <-time.After(10 * time.Second):
				t.Fatal("onExit not called")
			}
			if x.status != tt.wantStatus || x.code != tt.wantCode {
				t.Errorf("exit %q %d, want %q %d", x.status, x.code, tt.wantStatus, tt.wantCode)
			}
			var out, errOut strings.Builder
			for _, f := range l.frames(t)[:x.frames] {
				switch decode[guestproto.Log](t, f).Stream {
				case "stdout":
					out.Write(f.Body)
				case "stderr":
					errOut.Write(f.Body)
				}
			}
			if want := strings.ReplaceAll(tt.wantOut, "{root}", root); out.String() != want || errOut.String() != tt.wantErrOut {
				t.Errorf("before the exit: stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), want, tt.wantErrOut)
			}
			if s.maxRSSKiB() != 0 {
				t.Errorf("maxRSSKiB of an ended runtime: %d", s.maxRSSKiB())
			}
		})
	}
}

// stop ends the runtime and every process it started; maxRSSKiB reads a
// live runtime's peak memory.
func TestSupervisorStop(t *testing.T) {
	l := &frameLog{}
	s := newSupervisor(false, guestproto.NewWriter(l), slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.stop() // nothing running: no effect
	root := bootstrapDir(t, "sleep 60 &\necho $!\nwait\n", 0o755)
	exited := make(chan string, 1)
	if err := s.start(root, []string{"PATH=/usr/bin:/bin"}, func(status string, _ int) { exited <- status }); err != nil {
		t.Fatal(err)
	}
	fs := l.waitFor(t, 1)
	if len(fs) == 0 {
		t.Fatal("no child pid printed")
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(fs[0].Body)))
	if err != nil {
		t.Fatalf("child pid %q: %v", fs[0].Body, err)
	}
	if rss := s.maxRSSKiB(); rss <= 0 {
		t.Errorf("maxRSSKiB of a running runtime: %d", rss)
	}
	s.stop()
	select {
	case status := <-exited:
		if status != "signal: killed" {
			t.Errorf("exit %q", status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onExit not called after stop")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			unix.Kill(child, unix.SIGKILL)
			t.Fatalf("the runtime's child %d outlived stop", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether pid runs (a zombie has ended).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
