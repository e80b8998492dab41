package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/agent"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// pipeMachine is a machine whose streams port is one end of a pipe whose
// other end the real agent's stream server serves, dialing this host's
// loopback as if it were the guest's.
type pipeMachine struct {
	vmm.Machine
	host net.Conn
}

func (p pipeMachine) DialStreams(context.Context) (net.Conn, error) { return p.host, nil }

func pipeConn(t *testing.T) *conn {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go agent.ServeStreams(ctx, guestEnd, "127.0.0.1", slog.New(slog.DiscardHandler))
	c := &conn{m: pipeMachine{host: hostEnd}, gone: make(chan struct{})}
	t.Cleanup(func() {
		close(c.gone)
		cancel()
		hostEnd.Close()
		guestEnd.Close()
	})
	return c
}

func listenPort(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestStreamHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer srv.Close()
	c := pipeConn(t)
	port := listenPort(t, srv.Listener)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return c.dialGuest(ctx, port)
	}}}
	for i := range 3 {
		resp, err := client.Get(fmt.Sprintf("http://guest/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("hello /%d", i); string(b) != want {
			t.Fatalf("body %q, want %q", b, want)
		}
	}
}

func TestStreamRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listenPort(t, ln)
	ln.Close()
	c := pipeConn(t)
	_, err = c.dialGuest(context.Background(), port)
	if !errors.Is(err, ErrNothingListening) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want ErrNothingListening and ECONNREFUSED", err)
	}
	if _, err := c.dialGuest(context.Background(), 0); err == nil {
		t.Fatal("port 0 accepted")
	}
}

// The agent checks each stream's request itself: the host is not the only
// possible writer of the port's bytes in its view.
func TestStreamBadRequest(t *testing.T) {
	c := pipeConn(t)
	sess, _, err := c.streamSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range [][]byte{{2, 0, 80}, {1, 0, 0}} {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		status, msg, err := askStream(context.Background(), st, req)
		st.Close()
		if err != nil || status != guestproto.StreamBadRequest {
			t.Errorf("request %v: status %d %q, err %v; want bad request", req, status, msg, err)
		}
	}
}

// The host opens at most MaxStreams streams at once; the agent refuses more
// from a host that would not count.
func TestStreamBounded(t *testing.T) {
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
			// As a server does, it closes on the client's end.
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	port := listenPort(t, ln)
	c := pipeConn(t)
	var open []net.Conn
	for range guestproto.MaxStreams {
		g, err := c.dialGuest(context.Background(), port)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.dialGuest(ctx, port); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stream %d: err = %v, want a wait for a slot", guestproto.MaxStreams+1, err)
	}
	// Past the host's count, the agent's own.
	sess, _, _ := c.streamSession(context.Background())
	req, _ := guestproto.EncodeStreamRequest(port)
	var raw []net.Conn
	for i := guestproto.MaxStreams; ; i++ {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, st)
		status, _, err := askStream(context.Background(), st, req)
		if err != nil {
			t.Fatal(err)
		}
		if status == guestproto.StreamTooMany {
			if i != guestproto.MaxAgentStreams {
				t.Fatalf("agent refused stream %d, want %d", i+1, guestproto.MaxAgentStreams+1)
			}
			break
		}
		if i > guestproto.MaxAgentStreams {
			t.Fatalf("agent took stream %d", i+1)
		}
	}
	for _, st := range raw {
		st.Close()
	}
	// The agent frees a slot once the guest's side of the stream ended too.
	open[0].Close()
	var g net.Conn
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		g, err = c.dialGuest(context.Background(), port)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	g.Close()
	for _, g := range open[1:] {
		g.Close()
	}
}

// A guest server that does not read holds the host's writer back: what is
// in flight stays within yamux's window and the sockets' buffers.
func TestStreamBackPressure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c := pipeConn(t)
	g, err := c.dialGuest(context.Background(), listenPort(t, ln))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	slow := <-accepted
	defer slow.Close()
	const total = 64 << 20
	var written atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for written.Load() < total {
			n, err := g.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	if n := written.Load(); n >= 32<<20 {
		t.Fatalf("%d bytes written to a guest port nobody reads", n)
	}
	// Reading releases it.
	got, err := io.CopyN(io.Discard, slow, 40<<20)
	if err != nil || got != 40<<20 {
		t.Fatalf("read %d: %v", got, err)
	}
}

func TestAwaitLine(t *testing.T) {
	nonce := "0123456789abcdef"
	for _, in := range []string{
		"HEARTH-STREAMS-OK " + nonce + "\n",
		"junkHEARTH-STREAMS-OK fedcba9876543210\nHEARTH-STREAMS-OK " + nonce + "\nmore",
		"HEARTH-STREAMS-HEARTH-STREAMS-OK " + nonce + "\n",
	} {
		if err := guestproto.AwaitOK(bufio.NewReader(strings.NewReader(in)), nonce); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	junk := strings.Repeat("x", guestproto.MaxStreamsJunk+1)
	if err := guestproto.AwaitOK(bufio.NewReader(strings.NewReader(junk)), nonce); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("junk: err = %v, want a bound", err)
	}
}

