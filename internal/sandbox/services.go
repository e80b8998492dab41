package sandbox

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// Connections out of an environment to the host's services (its S3
// endpoint): the agent listens on the guest's loopback (Function.
// ServicesPort) and opens a stream for each connection, on the streams
// session that the host starts as soon as the agent is up (after a boot's
// hello, after a resume). The host takes streams of one kind only, at
// most guestproto.MaxGuestStreams at once, reads their first byte by a
// deadline, and hands each to Config.GuestServices as a net.Conn; the
// guest gets no route to any address of the host.

// GuestServices serves connections from guests; it owns each conn.
type GuestServices interface {
	ServeGuestConn(c net.Conn)
}

// servicesKindWait bounds the wait for a guest stream's kind byte (a
// variable for tests).
var servicesKindWait = 10 * time.Second

// servesGuests says whether the environment's guest reaches the host's
// services.
func (e *Env) servesGuests() bool { return e.fn.ServicesPort > 0 && e.cfg.GuestServices != nil }

// startServices starts the streams session of c, if the guest reaches the
// host's services, and serves the streams the guest opens on it until the
// session ends (the VMM stops, is suspended).
func (e *Env) startServices(c *conn) {
	if !e.servesGuests() {
		return
	}
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-c.gone:
				cancel()
			case <-ctx.Done():
			}
		}()
		sess, _, err := c.streamSession(ctx)
		if err != nil {
			e.log.Warn("no streams session: the guest cannot reach the host's services", "err", err)
			return
		}
		acceptGuestStreams(sess, e.cfg.GuestServices)
	}()
}

// acceptGuestStreams serves the streams the guest opens on sess until it
// ends.
func acceptGuestStreams(sess *yamux.Session, svc GuestServices) {
	sem := make(chan struct{}, guestproto.MaxGuestStreams)
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			st.Close()
			continue
		}
		go func() {
			release := func() { <-sem }
			_ = st.SetReadDeadline(time.Now().Add(servicesKindWait))
			var kind [1]byte
			if _, err := io.ReadFull(st, kind[:]); err != nil || kind[0] != guestproto.ServicesStreamKind {
				st.Close()
				release()
				return
			}
			_ = st.SetReadDeadline(time.Time{})
			svc.ServeGuestConn(&servicesConn{Stream: st, release: release})
		}()
	}
}

// servicesConn is a guest's stream to a service; closing it frees its
// slot.
type servicesConn struct {
	*yamux.Stream
	once    sync.Once
	release func()
}

func (s *servicesConn) Close() error {
	err := s.Stream.Close()
	s.once.Do(s.release)
	return err
}
