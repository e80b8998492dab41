package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestSubcommand(t *testing.T) {
	for _, tc := range []struct {
		name               string
		args               []string
		stdin              string
		status             int
		stdout, stderrPart string
	}{
		{"echo-args", []string{"echo-args", "a", "b c", ""}, "", 0, "a\nb c\n\n", ""},
		{"stderr", []string{"stderr", "oops"}, "", 0, "", "oops\n"},
		{"cat", []string{"cat"}, "line 1\nline 2", 0, "line 1\nline 2", ""},
		{"exit", []string{"exit", "7"}, "", 7, "", ""},
		{"exit out of range", []string{"exit", "256"}, "", 2, "", "want 0 to 255"},
		{"sleep", []string{"sleep", "10ms"}, "", 0, "", ""},
		{"sleep in seconds", []string{"sleep", "0.01"}, "", 0, "", ""},
		{"bad sleep", []string{"sleep", "soon"}, "", 2, "", "want a duration"},
		{"unknown", []string{"frobnicate"}, "", 2, "", "unknown subcommand"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			got := subcommand(tc.args[0], tc.args[1:], strings.NewReader(tc.stdin), &out, &errb)
			if got != tc.status {
				t.Errorf("status %d, want %d (stderr %q)", got, tc.status, errb.String())
			}
			if out.String() != tc.stdout {
				t.Errorf("stdout %q, want %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.stderrPart) || (tc.stderrPart == "" && errb.Len() > 0) {
				t.Errorf("stderr %q, want it to hold %q", errb.String(), tc.stderrPart)
			}
		})
	}
}

// TestBinarySubcommands runs the built binary, as exec in the guest does:
// the signal and tty subcommands need a process of their own.
func TestBinarySubcommands(t *testing.T) {
	bin := t.TempDir() + "/testmicrovm"
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}

	t.Run("signals", func(t *testing.T) {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			cmd := exec.Command(bin, "signals")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal only once it listens for signals, which "ready" says.
			br := bufio.NewReader(stdout)
			first, err := br.ReadString('\n')
			if err != nil || first != "ready\n" {
				t.Fatalf("first line %q, %v", first, err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			out := first + string(rest)
			err = cmd.Wait()
			want := "ready\ngot " + map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig] + "\n"
			if out != want || cmd.ProcessState.ExitCode() != 128+int(sig) {
				t.Errorf("%v: stdout %q exit %d (%v), want %q and %d", sig, out, cmd.ProcessState.ExitCode(), err, want, 128+int(sig))
			}
		}
	})

	t.Run("tty without a terminal", func(t *testing.T) {
		out, err := exec.Command(bin, "tty").Output() // stdin is /dev/null: ends at once
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != `{"tty":false,"rows":0,"cols":0}`+"\n" {
			t.Errorf("tty: %q", out)
		}
	})

	t.Run("echo-args and exit", func(t *testing.T) {
		out, err := exec.Command(bin, "echo-args", "x", "y").Output()
		if err != nil || string(out) != "x\ny\n" {
			t.Errorf("echo-args: %q, %v", out, err)
		}
		err = exec.Command(bin, "exit", "3").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exit 3: %v", err)
		}
	})
}
