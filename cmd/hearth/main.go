// Command hearth is Hearth's CLI; the commands live in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hearthdev/hearth/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli.CLI{}).Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
