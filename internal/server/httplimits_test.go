package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testLimits are the daemon's limits made short enough to wait for.
func testLimits() httpLimits {
	return httpLimits{ReadHeader: 300 * time.Millisecond, Read: 500 * time.Millisecond, Idle: 400 * time.Millisecond,
		MaxHeaderBytes: 4 << 10, MaxConns: 2, Write: 400 * time.Millisecond}
}

// serveLimited serves h with l on loopback and returns its address.
func serveLimited(t *testing.T, l httpLimits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := l.server(h)
	go func() { _ = srv.Serve(l.listen(ln)) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin says whether the server closes c within d (what it sent
// before is read and dropped).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestHTTPLimits(t *testing.T) {
	l := testLimits()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"headers sent too slowly: the connection is closed", func(t *testing.T) {
			c := dial(t, serveLimited(t, l, ok))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
			if !closedWithin(c, 10*l.ReadHeader) {
				t.Error("a request whose headers never end holds its connection")
			}
		}},
		{"a body sent too slowly: its read fails", func(t *testing.T) {
			readErr := make(chan error, 1)
			addr := serveLimited(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				readErr <- err
			}))
			c := dial(t, addr)
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
			select {
			case err := <-readErr:
				if err == nil {
					t.Error("a body that stopped half-way was read whole")
				}
			case <-time.After(10 * l.Read):
				t.Error("a body that stopped half-way holds its request")
			}
		}},
		{"an idle connection is closed", func(t *testing.T) {
			c := dial(t, serveLimited(t, l, ok))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %v", resp, err)
			}
			if !closedWithin(c, 10*l.Idle) {
				t.Error("an idle kept-alive connection is kept")
			}
		}},
		{"headers over the bound: 431", func(t *testing.T) {
			c := dial(t, serveLimited(t, l, ok))
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2*l.MaxHeaderBytes)+"\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%v %v, want 431", resp, err)
			}
		}},
		{"a handler that runs past the read bound after reading its body is not cancelled", func(t *testing.T) {
			long := l
			long.Write = 10 * time.Second // the invocation's answer may take its time
			addr := serveLimited(t, long, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				time.Sleep(3 * l.Read) // a long invocation
				if err := r.Context().Err(); err != nil {
					http.Error(w, "cancelled", 500)
					return
				}
				_, _ = io.WriteString(w, "done")
			}))
			for _, req := range []string{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"} {
				c := dial(t, addr)
				_, _ = io.WriteString(c, req)
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("%q: %v", req, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != "done" {
					t.Errorf("%q: %d %q", req, resp.StatusCode, b)
				}
			}
		}},
		{"an answer to a client that never reads is given up", func(t *testing.T) {
			writeErr := make(chan error, 1)
			addr := serveLimited(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				chunk := make([]byte, 1<<20)
				for range 256 {
					if _, err := w.Write(chunk); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}))
			c := dial(t, addr)
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			select {
			case err := <-writeErr:
				if err == nil {
					t.Error("256 MB written to a client that reads nothing")
				}
			case <-time.After(20 * l.Write):
				t.Error("the handler is still writing to a client that reads nothing")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// A listener holds at most MaxConns connections: the next waits until one
// ends.
func TestLimitListener(t *testing.T) {
	l := testLimits()
	addr := serveLimited(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	// Hold every slot with a connection that sends nothing yet.
	held := make([]net.Conn, l.MaxConns)
	for i := range held {
		held[i] = dial(t, addr)
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
	c := dial(t, addr)                 // in the kernel's backlog, not accepted
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(l.ReadHeader / 2))
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		t.Fatal("served past the connection limit")
	}
	held[0].Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("not served once a slot was free: %v %v", resp, err)
	}
}
