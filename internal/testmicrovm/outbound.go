package main

import (
	"context"
	"io"
	"net"
	"time"
)

// outbound connects to addr every interval until ctx ends, sends a small
// HTTP GET on each connection and reads the answer (up to 64 KB), errors
// ignored: traffic of the guest's own, which the host must count as
// activity. Each round is a new connection, so the other end can count
// them.
func outbound(ctx context.Context, addr string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		getOnce(ctx, addr, every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// getOnce is one round, bounded by timeout.
func getOnce(ctx context.Context, addr string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}
