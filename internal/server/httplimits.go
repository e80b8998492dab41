package server

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// httpLimits bound what a caller, who may be hostile, can hold of one of
// the daemon's HTTP servers (the API, function URLs over HTTP, over HTTPS).
type httpLimits struct {
	// ReadHeader bounds reading a request's headers (a slowloris).
	ReadHeader time.Duration
	// Read bounds reading a whole request, its body included. net/http
	// lifts it once the body is read, so it does not cut a long
	// invocation (a test holds it to that).
	Read time.Duration
	// Idle bounds a kept-alive connection between requests.
	Idle time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConns bounds the connections a listener holds open at once; past
	// it, new ones wait in the kernel's backlog until one ends.
	MaxConns int
	// Write bounds a request from its start to the end of its answer,
	// unless its handler sets a deadline of its own (a function URL's
	// stream, per chunk; its buffered answer, once the function is done).
	// It is per request, not http.Server's WriteTimeout, which would be
	// the same for every request and cut a legitimately long invocation.
	Write time.Duration
}

// defaultHTTPLimits are the daemon's limits.
func defaultHTTPLimits() httpLimits {
	return httpLimits{
		ReadHeader: 10 * time.Second,
		// The largest request is the API's 70 MB (a 50 MB zip, base64 in
		// JSON): 10 minutes is that at about 1 Mbit/s, a slow link's
		// upload. A function URL's body is at most 6 MB.
		Read:           10 * time.Minute,
		Idle:           2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		// Well under the daemon's file limit (Go raises the soft limit to
		// the hard one), and far above the invocations in flight.
		MaxConns: 1024,
		// Lambda's longest timeout (15 min), plus an init and a cold
		// boot's wait, plus writing the answer.
		Write: 20 * time.Minute,
	}
}

// server is an http.Server for h with these limits; serve it on
// l.listen(ln).
func (l httpLimits) server(h http.Handler) *http.Server {
	return &http.Server{Handler: l.handler(h), ReadHeaderTimeout: l.ReadHeader, ReadTimeout: l.Read,
		IdleTimeout: l.Idle, MaxHeaderBytes: l.MaxHeaderBytes}
}

// handler sets the per-request write deadline around h. It wraps nothing,
// so that h keeps the ResponseWriter's Flush and its ResponseController.
func (l httpLimits) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(l.Write))
		h.ServeHTTP(w, r)
	})
}

// listen bounds the connections ln holds open at once.
func (l httpLimits) listen(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, l.MaxConns), closed: make(chan struct{})}
}

// limitListener accepts a connection only when one of its slots is free;
// the connection's Close frees it.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, free: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn frees its listener's slot when it is closed.
type limitConn struct {
	net.Conn
	free func()
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}

// CloseWrite lets net/http half-close the connection after refusing a
// request whose body it did not read (a 413), so the client reads the
// answer before the connection ends.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
