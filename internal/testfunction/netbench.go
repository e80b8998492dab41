package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"time"
)

// held is the connection "hold" keeps open across invocations (and a
// suspend) for "held" to use.
var held net.Conn

// benchAction measures the network from inside the guest, and keeps a
// connection for the tests of what a suspend does to it.
func benchAction(ctx context.Context, ev event) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	switch ev.Action {
	case "download":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ev.URL, nil)
		if err != nil {
			return failure(err)
		}
		t0 := time.Now()
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return failure(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return failure(err)
		}
		return map[string]any{"status": resp.StatusCode, "bytes": n, "ms": ms(time.Since(t0))}
	case "connects":
		var lat []float64
		for i := 0; i < max(ev.Count, 1); i++ {
			t0 := time.Now()
			c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", ev.Addr)
			if err != nil {
				return failure(err)
			}
			lat = append(lat, ms(time.Since(t0)))
			c.Close()
		}
		slices.Sort(lat)
		return map[string]any{"count": len(lat), "p50_ms": lat[(len(lat)-1)/2], "max_ms": lat[len(lat)-1]}
	case "hold":
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", ev.Addr)
		if err != nil {
			return failure(err)
		}
		if held != nil {
			held.Close()
		}
		held = c
		return map[string]any{"ok": true}
	default: // held
		if held == nil {
			return map[string]any{"error": "no connection held"}
		}
		_ = held.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := held.Write([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
		if err == nil {
			_, err = held.Read(make([]byte, 512))
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return map[string]any{"error": err.Error(), "errno": "TIMEOUT"}
			}
			return failure(err)
		}
		return map[string]any{"ok": true}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
