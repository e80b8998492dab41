package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// envPortForwardCmd exposes a TCP port inside an environment on the host's
// loopback: each connection to 127.0.0.1:LOCAL is a stream to GUEST in the
// guest (sandbox.Env.DialGuest). It holds the environment's channels while
// it runs: QEMU takes one client at a time on each, so other env commands
// on the same environment fail to attach until it ends.
func (c *CLI) envPortForwardCmd() *cobra.Command {
	var hf hostFlags
	cmd := &cobra.Command{
		Use:   "port-forward ENV LOCAL:GUEST",
		Short: "Forward 127.0.0.1:LOCAL to TCP port GUEST inside an environment, until interrupted",
		Long: `Listens on 127.0.0.1:LOCAL (0 picks a free port; the address is printed) and
connects each accepted connection to port GUEST on the guest's loopback, over
the environment's streams channel. A suspended environment is resumed first.
It runs until interrupted; the environment then runs on, detached.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local, guest, err := parseForward(args[1])
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(local)))
			if err != nil {
				return err
			}
			defer ln.Close()
			_, env, err := c.openEnv(cmd, hf, args[0])
			if err != nil {
				return err
			}
			if env.State() == sandbox.StateSuspended {
				if err := env.Resume(cmd.Context()); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.Stdout, "forwarding %s -> %s:%d\n", ln.Addr(), env.ID(), guest)
			err = forward(cmd.Context(), ln, env, guest, c.logger(cmd).Warn)
			if env.State() != sandbox.StateDead {
				if derr := env.Detach(); derr != nil && err == nil {
					err = derr
				}
			}
			return err
		},
	}
	hf.register(cmd)
	return cmd
}

// parseForward reads LOCAL:GUEST.
func parseForward(s string) (local, guest int, err error) {
	l, g, ok := strings.Cut(s, ":")
	local, lerr := strconv.Atoi(l)
	guest, gerr := strconv.Atoi(g)
	if !ok || lerr != nil || gerr != nil || local < 0 || local > 65535 || guest < 1 || guest > 65535 {
		return 0, 0, lambdaerr.InvalidParameter("forward %q: want LOCAL:GUEST, ports 0–65535 and 1–65535", s)
	}
	return local, guest, nil
}

// guestDialer is what forward needs of an environment.
type guestDialer interface {
	DialGuest(ctx context.Context, port int) (net.Conn, error)
}

// forward serves ln until ctx ends: each connection is copied both ways
// to a stream into the guest. A connection the guest refuses is closed.
func forward(ctx context.Context, ln net.Listener, env guestDialer, guest int, warn func(string, ...any)) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer conn.Close()
			g, err := env.DialGuest(ctx, guest)
			if err != nil {
				warn("port-forward: connection refused", "port", guest, "err", err)
				return
			}
			defer g.Close()
			stop := context.AfterFunc(ctx, func() {
				conn.Close()
				g.Close()
			})
			defer stop()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = io.Copy(g, conn)
				_ = g.Close() // half-close: the guest reads its end
			}()
			_, err = io.Copy(conn, g)
			if cw, ok := conn.(*net.TCPConn); ok {
				_ = cw.CloseWrite()
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				warn("port-forward: copy", "err", err)
			}
			<-done
		})
	}
}
