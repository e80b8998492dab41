package sandbox_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// The test function's servers (internal/testfunction/servers.go).
const (
	guestHTTP = 8081
	guestH2C  = 8082
	guestWS   = 8083
	guestSSE  = 8084
	guestGRPC = 8085
)

// guestClient is an HTTP/1.1 client whose connections are streams into env.
func guestClient(env *sandbox.Env, port int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return env.DialGuest(ctx, port) },
	}}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v", url, resp.StatusCode, b, err)
	}
	return string(b)
}

// One environment, reached from the host over its streams port by every
// protocol the test function serves.
func TestStreamsIntoGuest(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	env := f.boot(t, sandbox.Function{Name: "servers", MemoryMB: 256, Timeout: 30 * time.Second,
		Env: map[string]string{"TESTFN_SERVERS": "1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("http", func(t *testing.T) {
		if got := get(t, guestClient(env, guestHTTP), "http://guest/hello"); got != "hello" {
			t.Fatalf("body %q", got)
		}
	})

	// A process exec'd into the environment runs as the function's user,
	// with its stdin, stdout, stderr and exit status carried over a
	// stream (the agent, PID 1, claims its status from its reaper).
	t.Run("exec", func(t *testing.T) {
		for i := range 2 { // twice: a second process's status is claimed too
			s, err := env.Exec(ctx, sandbox.ExecRequest{Argv: []string{"/var/task/bootstrap"}, Env: []string{"TESTFN_EXEC=3"}})
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = io.WriteString(s.Stdin, "hello stdin\n")
				_ = s.Stdin.Close()
			}()
			var out, errOut bytes.Buffer
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(&out, s.Stdout) }()
			go func() { defer wg.Done(); _, _ = io.Copy(&errOut, s.Stderr) }()
			wg.Wait()
			st, err := s.Wait()
			if err != nil || st.Code != 3 || out.String() != "uid 993\nhello stdin\n" || errOut.String() != "to stderr\n" {
				t.Fatalf("exec %d: status %+v %v, stdout %q, stderr %q", i, st, err, out.String(), errOut.String())
			}
			_ = s.Close()
		}
	})

	t.Run("h2c", func(t *testing.T) {
		c := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
				return env.DialGuest(ctx, guestH2C)
			}}}
		if got := get(t, c, "http://guest/"); got != "HTTP/2.0" {
			t.Fatalf("protocol %q, want HTTP/2.0", got)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		conn, err := env.DialGuest(ctx, guestWS)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := websocket.NewConfig("ws://guest/echo", "http://guest/")
		if err != nil {
			t.Fatal(err)
		}
		ws, err := websocket.NewClient(cfg, conn)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		for _, msg := range []string{"one", strings.Repeat("x", 100<<10)} {
			if err := websocket.Message.Send(ws, msg); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
				t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
			}
		}
	})

	t.Run("sse", func(t *testing.T) {
		resp, err := guestClient(env, guestSSE).Get("http://guest/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("content type %q", ct)
		}
		var data []string
		var at []time.Time
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				data, at = append(data, d), append(at, time.Now())
			}
		}
		want := []string{"event 0", "event 1", "event 2", "event 3", "event 4"}
		if !slices.Equal(data, want) {
			t.Fatalf("events %q, want %q", data, want)
		}
		// The server sends the last 400 ms after the first: the first
		// arrived as it was sent, not with the rest.
		if gap := at[4].Sub(at[0]); gap < 300*time.Millisecond {
			t.Errorf("first and last events %s apart: held back and sent together", gap)
		}
	})

	t.Run("grpc", func(t *testing.T) {
		cc, err := grpc.NewClient("passthrough:///guest",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return env.DialGuest(ctx, guestGRPC)
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: %v %v", resp, err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		const n = 100
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := env.DialGuest(ctx, guestHTTP)
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			conns[i] = c
		}
		// All 100 are open at once; each now makes its request.
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, c := range conns {
			wg.Go(func() {
				defer c.Close()
				if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n"); err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				if err == nil && string(b) != "hello" {
					err = fmt.Errorf("body %q", b)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("closed port", func(t *testing.T) {
		_, err := env.DialGuest(ctx, 9)
		if !errors.Is(err, sandbox.ErrNothingListening) {
			t.Fatalf("err = %v, want ErrNothingListening", err)
		}
	})

	t.Run("measure", func(t *testing.T) { measureStreams(t, env) })

	t.Run("suspend resume", func(t *testing.T) {
		open, err := env.DialGuest(ctx, guestHTTP)
		if err != nil {
			t.Fatal(err)
		}
		defer open.Close()
		if _, err := env.Suspend(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := env.DialGuest(ctx, guestHTTP); !errors.Is(err, sandbox.ErrNotRunning) {
			t.Errorf("dial a suspended env: %v, want ErrNotRunning", err)
		}
		// A stream open at suspend is closed.
		_ = open.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("read of a stream open at suspend: %v, want it closed", err)
		}
		invoke(t, env, `{"action":"echo"}`) // resumes
		if got := get(t, guestClient(env, guestHTTP), "http://guest/hello"); got != "hello" {
			t.Fatalf("after resume: body %q", got)
		}
	})
}

// measureStreams logs, for the README: host→guest throughput over one
// stream, the p50 of small requests over one kept-alive stream, and the
// control channel's round trip (an invocation) beside it.
func measureStreams(t *testing.T, env *sandbox.Env) {
	const size = 16 << 20
	c := guestClient(env, guestHTTP)
	start := time.Now()
	resp, err := c.Post("http://guest/sink", "application/octet-stream", bytes.NewReader(make([]byte, size)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	up := time.Since(start)
	if string(b) != fmt.Sprint(size) {
		t.Fatalf("sink read %q, want %d", b, size)
	}
	lat := make([]time.Duration, 100)
	for i := range lat {
		s := time.Now()
		get(t, c, "http://guest/hello")
		lat[i] = time.Since(s)
	}
	ctl := make([]time.Duration, 20)
	for i := range ctl {
		s := time.Now()
		invoke(t, env, `{"action":"echo"}`)
		ctl[i] = time.Since(s)
	}
	slices.Sort(lat)
	slices.Sort(ctl)
	t.Logf("MEASURE host→guest 16 MiB over one stream: %s, %.1f MB/s; request p50 %s (p90 %s) over one keep-alive stream; invocation (control channel) p50 %s",
		up.Round(time.Millisecond), float64(size)/1e6/up.Seconds(), lat[50].Round(10*time.Microsecond), lat[90].Round(10*time.Microsecond), ctl[10].Round(10*time.Microsecond))
}
