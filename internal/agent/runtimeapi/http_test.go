package runtimeapi

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// The API's own HTTP, over a raw connection, as runtimes other than Go's
// speak it: curl (the Python and Node runtime clients) sends Expect:
// 100-continue before a body and keeps the connection for the next call.
func TestHTTPContinueAndKeepAlive(t *testing.T) {
	f, srv := newTestServer(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	status := func() string {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read status: %v", err)
		}
		return strings.TrimSpace(line)
	}
	// skip reads an answer's fields and body (by its Content-Length).
	skip := func() string {
		n := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
				for _, d := range v {
					n = n*10 + int(d-'0')
				}
			}
		}
		b := make([]byte, n)
		if _, err := br.Read(b); n > 0 && err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	body := `{"ok":true}`
	if _, err := c.Write([]byte("POST " + prefix + "/invocation/req-1/response HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != "HTTP/1.1 100 Continue" {
		t.Fatalf("before the body: %q, want 100 Continue", got)
	}
	br.ReadString('\n') // the empty line after 100
	if _, err := c.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != "HTTP/1.1 202 Accepted" {
		t.Fatalf("response post: %q", got)
	}
	skip()
	if f.responses["req-1"] != body {
		t.Errorf("response recorded %q, want %q", f.responses["req-1"], body)
	}
	// The same connection serves the next call.
	if _, err := c.Write([]byte("GET " + prefix + "/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := status(); got != "HTTP/1.1 200 OK" {
		t.Fatalf("next on a kept connection: %q", got)
	}
	if got := skip(); got != `{"k":"v"}` {
		t.Errorf("next's event %q", got)
	}
}

// A request the server cannot read is answered 400 and its connection
// closed.
func TestHTTPMalformedRequest(t *testing.T) {
	tests := []string{
		"GARBAGE\r\n\r\n",
		"GET /x HTTP/2.0\r\n\r\n",
		"POST " + prefix + "/init/error HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST " + prefix + "/init/error HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET " + prefix + "/invocation/next HTTP/1.1\r\nno colon\r\n\r\n",
		"GET " + prefix + "/invocation/next HTTP/1.1\r\nX: " + strings.Repeat("a", maxLineBytes+1) + "\r\n\r\n",
	}
	_, srv := newTestServer(t)
	for _, req := range tests {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Errorf("%.40q: got %q (%v), want 400", req, line, err)
		}
	}
}

// A field's value with a line break (a client context or trace id carried
// from an invocation) stays one field.
func TestResponseFieldsStayOneLine(t *testing.T) {
	var b strings.Builder
	bw := bufio.NewWriter(&b)
	w := &responseWriter{}
	w.header.Set("Lambda-Runtime-Client-Context", "a\r\nX-Injected: 1")
	if err := writeResponse(bw, w, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\r\nX-Injected") {
		t.Fatalf("a value's line break made a field of its own:\n%q", b.String())
	}
}

// FuzzReadRequest: whatever a runtime sends, reading a request and its
// whole body ends in a request or an error, never a panic or a hang, and
// a body is never longer than what was sent.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/r/response HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
		"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\n",
		"POST /r HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out strings.Builder
		r, err := readRequest(bufio.NewReader(strings.NewReader(string(in))), bufio.NewWriter(&out))
		if err != nil {
			return
		}
		var body []byte
		buf := make([]byte, 512)
		for len(body) <= len(in) {
			n, err := r.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		if len(body) > len(in) {
			t.Fatalf("a body of %d bytes from %d bytes sent", len(body), len(in))
		}
	})
}
