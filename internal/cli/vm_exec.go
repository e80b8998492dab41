package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hearthdev/hearth/client/microvm"
)

func (c *CLI) vmExecCmd() *cobra.Command {
	var env []string
	var dir string
	cmd := &cobra.Command{
		Use:   "exec ID -- PROGRAM [ARGS...]",
		Short: "Run a program in a MicroVM, its output streamed here",
		Long: `Runs PROGRAM (a path, or a name looked up in PATH in the guest's root) in the MicroVM,
streams its stdout and stderr here, feeds it this command's stdin unless that
is a terminal, and exits with its status (128+N for a signal N). A suspended
MicroVM is resumed first, and counts as active while the program runs.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			s, err := cl.Exec(cmd.Context(), args[0], microvm.ExecRequest{Argv: args[1:], Env: env, Dir: dir})
			if err != nil {
				return vmError(err)
			}
			var stdin io.Reader
			if !isTerminal(c.Stdin) {
				stdin = c.Stdin
			}
			// ^C is the program's: it is sent on, and the session waits for
			// the program to end.
			stop := c.forwardInterrupts(cmd.Context(), s)
			defer stop()
			st, err := s.Attach(stdin, c.Stdout, c.Stderr)
			if err != nil {
				return vmError(err)
			}
			return exitStatus(args[1], st)
		},
	}
	cmd.Flags().StringArrayVar(&env, "env", nil, "KEY=VALUE for the program's environment (repeatable)")
	cmd.Flags().StringVar(&dir, "workdir", "", "the program's working directory in the guest")
	return cmd
}

// exitStatus is the CLI's exit for a program's status.
func exitStatus(prog string, st microvm.ExitStatus) error {
	code := st.Code
	if st.Signal != 0 {
		code = 128 + st.Signal
	}
	if code != 0 {
		return &exitError{code: code, silent: true, err: fmt.Errorf("%s exited with %d", prog, code)}
	}
	return nil
}

// forwardInterrupts sends SIGINT and SIGTERM received here to the
// session's process, until stop is called.
func (c *CLI) forwardInterrupts(ctx context.Context, s *microvm.Session) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				_ = s.Signal(sig.(syscall.Signal))
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func (c *CLI) vmShellCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shell ID [-- PROGRAM [ARGS...]]",
		Short: "Open a terminal in a MicroVM (/bin/sh unless a program is given)",
		Long: `Runs PROGRAM (/bin/sh -l by default) on a terminal in the MicroVM. When this
command's stdin is a terminal it goes raw, so every key (^C included) is the
program's; when it is not (a pipe, a script), the program still runs on a
terminal (of this command's stdout's size, or 24x80), reads that stdin as typed
input and gets end-of-input when it ends. Exits with the program's status.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			argv := args[1:]
			if len(argv) == 0 {
				argv = []string{"/bin/sh", "-l"}
			}
			cl, err := c.vmClient(cmd)
			if err != nil {
				return err
			}
			in, _ := c.Stdin.(*os.File)
			out, _ := c.Stdout.(*os.File)
			req := microvm.ExecRequest{Argv: argv, TTY: true, Rows: 24, Cols: 80, Env: []string{"TERM=" + termName(c.Getenv("TERM"))}}
			if out != nil && term.IsTerminal(int(out.Fd())) {
				if w, h, err := term.GetSize(int(out.Fd())); err == nil {
					req.Rows, req.Cols = h, w
				}
			}
			s, err := cl.Exec(cmd.Context(), args[0], req)
			if err != nil {
				return vmError(err)
			}
			// The local terminal goes raw: every key, ^C included, is the
			// remote program's, which echoes.
			if in != nil && term.IsTerminal(int(in.Fd())) {
				old, err := term.MakeRaw(int(in.Fd()))
				if err == nil {
					defer func() { _ = term.Restore(int(in.Fd()), old) }()
				}
			}
			if out != nil && term.IsTerminal(int(out.Fd())) {
				stop := resizeOnWinch(cmd.Context(), s, int(out.Fd()))
				defer stop()
			}
			st, err := s.Attach(c.Stdin, c.Stdout, c.Stderr)
			if err != nil {
				return vmError(err)
			}
			return exitStatus(argv[0], st)
		},
	}
	return cmd
}

func termName(t string) string {
	if t == "" {
		return "xterm-256color"
	}
	return t
}

// resizeOnWinch sends the terminal's size to the session on SIGWINCH.
func resizeOnWinch(ctx context.Context, s *microvm.Session, fd int) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				if w, h, err := term.GetSize(fd); err == nil {
					_ = s.Resize(h, w)
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
