package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/websocket"
)

// app is the server on the app port. Its state lives in memory only, so
// that a test can tell a resumed process (same instance, hits go on) from
// a new one.
type app struct {
	instance string
	hits     atomic.Int64
	sseDelay time.Duration
}

func newApp(sseDelay time.Duration) (*app, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("instance id: %w", err)
	}
	return &app{instance: hex.EncodeToString(b), sseDelay: sseDelay}, nil
}

// hitsReply is GET /'s answer.
type hitsReply struct {
	Hits     int64  `json:"hits"`
	Instance string `json:"instance"`
	Proto    string `json:"proto"`
}

// echoReply is /echo's answer.
type echoReply struct {
	Method    string              `json:"method"`
	Path      string              `json:"path"`
	RawQuery  string              `json:"rawQuery"`
	Query     map[string][]string `json:"query"`
	Host      string              `json:"host"`
	Proto     string              `json:"proto"`
	Headers   map[string][]string `json:"headers"`
	Body      string              `json:"body"`
	BodyBytes int                 `json:"bodyBytes"`
}

// wsHello is /ws?hello=1's first message.
type wsHello struct {
	Protocol string              `json:"protocol"`
	Headers  map[string][]string `json:"headers"`
}

const maxEchoBody = 1 << 20

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, hitsReply{Hits: a.hits.Add(1), Instance: a.instance, Proto: r.Proto})
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, echoReply{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query(),
			Host: r.Host, Proto: r.Proto, Headers: r.Header, Body: string(body), BodyBytes: len(body),
		})
	})
	mux.Handle("GET /ws", a.websocket())
	mux.HandleFunc("GET /sse", a.sse)
	return mux
}

// websocket echoes messages. A websocket.Server with its own Handshake
// (rather than websocket.Handler) so that no Origin is required, and so
// that it can pick one subprotocol: x/net/websocket refuses to answer
// when more than one is left in the config.
func (a *app) websocket() http.Handler {
	return websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			got := r.Header.Get("Sec-WebSocket-Protocol")
			if len(cfg.Protocol) > 1 {
				cfg.Protocol = cfg.Protocol[:1]
			}
			cfg.Header = http.Header{"X-Received-Protocol": {got}}
			return nil
		},
		Handler: func(c *websocket.Conn) {
			defer c.Close()
			r := c.Request()
			if r.URL.Query().Get("hello") == "1" {
				if websocket.JSON.Send(c, wsHello{Protocol: r.Header.Get("Sec-WebSocket-Protocol"), Headers: r.Header}) != nil {
					return
				}
			}
			// Message by message, each sent back with its own type: a copy
			// of the stream would merge or split messages.
			for {
				var m wsMessage
				if wsCodec.Receive(c, &m) != nil || wsCodec.Send(c, m) != nil {
					return
				}
			}
		},
	}
}

// wsMessage is one WebSocket message with its type; websocket.Message
// would not tell which type a received message had.
type wsMessage struct {
	data   []byte
	binary bool
}

// wsCodec sends and receives wsMessages (a *wsMessage to receive).
var wsCodec = websocket.Codec{
	Marshal: func(v any) ([]byte, byte, error) {
		m := v.(wsMessage)
		if m.binary {
			return m.data, websocket.BinaryFrame, nil
		}
		return m.data, websocket.TextFrame, nil
	},
	Unmarshal: func(data []byte, payloadType byte, v any) error {
		*v.(*wsMessage) = wsMessage{data: data, binary: payloadType == websocket.BinaryFrame}
		return nil
	},
}

func (a *app) sse(w http.ResponseWriter, r *http.Request) {
	n := 5
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 10000 {
			http.Error(w, "n: want 0 to 10000", http.StatusBadRequest)
			return
		}
		n = v
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// Flush the header at once: a test can then tell a proxy that buffers
	// the whole stream from one that forwards each event as it comes.
	if err := rc.Flush(); err != nil {
		return
	}
	for i := range n {
		if i > 0 {
			select {
			case <-time.After(a.sseDelay):
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// hookName returns the hook a path names, or "" when it names none.
func hookName(path string) string {
	name, ok := strings.CutPrefix(path, hookPrefix)
	if !ok {
		return ""
	}
	switch name {
	case "ready", "validate", "run", "resume", "suspend", "terminate":
		return name
	}
	return ""
}
