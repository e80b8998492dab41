// Command hearth-agent is PID 1 in every Hearth microVM: it prepares the
// guest, talks to the host over the agent channel and serves the Lambda
// Runtime API to the function. It must be a static binary (CGO_ENABLED=0).
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/agent"
)

func main() {
	start := time.Now()
	// PID 1 writes to the console; keep it quiet unless asked.
	level := slog.LevelWarn
	if os.Getenv("HEARTH_AGENT_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	err := agent.Run(context.Background(), agent.Config{
		System: os.Getpid() == 1,
		Start:  start,
		Log:    log,
	})
	if err != nil {
		log.Error("hearth-agent stopped", "err", err)
	}
	if os.Getpid() == 1 {
		// PID 1 must not exit: the kernel would panic. Reboot instead,
		// which ends the VM cleanly: Hearth runs QEMU with -no-reboot.
		unix.Sync()
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
	if err != nil {
		os.Exit(1)
	}
}
