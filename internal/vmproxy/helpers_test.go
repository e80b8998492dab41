package vmproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// guestKey is one port of one MicroVM.
type guestKey struct {
	id   string
	port int
}

// backends maps MicroVM ports to loopback listeners, as the Manager maps
// them to guest streams; it counts the connections it has open.
type backends struct {
	tokens *Tokens
	mu     sync.Mutex
	addrs  map[guestKey]string
	known  map[string]error // a MicroVM's Dial error (nil: dial its ports)
	open   atomic.Int64
	dials  atomic.Int64
	// dialsEnded counts the hanging dials that gave up.
	dialsEnded atomic.Int64
}

// errHang makes a MicroVM's dials hang until their context ends.
var errHang = errors.New("hang")

func newBackends(t *testing.T) *backends {
	return &backends{tokens: testTokens(t, 3), addrs: map[guestKey]string{}, known: map[string]error{}}
}

func (b *backends) Dial(ctx context.Context, id string, port int) (net.Conn, error) {
	b.dials.Add(1)
	b.mu.Lock()
	err, known := b.known[id]
	addr, listening := b.addrs[guestKey{id, port}]
	b.mu.Unlock()
	switch {
	case !known:
		return nil, fmt.Errorf("MicroVM %s: %w", id, microvm.ErrNotFound)
	case errors.Is(err, errHang):
		// A resume that does not end: wait for the dial's deadline.
		<-ctx.Done()
		b.dialsEnded.Add(1)
		return nil, fmt.Errorf("resuming %s: %w", id, ctx.Err())
	case err != nil:
		return nil, err
	case !listening:
		return nil, fmt.Errorf("guest port %d: %w: %w", port, sandbox.ErrNothingListening, syscall.ECONNREFUSED)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	b.open.Add(1)
	return &countedConn{Conn: c, open: &b.open}, nil
}

func (b *backends) VerifyToken(token, id string, port int) error {
	return b.tokens.Verify(token, id, port, time.Now())
}

// waitClosed waits until every guest connection is closed.
func (b *backends) waitClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d guest connections still open", b.open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// guest is one MicroVM's port: the test app, served over HTTP/1.1 and h2c.
type guest struct {
	label string
	// sseNext releases /sse's second event.
	sseNext chan struct{}
	// wsOffered is what the last WebSocket handshake offered the guest,
	// and wsHeaders its headers.
	mu        sync.Mutex
	wsOffered []string
	wsHeaders http.Header
	sseGone   chan struct{}
	// floodEnded is closed when /flood could write no more.
	floodEnded chan struct{}
}

// echo is what /echo answers: the request as the guest saw it.
type echo struct {
	Label   string
	Method  string
	Path    string
	Query   string
	Host    string
	Proto   string
	Headers http.Header
	Body    string
}

func (g *guest) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: 1\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-g.sseNext:
			fmt.Fprint(w, "data: 2\n\n")
		case <-r.Context().Done():
			close(g.sseGone)
		}
	})
	// /slow: events 250 ms apart for 1.5 s.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 6 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			if err := http.NewResponseController(w).Flush(); err != nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	// /flood writes until the client stops taking it, then reports when.
	mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				close(g.floodEnded)
				return
			}
		}
	})
	mux.Handle("/ws", websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			g.mu.Lock()
			g.wsOffered = append([]string(nil), cfg.Protocol...)
			g.wsHeaders = r.Header.Clone()
			g.mu.Unlock()
			var chosen []string
			for _, p := range cfg.Protocol {
				if p == "chat" {
					chosen = []string{"chat"}
				}
			}
			cfg.Protocol = chosen
			return nil
		},
		Handler: func(ws *websocket.Conn) {
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				if err := websocket.Message.Send(ws, g.label+":"+msg); err != nil {
					return
				}
			}
		},
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Trailer", "X-Guest-Trailer")
		_ = json.NewEncoder(w).Encode(echo{Label: g.label, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Host: r.Host, Proto: r.Proto, Headers: r.Header, Body: string(body)})
		w.Header().Set("X-Guest-Trailer", "done")
	})
	return mux
}

// addGuest serves a test app for MicroVM id's port, and returns it.
func (b *backends) addGuest(t *testing.T, id string, port int) *guest {
	t.Helper()
	g := &guest{label: id + "/" + strconv.Itoa(port), sseNext: make(chan struct{}), sseGone: make(chan struct{}), floodEnded: make(chan struct{})}
	srv := &http.Server{Handler: g.handler(), Protocols: h1h2c()}
	b.listen(t, id, port, srv.Serve)
	t.Cleanup(func() { _ = srv.Close() })
	return g
}

// listen puts serve on a loopback listener for MicroVM id's port.
func (b *backends) listen(t *testing.T, id string, port int, serve func(net.Listener) error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = serve(ln) }()
	t.Cleanup(func() { _ = ln.Close() })
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.known[id]; !ok {
		b.known[id] = nil
	}
	b.addrs[guestKey{id, port}] = ln.Addr().String()
}

// setState makes MicroVM id's dials fail with err.
func (b *backends) setState(id string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known[id] = err
}

func h1h2c() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// endpoint is the daemon's URL listener in small: the endpoint in front
// of a stand-in for function URLs, on a loopback server that takes h2c.
type endpoint struct {
	addr string
	h    *Handler
}

func startEndpoint(t *testing.T, b *backends, cfg Config) *endpoint {
	t.Helper()
	return startLimitedEndpoint(t, b, cfg, 0)
}

// startLimitedEndpoint is startEndpoint on a server with the daemon's
// kind of whole-request limits, of limit each (0: none): a read timeout,
// and a write deadline set per request before the handler runs.
func startLimitedEndpoint(t *testing.T, b *backends, cfg Config, limit time.Duration) *endpoint {
	t.Helper()
	cfg.Backends = b
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	h := New(cfg)
	funcurls := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Test-Handler", "funcurl")
		w.WriteHeader(http.StatusTeapot)
	})
	handler := h.Route(funcurls)
	if limit > 0 {
		next := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(limit))
			next.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: handler, Protocols: h1h2c(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: limit}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &endpoint{addr: ln.Addr().String(), h: h}
}

// host is MicroVM id's endpoint host, with the listener's port.
func (e *endpoint) host(id string) string {
	_, port, _ := net.SplitHostPort(e.addr)
	return EndpointHost(id, "localhost") + ":" + port
}

// request makes a request to host, on the endpoint's address.
func (e *endpoint) request(t *testing.T, ctx context.Context, method, host, path string, body io.Reader, hdr map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+e.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

// errorMessage reads an endpoint error's message.
func errorMessage(t *testing.T, res *http.Response) string {
	t.Helper()
	var e struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Message
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(testContext(t))
	t.Cleanup(cancel)
	return ctx, cancel
}
