package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// With TESTFN_SERVERS=1 the function starts, at init, servers on the
// guest's loopback for tests of connections into an environment; they run
// as long as the function does (between invocations too, while warm):
//
//	8081 HTTP/1.1: GET /hello answers "hello"; POST /sink reads the body
//	     and answers its length; GET /bytes?n=N answers N bytes
//	8082 h2c: answers its protocol ("HTTP/2.0")
//	8083 WebSocket echo at /echo
//	8084 SSE at /events: 5 events 100 ms apart, each flushed
//	8085 gRPC health service, SERVING
const (
	portHTTP = 8081
	portH2C  = 8082
	portWS   = 8083
	portSSE  = 8084
	portGRPC = 8085
)

func startServers() error {
	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	}
	serve := func(port int, h http.Handler) error {
		ln, err := listen(port)
		if err != nil {
			return err
		}
		go func() { _ = (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
		return nil
	}

	plain := http.NewServeMux()
	plain.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })
	plain.HandleFunc("POST /sink", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	})
	plain.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		buf := make([]byte, 64<<10)
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	if err := serve(portHTTP, plain); err != nil {
		return err
	}

	proto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Proto) })
	if err := serve(portH2C, h2c.NewHandler(proto, &http2.Server{})); err != nil {
		return err
	}

	ws := http.NewServeMux()
	ws.Handle("/echo", websocket.Handler(func(c *websocket.Conn) {
		// Message by message: a copy would split them into its reads.
		for {
			var msg string
			if websocket.Message.Receive(c, &msg) != nil || websocket.Message.Send(c, msg) != nil {
				return
			}
		}
	}))
	if err := serve(portWS, ws); err != nil {
		return err
	}

	sse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f, _ := w.(http.Flusher)
		for i := range 5 {
			if i > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			if f != nil {
				f.Flush()
			}
		}
	})
	if err := serve(portSSE, sse); err != nil {
		return err
	}

	ln, err := listen(portGRPC)
	if err != nil {
		return err
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer()) // "" is SERVING
	go func() { _ = g.Serve(ln) }()
	return nil
}

// maybeStartServers starts the servers if TESTFN_SERVERS asks for them.
func maybeStartServers() {
	if os.Getenv("TESTFN_SERVERS") != "1" {
		return
	}
	if err := startServers(); err != nil {
		fmt.Fprintln(os.Stderr, "testfunction: servers:", err)
		os.Exit(3)
	}
}
