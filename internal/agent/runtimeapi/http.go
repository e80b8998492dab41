package runtimeapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Runtime API speaks just enough HTTP/1.1 for a runtime on the same
// machine: requests with a Content-Length or a chunked body (with
// trailers, which streaming runtimes use to report a failure), keep-alive,
// Expect: 100-continue, and answers the handler writes whole. It does not
// use net/http: that package (and the TLS, HTTP/2 and x509 code it brings)
// was half of the agent's binary, which is copied into every initramfs
// and unpacked at every cold boot.

// Limits on what a runtime may send besides a body.
const (
	maxLineBytes   = 16 << 10
	maxHeaderCount = 100
)

// header holds a request's fields by lower-case name; a repeated field
// keeps its last value (the API reads none that may repeat).
type header map[string]string

// Get returns the value of the named field, whatever its case.
func (h header) Get(name string) string { return h[strings.ToLower(name)] }

// request is one request from the runtime.
type request struct {
	ctx    context.Context
	method string
	path   string
	proto  string
	id     string // the {id} of the route
	// bodyless: the request came with no body to read.
	bodyless bool
	Header   header
	Trailer  header // filled once a chunked body is read to its end
	Body     io.Reader
}

func (r *request) Context() context.Context { return r.ctx }

// PathValue returns the route's {id}, the only wildcard the API has.
func (r *request) PathValue(name string) string {
	if name != "id" {
		return ""
	}
	return r.id
}

// responseHeader keeps the fields of an answer in the order they were set.
type responseHeader struct{ fields [][2]string }

func (h *responseHeader) Set(name, value string) {
	for i := range h.fields {
		if strings.EqualFold(h.fields[i][0], name) {
			h.fields[i][1] = value
			return
		}
	}
	h.fields = append(h.fields, [2]string{name, value})
}

// responseWriter collects an answer; the server sends it when the handler
// returns, with its length.
type responseWriter struct {
	header responseHeader
	status int
	body   bytes.Buffer
}

func (w *responseWriter) Header() *responseHeader { return &w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.WriteHeader(statusOK)
	return w.body.Write(b)
}

// Statuses the API answers with.
const (
	statusOK                    = 200
	statusAccepted              = 202
	statusBadRequest            = 400
	statusForbidden             = 403
	statusNotFound              = 404
	statusMethodNotAllowed      = 405
	statusRequestEntityTooLarge = 413
	statusInternalServerError   = 500
	statusNotImplemented        = 501
)

var statusText = map[int]string{
	statusOK: "OK", statusAccepted: "Accepted", statusBadRequest: "Bad Request", statusForbidden: "Forbidden",
	statusNotFound: "Not Found", statusMethodNotAllowed: "Method Not Allowed",
	statusRequestEntityTooLarge: "Request Entity Too Large", statusInternalServerError: "Internal Server Error",
	statusNotImplemented: "Not Implemented",
}

// httpServer accepts connections and serves each in its own goroutine.
type httpServer struct {
	handle func(w *responseWriter, r *request)

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

// errServerClosed is what serve returns after close.
var errServerClosed = errors.New("runtime api: server closed")

func (s *httpServer) serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errServerClosed
	}
	s.ln = ln
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return errServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.serveConn(c)
		}()
	}
}

// close stops accepting and closes every connection, which ends the
// handlers waiting on their request's context.
func (s *httpServer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	return err
}

func (s *httpServer) serveConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 32<<10)
	bw := bufio.NewWriterSize(c, 32<<10)
	for {
		r, err := readRequest(br, bw)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				writeRaw(bw, statusBadRequest, err.Error())
			}
			return
		}
		r.ctx = context.Background()
		w := &responseWriter{}
		if r.bodyless {
			// A request that may wait (a /next with no event yet) has no
			// body: a read on the connection meanwhile can only be the
			// runtime's next request or its hang-up, which ends the wait
			// as net/http's request context does.
			handleWatching(c, br, r, func() { s.handle(w, r) })
		} else {
			s.handle(w, r)
		}
		// What the handler left of the body is read and dropped, so that
		// the next request starts where it should.
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		if err := writeResponse(bw, w, r.proto == "HTTP/1.0"); err != nil {
			return
		}
		if keepAlive := r.proto != "HTTP/1.0" && !strings.EqualFold(r.Header.Get("Connection"), "close"); !keepAlive {
			return
		}
	}
}

