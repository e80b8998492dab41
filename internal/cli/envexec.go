package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// envExecCmd runs a process inside an environment (sandbox.Env.Exec): as
// the function's user, in the function's root. Like port-forward, it holds
// the environment's channels while it runs.
func (c *CLI) envExecCmd() *cobra.Command {
	var hf hostFlags
	var env []string
	var dir string
	cmd := &cobra.Command{
		Use:   "exec ENV -- PROGRAM [ARGS...]",
		Short: "Run a program inside an environment as the function's user",
		Long: `Runs PROGRAM (a path, or a name looked up in PATH in the guest's root) inside ENV as the
function's user, streams its stdout and stderr here, feeds it this command's
stdin unless that is a terminal, and exits with its status (128+N for a
signal N). A suspended environment is resumed first; it runs on, detached,
afterwards.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, e, err := c.openEnv(cmd, hf, args[0])
			if err != nil {
				return err
			}
			defer func() {
				if e.State() != sandbox.StateDead {
					_ = e.Detach()
				}
			}()
			if e.State() == sandbox.StateSuspended {
				if err := e.Resume(cmd.Context()); err != nil {
					return err
				}
			}
			st, err := c.runExec(cmd.Context(), e, sandbox.ExecRequest{Argv: args[1:], Env: env, Dir: dir})
			if err != nil {
				return err
			}
			code := st.Code
			if st.Signal != 0 {
				code = 128 + st.Signal
			}
			if code != 0 {
				return &exitError{code: code, silent: true, err: fmt.Errorf("%s exited with %d", args[1], code)}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&env, "env", nil, "KEY=VALUE for the program's environment (repeatable)")
	cmd.Flags().StringVar(&dir, "workdir", "", "the program's working directory in the guest (default /)")
	hf.register(cmd)
	return cmd
}

// execer is what runExec needs of an environment.
type execer interface {
	Exec(ctx context.Context, req sandbox.ExecRequest) (*sandbox.ExecSession, error)
}

// runExec runs req, copying the CLI's streams, and returns its status.
func (c *CLI) runExec(ctx context.Context, e execer, req sandbox.ExecRequest) (sandbox.ExitStatus, error) {
	s, err := e.Exec(ctx, req)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	defer s.Close()
	if isTerminal(c.Stdin) {
		_ = s.Stdin.Close()
	} else {
		go func() {
			_, _ = io.Copy(s.Stdin, c.Stdin)
			_ = s.Stdin.Close()
		}()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(c.Stdout, s.Stdout) }()
	go func() { defer wg.Done(); _, _ = io.Copy(c.Stderr, s.Stderr) }()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	wg.Wait()
	return s.Wait()
}

// isTerminal says whether r is a character device (a terminal): exec then
// gives the program an empty stdin rather than wait on the keyboard.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
