package agent

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// The host's services (its S3 endpoint) reach a function through the
// agent: it listens on the guest's loopback (Init.ServicesPort) and
// carries each connection to the host as a stream it opens on the streams
// session, of the one kind the host accepts. The guest gets no route to
// the host: a function without a network reaches its buckets so, and one
// with a network reaches nothing more of the host than this.

// servicesSessionWait bounds how long a connection waits for the host's
// streams session (just after a boot or a resume it may not be up yet).
const servicesSessionWait = 5 * time.Second

// servicesLink holds the streams session in progress, if any.
type servicesLink struct {
	mu      sync.Mutex
	sess    *yamux.Session
	changed chan struct{} // closed and replaced at each change
}

func newServicesLink() *servicesLink { return &servicesLink{changed: make(chan struct{})} }

func (l *servicesLink) set(s *yamux.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sess = s
	close(l.changed)
	l.changed = make(chan struct{})
}

// clear forgets s, if it is still the session held.
func (l *servicesLink) clear(s *yamux.Session) {
	l.mu.Lock()
	held := l.sess == s
	l.mu.Unlock()
	if held {
		l.set(nil)
	}
}

// session returns the open session, waiting up to wait for one.
func (l *servicesLink) session(ctx context.Context, wait time.Duration) *yamux.Session {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		s, changed := l.sess, l.changed
		l.mu.Unlock()
		if s != nil && !s.IsClosed() {
			return s
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// listenServices opens the services listener on the guest's loopback,
// before the function starts, so that its first connection finds it.
func listenServices(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// serveServices serves ln until ctx ends and carries each connection to
// the host, at most guestproto.MaxGuestStreams at once (the host's own
// bound); a connection beyond, or with no session, is closed.
func serveServices(ctx context.Context, link *servicesLink, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var active atomic.Int32
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if active.Add(1) > guestproto.MaxGuestStreams {
			active.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer active.Add(-1)
			carryToHost(ctx, link, c)
		}()
	}
}

// carryToHost opens a services stream for c and copies both ways.
func carryToHost(ctx context.Context, link *servicesLink, c net.Conn) {
	defer c.Close()
	sess := link.session(ctx, servicesSessionWait)
	if sess == nil {
		return
	}
	st, err := sess.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	if _, err := st.Write([]byte{guestproto.ServicesStreamKind}); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, st)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(st, c)
	// The guest side is done sending: the host reads its end.
	_ = st.Close()
	<-done
}