// handleWatching runs handle with r's context cancelled when the runtime
// hangs up: the body is read in full first (it is small for every route
// that waits), then the connection is watched for its end.
func handleWatching(c net.Conn, br *bufio.Reader, r *request, handle func()) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	r.ctx = ctx
	done := make(chan struct{})
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		if _, err := br.Peek(1); err != nil {
			select {
			case <-done:
			default:
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					cancel()
				}
			}
		}
	}()
	handle()
	close(done)
	// Wake the watcher, then let the next request be read as usual.
	_ = c.SetReadDeadline(time.Now())
	<-watching
	_ = c.SetReadDeadline(time.Time{})
}

// readRequest reads a request line and its fields, and sets up its body.
// It answers Expect: 100-continue itself.
func readRequest(br *bufio.Reader, bw *bufio.Writer) (*request, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || (proto != "HTTP/1.1" && proto != "HTTP/1.0") || !strings.HasPrefix(target, "/") {
		return nil, fmt.Errorf("malformed request line %q", line)
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	r := &request{method: method, path: target, proto: proto, Trailer: header{}}
	if r.Header, err = readFields(br); err != nil {
		return nil, err
	}
	te := strings.ToLower(r.Header.Get("Transfer-Encoding"))
	switch {
	case te == "chunked":
		r.Body = &chunkedReader{br: br, trailer: r.Trailer}
	case te != "":
		return nil, fmt.Errorf("unsupported transfer encoding %q", te)
	case r.Header.Get("Content-Length") != "":
		n, err := strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad content length %q", r.Header.Get("Content-Length"))
		}
		r.Body, r.bodyless = io.LimitReader(br, n), n == 0
	default:
		r.Body, r.bodyless = strings.NewReader(""), true
	}
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") && proto == "HTTP/1.1" {
		if _, err := bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return nil, err
		}
		if err := bw.Flush(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// readLine reads one CRLF- (or LF-) terminated line of at most
// maxLineBytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, isPrefix, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, frag...)
		if len(b) > maxLineBytes {
			return "", errors.New("line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// readFields reads header (or trailer) fields up to the empty line.
func readFields(br *bufio.Reader) (header, error) {
	h := header{}
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			return h, nil
		}
		if len(h) >= maxHeaderCount {
			return nil, errors.New("too many header fields")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("malformed header field %q", line)
		}
		h[strings.ToLower(name)] = strings.TrimSpace(value)
	}
}

// chunkedReader reads a chunked body, and its trailers at the end.
type chunkedReader struct {
	br      *bufio.Reader
	trailer header
	left    int64 // of the current chunk
	err     error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		line, err := readLine(c.br)
		if err != nil {
			c.err = unexpected(err)
			return 0, c.err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 {
			c.err = fmt.Errorf("bad chunk size %q", line)
			return 0, c.err
		}
		if n == 0 {
			t, err := readFields(c.br)
			if err != nil {
				c.err = err
				return 0, c.err
			}
			for k, v := range t {
				c.trailer[k] = v
			}
			c.err = io.EOF
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if err != nil {
		c.err = unexpected(err)
		return n, c.err
	}
	if c.left == 0 {
		// The CRLF after the chunk's data.
		if line, err := readLine(c.br); err != nil || line != "" {
			c.err = errors.New("malformed chunk end")
			return n, c.err
		}
	}
	return n, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func writeResponse(bw *bufio.Writer, w *responseWriter, closing bool) error {
	status := w.status
	if status == 0 {
		status = statusOK
	}
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, statusText[status])
	for _, f := range w.header.fields {
		fmt.Fprintf(bw, "%s: %s\r\n", fieldText(f[0]), fieldText(f[1]))
	}
	fmt.Fprintf(bw, "Content-Length: %d\r\n", w.body.Len())
	if closing {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if _, err := bw.Write(w.body.Bytes()); err != nil {
		return err
	}
	return bw.Flush()
}

// fieldText makes a field's name or value one line, as net/http does: a
// value carried from an invocation (its client context, its trace id)
// must not add fields of its own to the runtime's answer.
func fieldText(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
}

// writeRaw answers a request that could not be read, and the connection
// then closes.
func writeRaw(bw *bufio.Writer, status int, msg string) {
	w := &responseWriter{status: status}
	w.header.Set("Content-Type", "text/plain")
	w.body.WriteString(msg)
	_ = writeResponse(bw, w, true)
}
