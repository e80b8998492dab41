package funcurl

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/store"
)

func TestRoute(t *testing.T) {
	tests := []struct {
		name       string
		host       string
		target     string
		wantOK     bool
		wantID     string
		wantPath   string
		wantDomain string
	}{
		{"host with a port", "abc123.lambda-url.localhost:9000", "/a/b?x=1", true, "abc123", "/a/b", "abc123.lambda-url.localhost"},
		{"host without a port", "abc123.lambda-url.us-east-1.on.aws", "/", true, "abc123", "/", "abc123.lambda-url.us-east-1.on.aws"},
		{"host keeps the escaped path", "abc123.lambda-url.localhost", "/a%2Fb/c", true, "abc123", "/a%2Fb/c", "abc123.lambda-url.localhost"},
		{"host wins over a /fn-url/ path", "abc123.lambda-url.localhost", "/fn-url/other/x", true, "abc123", "/fn-url/other/x", "abc123.lambda-url.localhost"},
		{"path routing", "127.0.0.1:9000", "/fn-url/abc123/a/b?x=1", true, "abc123", "/a/b", "127.0.0.1"},
		{"path routing, no trailing slash", "localhost:9000", "/fn-url/abc123", true, "abc123", "/", "localhost"},
		{"path routing, trailing slash", "localhost", "/fn-url/abc123/", true, "abc123", "/", "localhost"},
		{"path routing keeps the escaped path", "localhost", "/fn-url/abc123/a%2Fb", true, "abc123", "/a%2Fb", "localhost"},
		{"path routing on an IPv6 host", "[::1]:9000", "/fn-url/abc123/x", true, "abc123", "/x", "::1"},
		{"no id in the path", "localhost:9000", "/fn-url/", false, "", "", ""},
		{"empty id in the path", "localhost:9000", "/fn-url//x", false, "", "", ""},
		{"plain host, plain path", "localhost:9000", "/", false, "", "", ""},
		{"prefix without its slash", "localhost:9000", "/fn-urlabc/x", false, "", "", ""},
		{"host with no id before .lambda-url.", ".lambda-url.localhost:9000", "/x", false, "", "", ""},
		{"lambda-url without a dot before it", "lambda-url.localhost", "/x", false, "", "", ""},
		{"other subdomain", "abc123.lambda.localhost", "/x", false, "", "", ""},
		{"empty host", "", "/x", false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			r.Host = tt.host
			id, path, domain, ok := route(r)
			if ok != tt.wantOK {
				t.Fatalf("route(%s%s) ok = %v, want %v (id %q path %q)", tt.host, tt.target, ok, tt.wantOK, id, path)
			}
			if !ok {
				return
			}
			if id != tt.wantID || path != tt.wantPath || domain != tt.wantDomain {
				t.Errorf("route(%s%s) = id %q path %q domain %q, want %q %q %q",
					tt.host, tt.target, id, path, domain, tt.wantID, tt.wantPath, tt.wantDomain)
			}
		})
	}
}

// oneURL is a store of one function URL, whatever its id.
type oneURL store.URLConfig

func (u oneURL) URLConfigByID(context.Context, string) (store.URLConfig, error) {
	return store.URLConfig(u), nil
}

// stubInvoker answers every invocation with invoke; it counts them.
type stubInvoker struct {
	invoke func(req invoke.Request) (*invoke.Result, error)
	calls  atomic.Int32
}

func (s *stubInvoker) Invoke(_ context.Context, req invoke.Request) (*invoke.Result, error) {
	s.calls.Add(1)
	return s.invoke(req)
}

func echoInvoker() *stubInvoker {
	return &stubInvoker{invoke: func(req invoke.Request) (*invoke.Result, error) {
		return &invoke.Result{RequestID: "r-1", Payload: []byte(`{"statusCode":200,"body":"ok"}`)}, nil
	}}
}

type testKeys map[string]string

