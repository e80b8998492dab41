package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Connections into an environment: the host opens a stream to a TCP port
// in the guest over the VMM's streams port, a yamux session apart from the
// agent's control channel (see guestproto.StreamsPortName). A session is
// made on the first DialGuest of a connection to the VMM and ends with it:
// a suspend closes the streams open then, a resume or a clone starts a
// fresh session on the next dial.

// Errors of DialGuest.
var (
	// ErrNothingListening is a guest port nothing listens on; it also
	// matches syscall.ECONNREFUSED.
	ErrNothingListening = errors.New("nothing listens on the guest port")
	// ErrNotRunning is an environment that is not running: the caller
	// resumes a suspended one first (a sandbox does not resume on its own).
	ErrNotRunning = errors.New("environment is not running")
	// ErrNoStreams is a VMM without a streams port (the fake one, or an
	// older Hearth's).
	ErrNoStreams = errors.New("the environment's VMM has no streams port")
)

// streamHandshakeWait bounds the session's handshake and each stream's
// answer, when the caller's context has no sooner deadline.
const streamHandshakeWait = 10 * time.Second

// streamsDialer is a machine with a streams port (qemu's).
type streamsDialer interface {
	DialStreams(ctx context.Context) (net.Conn, error)
}

// streamLink is one connection's stream session, made on demand.
type streamLink struct {
	mu   sync.Mutex
	sess *yamux.Session
	sem  chan struct{} // a slot per open stream, guestproto.MaxStreams in all
	// guestOpens lets the guest open streams to the host's services
	// (services.go); set before the session is made.
	guestOpens bool
	// filesStall, when set, replaces filesStall (tests).
	filesStall time.Duration
}

// DialGuest opens a connection to a TCP port on the guest's loopback. The
// environment must be running (ready or busy); a suspended one is the
// caller's to resume. A port nothing listens on answers at once with an
// error matching ErrNothingListening and syscall.ECONNREFUSED.
func (e *Env) DialGuest(ctx context.Context, port int) (net.Conn, error) {
	e.mu.Lock()
	state, c := e.state, e.conn
	e.mu.Unlock()
	if (state != StateReady && state != StateBusy) || c == nil {
		return nil, fmt.Errorf("%s: %w (%s)", e.id, ErrNotRunning, state)
	}
	return c.dialGuest(ctx, port)
}

func (c *conn) dialGuest(ctx context.Context, port int) (net.Conn, error) {
	req, err := guestproto.EncodeStreamRequest(port)
	if err != nil {
		return nil, err
	}
	gc, status, msg, err := c.askForStream(ctx, req)
	switch {
	case err != nil:
		return nil, fmt.Errorf("guest port %d: %w", port, err)
	case status == guestproto.StreamOK:
		return gc, nil
	case status == guestproto.StreamRefused:
		return nil, fmt.Errorf("guest port %d: %w: %w", port, ErrNothingListening, syscall.ECONNREFUSED)
	default:
		return nil, fmt.Errorf("guest port %d: agent answered %d: %s", port, status, printable(msg, 255))
	}
}

// openStream opens a stream with request req; any answer but OK is an
// error.
func (c *conn) openStream(ctx context.Context, req []byte) (*guestConn, error) {
	gc, status, msg, err := c.askForStream(ctx, req)
	if err == nil && status != guestproto.StreamOK {
		err = fmt.Errorf("agent answered %d: %s", status, printable(msg, 255))
	}
	return gc, err
}

// askForStream opens a stream within the session's limit, sends req and reads
// the agent's answer by its deadline. Only an OK answer leaves the stream
// open (and its slot taken, until the returned conn is closed).
func (c *conn) askForStream(ctx context.Context, req []byte) (*guestConn, guestproto.StreamStatus, string, error) {
	sess, sem, err := c.streamSession(ctx)
	if err != nil {
		return nil, 0, "", err
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, "", ctx.Err()
	}
	release := func() { <-sem }
	st, err := sess.OpenStream()
	if err != nil {
		release()
		return nil, 0, "", fmt.Errorf("open stream: %w", err)
	}
	status, msg, err := askStream(ctx, st, req)
	if err != nil || status != guestproto.StreamOK {
		st.Close()
		release()
		return nil, status, msg, err
	}
	return &guestConn{Stream: st, release: release}, status, msg, nil
}

// askStream sends a stream's request and reads the agent's answer by
// deadline.
func askStream(ctx context.Context, st *yamux.Stream, req []byte) (guestproto.StreamStatus, string, error) {
	_ = st.SetDeadline(handshakeDeadline(ctx))
	defer st.SetDeadline(time.Time{})
	if _, err := st.Write(req); err != nil {
		return 0, "", err
	}
	return guestproto.ReadStreamAnswer(st)
}

func handshakeDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(streamHandshakeWait)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// streamSession returns the connection's session, making it if need be.
func (c *conn) streamSession(ctx context.Context) (*yamux.Session, chan struct{}, error) {
	l := &c.streams
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil && !l.sess.IsClosed() {
		return l.sess, l.sem, nil
	}
	select {
	case <-c.gone:
		return nil, nil, fmt.Errorf("%w: the agent channel ended", ErrNotRunning)
	default:
	}
	sd, ok := c.m.(streamsDialer)
	if !ok {
		return nil, nil, ErrNoStreams
	}
	raw, err := sd.DialStreams(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoStreams, err)
	}
	sess, err := startStreamSession(ctx, raw, l.guestOpens)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	go func() {
		select {
		case <-c.gone:
		case <-sess.CloseChan():
		}
		sess.Close()
		raw.Close()
	}()
	l.sess, l.sem = sess, make(chan struct{}, guestproto.MaxStreams)
	return sess, l.sem, nil
}

// startStreamSession greets the agent on raw and starts the yamux client.
// The hello is repeated until answered: what an earlier session left in
// the guest (a host that left, a snapshot restored) may eat the first.
func startStreamSession(ctx context.Context, raw net.Conn, guestOpens bool) (*yamux.Session, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	_ = raw.SetDeadline(handshakeDeadline(ctx))
	stop := make(chan struct{})
	helloDone := make(chan struct{})
	go func() {
		defer close(helloDone)
		t := time.NewTicker(guestproto.StreamHelloEvery)
		defer t.Stop()
		for {
			if _, err := raw.Write(guestproto.StreamsHello(nonce)); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	err := guestproto.AwaitOK(byteReader{raw}, nonce)
	close(stop)
	<-helloDone
	if err != nil {
		return nil, fmt.Errorf("streams handshake: %w", err)
	}
	if _, err := raw.Write(guestproto.StreamsGo(nonce)); err != nil {
		return nil, fmt.Errorf("streams handshake: %w", err)
	}
	_ = raw.SetDeadline(time.Time{})
	// What the guest sends passes a guard first (streams_guard.go).
	return yamux.Client(struct {
		io.Reader
		io.Writer
		io.Closer
	}{newGuardReader(raw, guestOpens), raw, raw}, guestproto.YamuxConfig())
}

// byteReader reads one byte at a time, so nothing past the handshake is
// read before yamux reads it.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var p [1]byte
	for {
		n, err := b.r.Read(p[:])
		if n == 1 {
			return p[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// guestConn is a stream into the guest; closing it frees its slot.
type guestConn struct {
	*yamux.Stream
	once    sync.Once
	release func()
}

func (g *guestConn) Close() error {
	err := g.Stream.Close()
	g.once.Do(g.release)
	return err
}
