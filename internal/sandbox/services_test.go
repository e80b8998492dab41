package sandbox

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/agent"
	"github.com/hearthdev/hearth/internal/guestproto"
)

// echoServices answers each connection's line with "echo:" and the line;
// held, when set, keeps every connection open until the test ends.
type echoServices struct {
	served atomic.Int32
	held   chan struct{}
}

func (e *echoServices) ServeGuestConn(c net.Conn) {
	e.served.Add(1)
	go func() {
		defer c.Close()
		if e.held != nil {
			<-e.held
			return
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "echo:"+line)
	}()
}

// A connection to the agent's services listener reaches the host's
// service through a stream the guest opens.
func TestServicesThroughTheAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostEnd, guestEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go agent.ServeStreamsWithServices(ctx, guestEnd, "127.0.0.1", ln, slog.New(slog.DiscardHandler))
	c := &conn{m: pipeMachine{host: hostEnd}, gone: make(chan struct{})}
	c.streams.guestOpens = true
	t.Cleanup(func() { close(c.gone); cancel(); hostEnd.Close(); guestEnd.Close() })
	sess, _, err := c.streamSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	svc := &echoServices{}
	go acceptGuestStreams(sess, svc)
	for i := range 3 {
		g, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = g.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(g, "hello\n"); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(g).ReadString('\n')
		g.Close()
		if err != nil || got != "echo:hello\n" {
			t.Fatalf("connection %d: %q %v", i, got, err)
		}
	}
	// A host stream still works on the same session.
	if _, err := c.dialGuest(ctx, ln.Addr().(*net.TCPAddr).Port); err != nil {
		t.Errorf("host dial on a session that serves the guest: %v", err)
	}
}

// rawServicesGuest is a guest that speaks yamux itself on a session whose
// host accepts its streams.
func rawServicesGuest(t *testing.T, svc GuestServices) *yamux.Session {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	t.Cleanup(func() { hostEnd.Close(); guestEnd.Close() })
	ready := make(chan *yamux.Session, 1)
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
		s, err := yamux.Server(struct {
			io.Reader
			io.Writer
			io.Closer
		}{br, guestEnd, guestEnd}, guestproto.YamuxConfig())
		if err == nil {
			ready <- s
		}
	}()
	c := &conn{m: pipeMachine{host: hostEnd}, gone: make(chan struct{})}
	c.streams.guestOpens = true
	t.Cleanup(func() { close(c.gone) })
	sess, _, err := c.streamSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go acceptGuestStreams(sess, svc)
	return <-ready
}

// closedSoon says whether the host ends st within d.
func closedSoon(st net.Conn, d time.Duration) bool {
	_ = st.SetReadDeadline(time.Now().Add(d))
	_, err := st.Read(make([]byte, 1))
	return err == io.EOF
}

// A guest's streams of another kind, silent ones, and those past the
// bound are closed by the host without reaching the service.
func TestServicesHostileGuest(t *testing.T) {
	old := servicesKindWait
	servicesKindWait = 300 * time.Millisecond
	t.Cleanup(func() { servicesKindWait = old })
	svc := &echoServices{held: make(chan struct{})}
	t.Cleanup(func() { close(svc.held) })
	g := rawServicesGuest(t, svc)

	wrong, err := g.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = wrong.Write([]byte{0x00})
	if !closedSoon(wrong, 2*time.Second) {
		t.Error("a stream of another kind stayed open")
	}
	silent, err := g.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if !closedSoon(silent, 2*time.Second) {
		t.Error("a stream that never said its kind stayed open")
	}
	if n := svc.served.Load(); n != 0 {
		t.Fatalf("the service got %d streams", n)
	}

	var open []*yamux.Stream
	for range guestproto.MaxGuestStreams + 4 {
		st, err := g.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = st.Write([]byte{guestproto.ServicesStreamKind})
		open = append(open, st)
		time.Sleep(20 * time.Millisecond) // under the guard's rate
	}
	closed := 0
	for _, st := range open {
		if closedSoon(st, 200*time.Millisecond) {
			closed++
		}
	}
	if closed != 4 || svc.served.Load() != guestproto.MaxGuestStreams {
		t.Errorf("%d streams past the bound closed, %d served; want 4 and %d", closed, svc.served.Load(), guestproto.MaxGuestStreams)
	}
}

// A guest allowed to open streams may not open them faster than the
// guard's rate: the session ends.
func TestServicesOpenFlood(t *testing.T) {
	syn := []byte{0, yamuxTypeWindow, 0, yamuxFlagSYN, 0, 0, 0, 2, 0, 0, 0, 0}
	for _, tt := range []struct {
		n     int
		allow bool
		fails bool
	}{{1, false, true}, {maxGuestOpensPerSecond, true, false}, {maxGuestOpensPerSecond + 1, true, true}} {
		var in []byte
		for i := range tt.n {
			f := append([]byte{}, syn...)
			f[7] = byte(2 * (i + 1))
			in = append(in, f...)
		}
		br := bytesReader(in)
		g := newGuardReader(&br, tt.allow)
		_, err := io.ReadAll(g)
		if (err != nil) != tt.fails {
			t.Errorf("%d opens, allowed %v: err %v", tt.n, tt.allow, err)
		}
	}
}

type bytesReader []byte

func (b *bytesReader) Read(p []byte) (int, error) {
	if len(*b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, *b)
	*b = (*b)[n:]
	return n, nil
}
