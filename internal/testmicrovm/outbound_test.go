package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// getCounter listens on loopback and sends the request line of each
// connection's request on lines; the first `drop` connections are closed
// unanswered (an error outbound must ignore).
func getCounter(t *testing.T, drop int) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lines := make(chan string, 100)
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n < drop {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				select {
				case lines <- req.Method + " " + req.URL.Path:
				default:
				}
			}()
		}
	}()
	return ln.Addr().String(), lines
}

func waitGets(t *testing.T, lines <-chan string, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := range n {
		select {
		case l := <-lines:
			if l != "GET /" {
				t.Errorf("request %q, want GET /", l)
			}
		case <-timeout:
			t.Fatalf("%d GETs, want %d", i, n)
		}
	}
}

// outbound GETs again and again on new connections, goes on after a
// failed round, and stops with its context.
func TestOutbound(t *testing.T) {
	addr, lines := getCounter(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { outbound(ctx, addr, 20*time.Millisecond); close(done) }()
	waitGets(t, lines, 3)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("outbound goes on after its context ended")
	}
	// Nothing more once it returned (a round in flight may still land).
	time.Sleep(100 * time.Millisecond)
	for len(lines) > 0 {
		<-lines
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(lines); n != 0 {
		t.Errorf("%d GETs after the stop", n)
	}
}

// A round to a peer that never answers ends at the interval.
func TestOutboundRoundBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	start := time.Now()
	getOnce(context.Background(), ln.Addr().String(), 100*time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a round took %v against a silent peer, want about 100ms", d)
	}
}

// The server runs the knob: OUTBOUND_TO set, it GETs there.
func TestServeOutbound(t *testing.T) {
	addr, lines := getCounter(t, 0)
	startServers(t, config{outboundTo: addr, outboundEvery: 20 * time.Millisecond})
	waitGets(t, lines, 2)
}
