package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startServers runs serve on free loopback ports, as main does but with
// the ports picked by the kernel, and returns their base URLs' addresses.
func startServers(t *testing.T, cfg config) (appAddr, grpcAddr, hookAddr string) {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		// Reserve a free port, then free it for serve: a tiny window, but
		// serve binds 0.0.0.0 itself, as in the image.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	cfg.appPort, cfg.grpcPort, cfg.hookPort = ports[0], ports[1], ports[2]
	if cfg.hooksFile == "" {
		cfg.hooksFile = filepath.Join(t.TempDir(), "hooks.jsonl")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	for _, a := range []string{addr(ports[0]), addr(ports[1]), addr(ports[2])} {
		waitListening(t, a)
	}
	return addr(ports[0]), addr(ports[1]), addr(ports[2])
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getJSON(t *testing.T, c *http.Client, url string, v any) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func TestHits(t *testing.T) {
	appAddr, _, _ := startServers(t, config{sseDelay: time.Millisecond})
	clients := []struct {
		name, proto string
		c           *http.Client
	}{
		{"http1", "HTTP/1.1", &http.Client{}},
		{"h2c", "HTTP/2.0", h2cClient()},
		{"http1 again", "HTTP/1.1", &http.Client{}},
	}
	var instance string
	for i, tc := range clients {
		var got hitsReply
		resp := getJSON(t, tc.c, "http://"+appAddr+"/", &got)
		if resp.Proto != tc.proto || got.Proto != tc.proto {
			t.Errorf("%s: response %s, server saw %s; want %s", tc.name, resp.Proto, got.Proto, tc.proto)
		}
		if got.Hits != int64(i+1) {
			t.Errorf("%s: hits %d, want %d", tc.name, got.Hits, i+1)
		}
		if len(got.Instance) != 16 || (instance != "" && got.Instance != instance) {
			t.Errorf("%s: instance %q, want the same 16 hex digits each time (first %q)", tc.name, got.Instance, instance)
		}
		instance = got.Instance
	}
	// Only / counts; another path is not found and leaves the counter.
	resp, err := http.Get("http://" + appAddr + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", resp.StatusCode)
	}
	var got hitsReply
	getJSON(t, http.DefaultClient, "http://"+appAddr+"/", &got)
	if got.Hits != 4 {
		t.Errorf("hits after /nothing: %d, want 4", got.Hits)
	}
}

func TestEcho(t *testing.T) {
	appAddr, _, _ := startServers(t, config{})
	req, err := http.NewRequest(http.MethodPut, "http://"+appAddr+"/echo?a=1&a=2&b=x", strings.NewReader("the body"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test", "yes")
	req.Header.Add("X-Multi", "1")
	req.Header.Add("X-Multi", "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got echoReply
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"method", got.Method, "PUT"},
		{"path", got.Path, "/echo"},
		{"rawQuery", got.RawQuery, "a=1&a=2&b=x"},
		{"query a", strings.Join(got.Query["a"], ","), "1,2"},
		{"host", got.Host, appAddr},
		{"proto", got.Proto, "HTTP/1.1"},
		{"X-Test", strings.Join(got.Headers["X-Test"], ","), "yes"},
		{"X-Multi", strings.Join(got.Headers["X-Multi"], ","), "1,2"},
		{"body", got.Body, "the body"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	if got.BodyBytes != len("the body") {
		t.Errorf("bodyBytes %d, want %d", got.BodyBytes, len("the body"))
	}
}

func TestSSE(t *testing.T) {
	const delay = 100 * time.Millisecond
	appAddr, _, _ := startServers(t, config{sseDelay: delay})
	for _, tc := range []struct {
		name string
		c    *http.Client
	}{{"http1", &http.Client{}}, {"h2c", h2cClient()}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, err := tc.c.Get("http://" + appAddr + "/sse?n=3")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			// The header comes before the first delay's end, and each event
			// on its own: a buffered stream would come all at once.
			if d := time.Since(start); d > delay*3/2 {
				t.Errorf("header after %v", d)
			}
			br := bufio.NewReader(resp.Body)
			var datas []string
			var arrived []time.Duration
			for {
				line, err := br.ReadString('\n')
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if d, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
					datas = append(datas, d)
					arrived = append(arrived, time.Since(start))
				}
			}
			if strings.Join(datas, ",") != "0,1,2" {
				t.Fatalf("data %q, want 0,1,2", datas)
			}
			if arrived[0] > delay*3/2 || arrived[2]-arrived[0] < delay*3/2 {
				t.Errorf("events arrived at %v: want the first at once and the others %v apart", arrived, delay)
			}
		})
	}
	resp, err := http.Get("http://" + appAddr + "/sse?n=bad")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("n=bad: %d, want 400", resp.StatusCode)
	}
}

func TestWebSocket(t *testing.T) {
	appAddr, _, _ := startServers(t, config{})
	for _, tc := range []struct {
		name      string
		protocols []string
		hello     bool
		want      string // the subprotocol chosen
	}{
		{"no subprotocol", nil, false, ""},
		{"one", []string{"chat"}, true, "chat"},
		{"several: the first is chosen", []string{"lambda-microvms.port.8080", "chat"}, true, "lambda-microvms.port.8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := "ws://" + appAddr + "/ws"
			if tc.hello {
				url += "?hello=1"
			}
			cfg, err := websocket.NewConfig(url, "http://"+appAddr)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Protocol = tc.protocols
			// Dial by hand to see the 101's headers: websocket.DialConfig
			// hides the response.
			nc, err := net.Dial("tcp", appAddr)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingConn{Conn: nc}
			c, err := websocket.NewClient(cfg, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			head := rec.read.String()
			wantHeader := "X-Received-Protocol: " + strings.Join(tc.protocols, ", ")
			if !strings.Contains(head, wantHeader+"\r\n") {
				t.Errorf("101 lacks %q:\n%s", wantHeader, head)
			}
			if got := strings.Join(c.Config().Protocol, ","); got != tc.want {
				t.Errorf("chosen subprotocol %q, want %q", got, tc.want)
			}
			if tc.hello {
				var hello wsHello
				if err := websocket.JSON.Receive(c, &hello); err != nil {
					t.Fatal(err)
				}
				if hello.Protocol != strings.Join(tc.protocols, ", ") || len(hello.Headers["Sec-Websocket-Key"]) != 1 {
					t.Errorf("hello %+v", hello)
				}
			}
			// Text and binary each come back as sent, with their type.
			msgs := []struct {
				payload string
				binary  bool
			}{{"hello", false}, {"\x00\x01\xff", true}, {strings.Repeat("x", 100<<10), false}}
			for _, m := range msgs {
				if err := wsCodec.Send(c, wsMessage{data: []byte(m.payload), binary: m.binary}); err != nil {
					t.Fatal(err)
				}
				var got wsMessage
				if err := wsCodec.Receive(c, &got); err != nil {
					t.Fatal(err)
				}
				if string(got.data) != m.payload || got.binary != m.binary {
					t.Errorf("echo of %d bytes (binary %v): %d bytes (binary %v)", len(m.payload), m.binary, len(got.data), got.binary)
				}
			}
		})
	}
}

// recordingConn keeps what is read through it, for the handshake's reply.
type recordingConn struct {
	net.Conn
	read strings.Builder
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if r.read.Len() < 4096 {
		r.read.Write(p[:n])
	}
	return n, err
}

func TestGRPCHealth(t *testing.T) {
	_, grpcAddr, _ := startServers(t, config{})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status %v, want SERVING", resp.GetStatus())
	}
}
