package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netAction is the network actions' answer: failures are part of it, with
// the errno, so a test can tell a refusal from a timeout.
func netAction(ctx context.Context, ev event) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	switch ev.Action {
	case "fetch":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ev.URL, nil)
		if err != nil {
			return failure(err)
		}
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return failure(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return failure(err)
		}
		return map[string]any{"status": resp.StatusCode, "body": string(b)}
	case "resolve":
		addrs, err := net.DefaultResolver.LookupHost(ctx, ev.Name)
		if err != nil {
			return failure(err)
		}
		return map[string]any{"addrs": addrs}
	case "dial":
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ev.Addr)
		if err != nil {
			return failure(err)
		}
		c.Close()
		return map[string]any{"ok": true}
	default: // netinfo
		host, _ := os.Hostname()
		var addrs []string
		if as, err := net.InterfaceAddrs(); err == nil {
			for _, a := range as {
				addrs = append(addrs, a.String())
			}
		}
		resolv, _ := os.ReadFile("/etc/resolv.conf")
		return map[string]any{"hostname": host, "addrs": addrs, "resolv": string(resolv)}
	}
}

func failure(err error) map[string]any {
	out := map[string]any{"error": err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		out["errno"] = unix.ErrnoName(errno)
	} else if errors.Is(err, context.DeadlineExceeded) {
		out["errno"] = "TIMEOUT"
	}
	return out
}