func (k testKeys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

// countingBody counts what is read from it.
type countingBody struct {
	r io.Reader
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}
func (b *countingBody) Close() error { return nil }

// signedRequest is a request signed as the SDK signs one for a function
// URL, with a body of size bytes of x.
func signedRequest(t *testing.T, size int) *http.Request {
	t.Helper()
	body := bytes.Repeat([]byte("x"), size)
	r := httptest.NewRequest("POST", "http://abc.lambda-url.localhost:9080/", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
		t.Fatal(err)
	}
	return r
}

// A body is bounded before anything reads it, and a caller of an AWS_IAM
// URL that does not sign makes the daemon read none of it.
func TestHandlerBoundsTheBody(t *testing.T) {
	huge := func() io.Reader { return io.LimitReader(neverEnding('x'), 64<<20) }
	tests := []struct {
		name       string
		auth       string
		req        func(t *testing.T) *http.Request
		body       io.Reader // replaces the request's body; nil keeps it
		length     int64     // with body: the declared length, -1 for none
		wantStatus int
		maxRead    int64 // the most of the body that may be read
		wantCalls  int32
	}{
		{name: "AWS_IAM unsigned", auth: "AWS_IAM", req: func(*testing.T) *http.Request {
			return httptest.NewRequest("POST", "http://abc.lambda-url.localhost:9080/", nil)
		},
			body: huge(), length: -1, wantStatus: 403, maxRead: 0},
		{name: "AWS_IAM unsigned, declared small", auth: "AWS_IAM", req: func(*testing.T) *http.Request {
			return httptest.NewRequest("POST", "http://abc.lambda-url.localhost:9080/", nil)
		},
			body: strings.NewReader("hello"), length: 5, wantStatus: 403, maxRead: 0},
		{name: "AWS_IAM signed, declared over 6 MB", auth: "AWS_IAM", req: func(t *testing.T) *http.Request { return signedRequest(t, 10) },
			body: huge(), length: 64 << 20, wantStatus: 413, maxRead: 0},
		{name: "AWS_IAM signed, a chunked body that never ends", auth: "AWS_IAM", req: func(t *testing.T) *http.Request { return signedRequest(t, 10) },
			body: huge(), length: -1, wantStatus: 413, maxRead: MaxPayload + 64<<10},
		{name: "AWS_IAM signed, 6 MB exactly: read, and then refused as an event over 6 MB", auth: "AWS_IAM", req: func(t *testing.T) *http.Request { return signedRequest(t, MaxPayload) },
			wantStatus: 413, maxRead: MaxPayload},
		{name: "AWS_IAM signed", auth: "AWS_IAM", req: func(t *testing.T) *http.Request { return signedRequest(t, 1000) },
			wantStatus: 200, maxRead: 1000, wantCalls: 1},
		{name: "NONE, declared over 6 MB", auth: "NONE", req: func(*testing.T) *http.Request {
			return httptest.NewRequest("POST", "http://abc.lambda-url.localhost:9080/", nil)
		},
			body: huge(), length: 64 << 20, wantStatus: 413, maxRead: 0},
		{name: "NONE, a chunked body over 6 MB", auth: "NONE", req: func(*testing.T) *http.Request {
			return httptest.NewRequest("POST", "http://abc.lambda-url.localhost:9080/", nil)
		},
			body: huge(), length: -1, wantStatus: 413, maxRead: MaxPayload + 64<<10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := echoInvoker()
			h := New(Config{URLs: oneURL{Function: "f", AuthType: tt.auth, InvokeMode: "BUFFERED"}, Invoker: inv,
				Verifier: api.NewVerifier(testKeys{"AKIDTEST": "secret"}), Log: quietLog()})
			r := tt.req(t)
			body := &countingBody{r: r.Body}
			if tt.body != nil {
				body.r, r.ContentLength = tt.body, tt.length
			}
			r.Body = body
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body.String())
			}
			if n := body.n.Load(); n > tt.maxRead {
				t.Errorf("%d bytes of the body read, want at most %d", n, tt.maxRead)
			}
			if c := inv.calls.Load(); c != tt.wantCalls {
				t.Errorf("%d invocations, want %d", c, tt.wantCalls)
			}
		})
	}
}

// neverEnding is an endless body.
type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The daemon's own failure reaches the caller as a 500 with a request id
// to quote, never the error's text (host paths, a guest's console).
func TestHandlerHidesInternalErrors(t *testing.T) {
	var logs strings.Builder
	inv := &stubInvoker{invoke: func(invoke.Request) (*invoke.Result, error) {
		return nil, errors.New("restore env-7: /var/lib/hearth/envs/env-7/mem: the microVM stopped: Kernel panic - not syncing")
	}}
	h := New(Config{URLs: oneURL{Function: "f", AuthType: "NONE"}, Invoker: inv, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "http://abc.lambda-url.localhost:9080/", nil))
	id := w.Header().Get("X-Amzn-RequestId")
	if w.Code != 500 || strings.Contains(w.Body.String(), "/var/lib") || strings.Contains(w.Body.String(), "panic") {
		t.Errorf("answer %d %s", w.Code, w.Body.String())
	}
	if id == "" || !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "Kernel panic") {
		t.Errorf("request id %q; log:\n%s", id, logs.String())
	}
}

// stalledClient connects to addr with a small receive buffer, sends req
// and never reads.
func stalledClient(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// serveUntilDone serves h on a real listener; done is closed when the
// handler returns.
func serveUntilDone(t *testing.T, h http.Handler) (addr string, done chan struct{}) {
	t.Helper()
	done = make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), done
}

// A buffered answer to a client that never reads is abandoned after
// AnswerWrite: the handler (and its goroutine, its connection) is not held
// for as long as the client keeps its connection open.
func TestBufferedAnswerToAClientThatNeverReads(t *testing.T) {
	payload, _ := json.Marshal(map[string]any{"statusCode": 200, "body": strings.Repeat("y", 5<<20)})
	inv := &stubInvoker{invoke: func(invoke.Request) (*invoke.Result, error) { return &invoke.Result{Payload: payload}, nil }}
	h := New(Config{URLs: oneURL{Function: "f", AuthType: "NONE"}, Invoker: inv, Log: quietLog(),
		Timeouts: Timeouts{AnswerWrite: 300 * time.Millisecond}})
	addr, done := serveUntilDone(t, h)
	stalledClient(t, addr, "GET /fn-url/abc/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still writing to a client that does not read")
	}
}
