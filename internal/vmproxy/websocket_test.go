package vmproxy

import (
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/hearthdev/hearth/internal/microvm"
)

// dialWS opens a WebSocket to the endpoint's host for MicroVM id with the
// subprotocols offered and headers hdr.
func dialWS(t *testing.T, e *endpoint, id string, offered []string, hdr http.Header) (*websocket.Conn, error) {
	t.Helper()
	cfg, err := websocket.NewConfig("ws://"+e.host(id)+"/ws", "http://"+e.host(id))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = offered
	if hdr != nil {
		cfg.Header = hdr
	}
	c, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { ws.Close() })
	return ws, nil
}

func roundTrip(t *testing.T, ws *websocket.Conn, msg, want string) {
	t.Helper()
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("echo %q, want %q", got, want)
	}
}

func TestWebSocket(t *testing.T) {
	b := newBackends(t)
	g8080 := b.addGuest(t, "mvm-a", 8080)
	g9000 := b.addGuest(t, "mvm-a", 9000)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}, {Start: 9000, End: 9000}}, time.Now().Add(time.Hour))
	auth := "lambda-microvms.authentication." + tok

	tests := []struct {
		name       string
		offered    []string
		hdr        http.Header
		guest      *guest
		wantGuest  []string // what the guest was offered
		wantClient []string // the subprotocol(s) the client holds after the handshake
		wantEcho   string
	}{
		{name: "token and port as subprotocols", offered: []string{"lambda-microvms", auth, "lambda-microvms.port.8080"},
			guest: g8080, wantGuest: nil, wantClient: []string{"lambda-microvms"}, wantEcho: "mvm-a/8080:hi"},
		{name: "port 9000 by subprotocol", offered: []string{"lambda-microvms", auth, "lambda-microvms.port.9000"},
			guest: g9000, wantGuest: nil, wantClient: []string{"lambda-microvms"}, wantEcho: "mvm-a/9000:hi"},
		{name: "no port: 8080", offered: []string{"lambda-microvms", auth},
			guest: g8080, wantGuest: nil, wantClient: []string{"lambda-microvms"}, wantEcho: "mvm-a/8080:hi"},
		{name: "the app's own subprotocol", offered: []string{"lambda-microvms", auth, "chat", "lambda-microvms.port.8080", "superchat"},
			guest: g8080, wantGuest: []string{"chat", "superchat"}, wantClient: []string{"chat"}, wantEcho: "mvm-a/8080:hi"},
		{name: "token and port as headers", hdr: http.Header{"X-Aws-Proxy-Auth": {tok}, "X-Aws-Proxy-Port": {"9000"}},
			guest: g9000, wantGuest: nil, wantClient: nil, wantEcho: "mvm-a/9000:hi"},
		{name: "the header's port wins", offered: []string{"lambda-microvms", auth, "lambda-microvms.port.8080"}, hdr: http.Header{"X-Aws-Proxy-Port": {"9000"}},
			guest: g9000, wantGuest: nil, wantClient: []string{"lambda-microvms"}, wantEcho: "mvm-a/9000:hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := dialWS(t, e, "mvm-a", tt.offered, tt.hdr)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, ws, "hi", tt.wantEcho)
			roundTrip(t, ws, "again", tt.wantEcho[:len(tt.wantEcho)-2]+"again")
			if got := ws.Config().Protocol; !slices.Equal(got, tt.wantClient) && !(tt.wantClient == nil && slices.Equal(got, tt.offered)) {
				t.Errorf("client's subprotocol %q, want %q", got, tt.wantClient)
			}
			tt.guest.mu.Lock()
			offered, hdr := tt.guest.wsOffered, tt.guest.wsHeaders
			tt.guest.mu.Unlock()
			if !slices.Equal(offered, tt.wantGuest) {
				t.Errorf("guest was offered %q, want %q", offered, tt.wantGuest)
			}
			for name := range hdr {
				if hasPrefixFold(name, "x-aws-proxy-") {
					t.Errorf("guest saw %s", name)
				}
			}
		})
	}

	refused := []struct {
		name    string
		offered []string
	}{
		{"no token", []string{"lambda-microvms", "lambda-microvms.port.8080"}},
		{"port outside the token", []string{"lambda-microvms", auth, "lambda-microvms.port.9001"}},
		{"bad port", []string{"lambda-microvms", auth, "lambda-microvms.port.x"}},
		{"token for another MicroVM", []string{"lambda-microvms", "lambda-microvms.authentication." +
			mustMint(t, b.tokens, "mvm-b", []microvm.PortRange{{Start: 1, End: 65535}}, time.Now().Add(time.Hour))}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			dials := b.dials.Load()
			if _, err := dialWS(t, e, "mvm-a", tt.offered, nil); err == nil {
				t.Fatal("handshake succeeded")
			}
			if b.dials.Load() != dials {
				t.Fatal("a refused handshake dialed the guest")
			}
		})
	}
}

// Closing a WebSocket closes its guest connection.
func TestWebSocketClosed(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	ws, err := dialWS(t, e, "mvm-a", []string{"lambda-microvms", "lambda-microvms.authentication." + tok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ws, "hi", "mvm-a/8080:hi")
	if b.open.Load() != 1 {
		t.Fatalf("%d guest connections open, want 1", b.open.Load())
	}
	ws.Close()
	b.waitClosed(t)
}
