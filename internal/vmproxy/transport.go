package vmproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// maxGuestHeaderBytes bounds a guest's response headers: the guest is not
// trusted.
const maxGuestHeaderBytes = 1 << 20

// transport sends a request to its target's guest port, over HTTP/1.1 or,
// for a target that wants it, h2c (HTTP/2 with prior knowledge).
//
// Connections are not kept alive between requests: a guest connection is
// a stream the Manager counts as activity while it is open, so an idle
// pooled one would keep a MicroVM from ever being idle, and a suspend
// closes the streams anyway. Opening one is a yamux stream and a loopback
// connect in the guest: cheap next to the request.
type transport struct {
	h1, h2 *http.Transport
}

func newTransport(b Backends, dialTimeout time.Duration) *transport {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		tg := targetOf(ctx)
		if tg == nil {
			return nil, errors.New("vmproxy: no target in the request's context")
		}
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		if tg.client != nil {
			defer context.AfterFunc(tg.client, cancel)()
		}
		c, err := b.Dial(ctx, tg.id, tg.port)
		if err != nil {
			tg.setDialErr(err)
			return nil, err
		}
		return c, nil
	}
	mk := func(p *http.Protocols) *http.Transport {
		return &http.Transport{
			DialContext:            dial,
			Protocols:              p,
			DisableKeepAlives:      true,
			DisableCompression:     true, // the client's Accept-Encoding, and bytes, as they are
			MaxResponseHeaderBytes: maxGuestHeaderBytes,
		}
	}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	return &transport{h1: mk(&p1), h2: mk(&p2)}
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tg := targetOf(r.Context()); tg != nil && tg.h2 {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

// dialStatus is the answer to a failed dial, or 0 when err is not one.
func dialStatus(tg *target, err error) (int, string) {
	where := fmt.Sprintf("port %d of MicroVM %s", tg.port, tg.id)
	switch {
	case errors.Is(err, microvm.ErrNotFound):
		return http.StatusNotFound, fmt.Sprintf("Not Found: %v", err)
	case errors.Is(err, microvm.ErrConflict):
		return http.StatusConflict, fmt.Sprintf("Conflict: %v", err)
	case errors.Is(err, sandbox.ErrNothingListening), errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "Bad Gateway: nothing listens on " + where
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "Gateway Timeout: " + where + " could not be reached in time"
	case tg.lastDialErr() != nil:
		return http.StatusBadGateway, fmt.Sprintf("Bad Gateway: %s: %v", where, err)
	}
	return 0, ""
}

func unescapePath(p string) string {
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}