// hostileStreamsGuest completes the session's handshake on guestEnd, as an
// agent would, then does what act does.
func hostileStreamsGuest(t *testing.T, act func(io.ReadWriter)) *conn {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	t.Cleanup(func() { hostEnd.Close(); guestEnd.Close() })
	go func() {
		br := bufio.NewReader(guestEnd)
		nonce, err := guestproto.AwaitHello(br)
		if err != nil {
			return
		}
		if _, err := guestEnd.Write(guestproto.StreamsOK(nonce)); err != nil {
			return
		}
		if guestproto.AwaitGo(br, nonce) != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, br) }()
		act(guestEnd)
	}()
	c := &conn{m: pipeMachine{host: hostEnd}, gone: make(chan struct{})}
	t.Cleanup(func() { close(c.gone) })
	return c
}

// A guest that opens streams to the host or floods it with pings ends its
// session: yamux alone would keep a goroutine for each ping it answers to
// a guest that does not read, and a stream for each the guest opens.
func TestStreamGuard(t *testing.T) {
	ping := func(n int) func(io.ReadWriter) {
		return func(w io.ReadWriter) {
			hdr := []byte{0, yamuxTypePing, 0, yamuxFlagSYN, 0, 0, 0, 0, 0, 0, 0, 1}
			for range n {
				if _, err := w.Write(hdr); err != nil {
					return
				}
			}
		}
	}
	for _, tt := range []struct {
		name   string
		act    func(io.ReadWriter)
		closed bool
	}{
		{"opens a stream", func(w io.ReadWriter) {
			_, _ = w.Write([]byte{0, yamuxTypeWindow, 0, yamuxFlagSYN, 0, 0, 0, 2, 0, 0, 0, 0})
		}, true},
		{"ping flood", ping(10 * maxGuestPingsPerSecond), true},
		{"a few pings", ping(3), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := hostileStreamsGuest(t, tt.act)
			sess, _, err := c.streamSession(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-sess.CloseChan():
				if !tt.closed {
					t.Fatal("session closed")
				}
			case <-time.After(time.Second):
				if tt.closed {
					t.Fatal("session still open")
				}
			}
		})
	}
}

// swapChannel is the guest's end of the streams port across host sessions:
// its pipe is replaced as a new host process connects.
type swapChannel struct {
	mu  sync.Mutex
	cur net.Conn
}

func (s *swapChannel) get() net.Conn  { s.mu.Lock(); defer s.mu.Unlock(); return s.cur }
func (s *swapChannel) set(c net.Conn) { s.mu.Lock(); s.cur = c; s.mu.Unlock() }
func (s *swapChannel) Read(b []byte) (int, error) {
	n, err := s.get().Read(b)
	if errors.Is(err, io.ErrClosedPipe) {
		err = io.EOF // as the port reads with no host
	}
	return n, err
}
func (s *swapChannel) Write(b []byte) (int, error) { return s.get().Write(b) }

// stopOnClose ends a session's reads without closing the pipe under it, as
// a snapshot restored leaves the guest's side of a session in mid-flight.
type stopOnClose struct{ net.Conn }

func (s stopOnClose) Close() error { return s.Conn.SetReadDeadline(time.Now()) }

// A host that leaves (the port reads nothing) or a new session that finds
// the guest in the middle of the old one (a restore) each get a fresh
// session from the agent.
func TestStreamNewSession(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer srv.Close()
	port := listenPort(t, srv.Listener)
	get := func(c *conn) {
		t.Helper()
		g, err := c.dialGuest(context.Background(), port)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if _, err := io.WriteString(g, "GET / HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(g), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
	}
	hostEnd, guestEnd := net.Pipe()
	ch := &swapChannel{cur: guestEnd}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go agent.ServeStreams(ctx, ch, "127.0.0.1", slog.New(slog.DiscardHandler))

	session := func(raw net.Conn) *conn {
		c := &conn{m: pipeMachine{host: raw}, gone: make(chan struct{})}
		get(c)
		close(c.gone)
		return c
	}
	// A restore: the same pipe, the guest's session never told.
	session(stopOnClose{hostEnd})
	time.Sleep(50 * time.Millisecond)
	_ = hostEnd.SetReadDeadline(time.Time{})
	session(stopOnClose{hostEnd})
	// A host that leaves: its end closes, and another connects.
	hostEnd.Close()
	host2, guest2 := net.Pipe()
	defer host2.Close()
	ch.set(guest2)
	session(host2)
}
