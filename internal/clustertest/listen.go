package clustertest

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ListenInside listens on addr inside h's network namespace (a socket
// stays in the namespace it was made in): a service there on h's own
// loopback, as on h's machine (an image registry only h reaches).
func (h *Host) ListenInside(network, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.Netns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{nil, fmt.Errorf("entering %s: %w", h.Netns, err)}
			return
		}
		l, err := net.Listen(network, addr)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// This thread stays in h's namespace: it dies with the
			// goroutine (no UnlockOSThread).
			if l != nil {
				l.Close()
			}
			done <- result{nil, fmt.Errorf("leaving %s: %w", h.Netns, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{l, err}
	}()
	r := <-done
	return r.l, r.err
}
