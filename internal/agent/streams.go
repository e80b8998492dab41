package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Streams carry connections from the host to TCP ports in the guest, over
// their own virtio-serial port (guestproto.StreamsPortName): a yamux
// session whose streams each name a port; the agent dials it on loopback
// and copies both ways, yamux's windows holding back a side that does not
// read.

// streamHeaderWait bounds the wait for a stream's request.
const streamHeaderWait = 10 * time.Second

// streamDialWait bounds the connection to the guest port.
const streamDialWait = 5 * time.Second

// streamServer serves host streams on one channel, a session at a time.
type streamServer struct {
	ch     io.ReadWriter
	host   string // the address dialed: loopback
	log    *slog.Logger
	active atomic.Int32
	// exec is how processes of exec streams are made and who does the
	// work of files streams; its zero value (as tests have it) is the
	// agent's own user, in its root.
	exec execAs
	// services, when set, is told each session, for the streams the
	// guest opens to the host's services (services.go).
	services *servicesLink
}

// serve runs sessions until ctx ends: a session ends when the host goes
// away (a read of the port sees no host) or breaks the protocol, and the
// next begins with the next host's hello.
func (s *streamServer) serve(ctx context.Context) {
	for ctx.Err() == nil {
		if err := s.session(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("stream session ended", "err", err)
		}
	}
}

func (s *streamServer) session(ctx context.Context) error {
	rd := &hostReader{ctx: ctx, r: s.ch}
	br := bufio.NewReader(rd)
	nonce, err := guestproto.AwaitHello(br)
	if err != nil {
		return err
	}
	// From here on, the host leaving ends the session.
	rd.eofEnds.Store(true)
	if _, err := s.ch.Write(guestproto.StreamsOK(nonce)); err != nil {
		return err
	}
	if err := guestproto.AwaitGo(br, nonce); err != nil {
		return err
	}
	cfg := guestproto.YamuxConfig()
	// The host's keepalives are enough; the guest answers them.
	cfg.EnableKeepAlive = false
	sess, err := yamux.Server(struct {
		io.Reader
		io.Writer
		io.Closer
	}{br, s.ch, io.NopCloser(nil)}, cfg)
	if err != nil {
		return err
	}
	defer sess.Close()
	if s.services != nil {
		s.services.set(sess)
		defer s.services.clear(sess)
	}
	go func() {
		select {
		case <-ctx.Done():
			sess.Close()
		case <-sess.CloseChan():
		}
	}()
	for {
		st, err := sess.Accept()
		if err != nil {
			return err
		}
		go s.handle(ctx, st)
	}
}

// handle answers one stream's request and, if the port answers, copies
// both ways until both are done.
func (s *streamServer) handle(ctx context.Context, st net.Conn) {
	defer st.Close()
	if s.active.Add(1) > guestproto.MaxAgentStreams {
		s.active.Add(-1)
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamTooMany, "too many streams")
		return
	}
	defer s.active.Add(-1)
	_ = st.SetReadDeadline(time.Now().Add(streamHeaderWait))
	req := make([]byte, guestproto.StreamRequestLen)
	if _, err := io.ReadFull(st, req[:1]); err != nil {
		return
	}
	if req[0] == guestproto.StreamVersion2 {
		s.handleKind(ctx, st)
		return
	}
	if _, err := io.ReadFull(st, req[1:]); err != nil {
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	port, err := guestproto.DecodeStreamRequest(req)
	if err != nil {
		_ = guestproto.WriteStreamAnswer(st, guestproto.StreamBadRequest, err.Error())
		return
	}
	d := net.Dialer{Timeout: streamDialWait}
	tc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.host, strconv.Itoa(port)))
	if err != nil {
		status := guestproto.StreamFailed
		if errors.Is(err, syscall.ECONNREFUSED) {
			status = guestproto.StreamRefused
		}
		_ = guestproto.WriteStreamAnswer(st, status, err.Error())
		return
	}
	defer tc.Close()
	if err := guestproto.WriteStreamAnswer(st, guestproto.StreamOK, ""); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(st, tc)
		// The guest side is done sending: the host reads its end.
		_ = st.Close()
	}()
	_, _ = io.Copy(tc, st)
	if cw, ok := tc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	<-done
}

// hostReader reads the port. Before a session's hello, a read that finds
// no host (0 bytes) means wait; once a session began, it means the host
// left, and ends the session.
type hostReader struct {
	ctx     context.Context
	r       io.Reader
	eofEnds atomic.Bool
}

// hostPollMax bounds the wait between reads of a port with no host: the
// port cannot be waited on (it polls readable while the host is away).
const hostPollMax = 20 * time.Millisecond

func (h *hostReader) Read(b []byte) (int, error) {
	wait := time.Millisecond
	for {
		n, err := h.r.Read(b)
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if h.eofEnds.Load() {
			return 0, io.EOF
		}
		select {
		case <-h.ctx.Done():
			return 0, h.ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, hostPollMax)
	}
}

// serveStreamsPort serves the streams port of a guest until ctx ends; a
// VMM without the port (an older one) leaves the guest without streams.
func serveStreamsPort(ctx context.Context, log *slog.Logger, reaper *supervisor, services *servicesLink) {
	p, err := openPort(ctx, guestproto.StreamsPortName)
	if err != nil {
		log.Warn("no streams port; connections into the guest are off", "err", err)
		return
	}
	defer p.Close()
	// Exec and files streams run as the function's user, in its root when
	// it has one.
	ex := execAs{cred: functionCredential(), root: mountedRoot, reaper: reaper}
	(&streamServer{ch: p.f, host: "127.0.0.1", log: log, exec: ex, services: services}).serve(ctx)
}

// ServeStreams serves host streams on ch until ctx ends, dialing ports on
// host; the guest's agent serves its streams port so, and tests a pipe.
func ServeStreams(ctx context.Context, ch io.ReadWriter, host string, log *slog.Logger) {
	(&streamServer{ch: ch, host: host, log: log}).serve(ctx)
}

// ServeStreamsWithServices is ServeStreams that also carries the
// connections services accepts to the host as services streams, as the
// agent does for Init.ServicesPort; for tests.
func ServeStreamsWithServices(ctx context.Context, ch io.ReadWriter, host string, services net.Listener, log *slog.Logger) {
	link := newServicesLink()
	go serveServices(ctx, link, services)
	(&streamServer{ch: ch, host: host, log: log, services: link}).serve(ctx)
}
