package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// subcommand runs one of the exec tests' commands and returns the exit
// status: the image has no shell or coreutils, only this binary.
func subcommand(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch name {
	case "echo-args", "stderr":
		w := stdout
		if name == "stderr" {
			w = stderr
		}
		for _, a := range args {
			fmt.Fprintln(w, a)
		}
		return 0
	case "env":
		for _, kv := range os.Environ() {
			fmt.Fprintln(stdout, kv)
		}
		return 0
	case "cat":
		if _, err := io.Copy(stdout, stdin); err != nil {
			fmt.Fprintln(stderr, "cat:", err)
			return 1
		}
		return 0
	case "sleep":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "usage: sleep DURATION")
			return 2
		}
		d, err := parseDuration(args[0])
		if err != nil {
			fmt.Fprintln(stderr, "sleep:", err)
			return 2
		}
		time.Sleep(d)
		return 0
	case "exit":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "usage: exit N")
			return 2
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 || n > 255 {
			fmt.Fprintln(stderr, "exit: want 0 to 255")
			return 2
		}
		return n
	case "signals":
		return signals(stdout)
	case "tty":
		return ttySizes(stdin, stdout)
	}
	fmt.Fprintf(stderr, "testmicrovm: unknown subcommand %q\n", name)
	return 2
}

// parseDuration takes a Go duration ("1.5s") or plain seconds ("2").
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration ≥ 0", s)
	}
	return d, nil
}

// signals shows which signal reached the process: the exec tests' Signal.
func signals(stdout io.Writer) int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	fmt.Fprintln(stdout, "ready")
	s := (<-c).(syscall.Signal)
	fmt.Fprintln(stdout, "got", unix.SignalName(s))
	return 128 + int(s)
}

// ttySize is one line of the tty subcommand.
type ttySize struct {
	TTY  bool `json:"tty"`
	Rows int  `json:"rows"`
	Cols int  `json:"cols"`
}

// ttySizes reports stdin's terminal size, and again on each SIGWINCH, so
// that a test can see a PTY and its resizes from inside.
func ttySizes(stdin io.Reader, stdout io.Writer) int {
	f, _ := stdin.(*os.File)
	report := func() {
		var s ttySize
		if f != nil {
			if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
				s = ttySize{TTY: true, Rows: int(ws.Row), Cols: int(ws.Col)}
			}
		}
		b, _ := json.Marshal(s)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(done)
	}()
	report()
	for {
		select {
		case <-winch:
			report()
		case <-done:
			return 0
		}
	}
}
