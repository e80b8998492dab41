// Package cli is the hearth command line as a library: every command writes
// to the CLI's Stdout and Stderr, so tests run it in-process and read what a
// user would see.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// Exit codes scripts can rely on.
const (
	ExitOK            = 0
	ExitFunctionError = 1 // the function failed: its error object is on stdout
	ExitBadInput      = 2 // the request was refused before anything ran
	ExitHostError     = 3 // Hearth or the host could not do it
)

// CLI holds the command line's streams.
type CLI struct {
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
	// Getenv reads the environment; os.Getenv when nil.
	Getenv func(string) string
}

// exitError carries an exit code for an error already reported.
type exitError struct {
	code int
	err  error
	// silent: the code says it all (a program's own status, env exec).
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run runs the command line and returns the exit code.
func (c *CLI) Run(ctx context.Context, args []string) int {
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Stdin == nil {
		c.Stdin = os.Stdin
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	root := c.root()
	root.SetArgs(args)
	root.SetOut(c.Stdout)
	root.SetErr(c.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.code != ExitFunctionError && !xe.silent {
			fmt.Fprintf(c.Stderr, "hearth: %v\n", xe.err)
		}
		return xe.code
	}
	if le, ok := lambdaerr.As(err); ok && le.Status < 500 {
		fmt.Fprintf(c.Stderr, "hearth: %v\n", err)
		return ExitBadInput
	}
	fmt.Fprintf(c.Stderr, "hearth: %v\n", err)
	return ExitHostError
}

func (c *CLI) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "hearth",
		Short:         "Hearth runs Lambda functions, each in its own microVM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitBadInput, err: err}
	})
	root.PersistentFlags().Bool("debug", false, "log Hearth's own steps to stderr")
	root.PersistentFlags().String("data-dir", "", "where environments, templates and images are kept (default $HEARTH_DATA_DIR or ~/.local/share/hearth)")
	root.PersistentFlags().String("endpoint", "", "the daemon's API (default $HEARTH_ENDPOINT or http://127.0.0.1:9000)")
	root.AddCommand(c.runCmd(), c.benchCmd(), c.envCmd(), c.serveCmd(), c.fnCmd(), c.invokeCmd(), c.logsCmd(), c.keysCmd(), c.urlCmd(), c.layerCmd(), c.imageCmd(), c.costCmd(), c.topCmd(), c.vmCmd(), c.queueCmd(), c.bucketCmd(), c.clusterCmd())
	return root
}

func (c *CLI) logger(cmd *cobra.Command) *slog.Logger {
	level := slog.LevelWarn
	if d, _ := cmd.Flags().GetBool("debug"); d {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level}))
}
