package vmproxy

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// stallWriter moves the client's write deadline forward before each write
// and flush: a stream may last as long as it keeps moving, but a client
// that stops reading is dropped after the stall timeout instead of holding
// its guest connection (and its MicroVM awake) forever. It unwraps for
// http.ResponseController, and a hijacked connection (a WebSocket) keeps
// the same rule.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func newStallWriter(w http.ResponseWriter, stall time.Duration) *stallWriter {
	return &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: stall}
}

func (s *stallWriter) extend() {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
}

func (s *stallWriter) WriteHeader(code int) {
	s.extend()
	s.ResponseWriter.WriteHeader(code)
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.extend()
	return s.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls.
func (s *stallWriter) FlushError() error {
	s.extend()
	return s.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack hands over the connection without the server's deadlines, with
// writes bounded by the stall timeout.
func (s *stallWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := s.rc.Hijack()
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	sc := &stallConn{Conn: c, stall: s.stall}
	// The 101 response is written through brw: bound it too.
	brw.Writer.Reset(sc)
	return sc, brw, nil
}

// stallConn bounds each write by the stall timeout.
type stallConn struct {
	net.Conn
	stall time.Duration
}

func (c *stallConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
	return c.Conn.Write(p)
}
