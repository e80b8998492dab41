package vmproxy

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hearthdev/hearth/internal/microvm"
)

// HTTP/2 in (h2c, as the daemon's listener takes it) and out (h2c to the
// guest when asked for): each side's protocol is its own.
func TestH2C(t *testing.T) {
	b := newBackends(t)
	b.addGuest(t, "mvm-a", 8080)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))

	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	h2client := &http.Client{Transport: &http.Transport{Protocols: &h2}}

	tests := []struct {
		name      string
		client    *http.Client
		forceH2   string
		wantIn    int    // the client's protocol major
		wantGuest string // the guest's
	}{
		{"h1 in, h1 out", http.DefaultClient, "", 1, "HTTP/1.1"},
		{"h2c in, h1 out", h2client, "", 2, "HTTP/1.1"},
		{"h1 in, h2c out", http.DefaultClient, "true", 1, "HTTP/2.0"},
		{"h2c in, h2c out", h2client, "TRUE", 2, "HTTP/2.0"},
		{"force-h2 false", http.DefaultClient, "false", 1, "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"X-aws-proxy-auth": tok}
			if tt.forceH2 != "" {
				hdr["X-aws-proxy-force-h2"] = tt.forceH2
			}
			res, err := tt.client.Do(e.request(t, testContext(t), "POST", e.host("mvm-a"), "/h2", nil, hdr))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, errorMessage(t, res))
			}
			var got echo
			if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if res.ProtoMajor != tt.wantIn || got.Proto != tt.wantGuest {
				t.Fatalf("client over HTTP/%d, guest over %s; want HTTP/%d and %s", res.ProtoMajor, got.Proto, tt.wantIn, tt.wantGuest)
			}
			for name := range got.Headers {
				if hasPrefixFold(name, "x-aws-proxy-") {
					t.Errorf("guest saw %s", name)
				}
			}
		})
	}
	b.waitClosed(t)
}

// gRPC through the endpoint over h2c: the health check, its status in the
// trailers, an error status, and a refused token as gRPC sees it.
func TestGRPCHealth(t *testing.T) {
	b := newBackends(t)
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("hearth.test", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	b.listen(t, "mvm-a", 8081, srv.Serve)
	t.Cleanup(srv.Stop)
	e := startEndpoint(t, b, Config{})
	tok := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8081, End: 8081}}, time.Now().Add(time.Hour))

	cc, err := grpc.NewClient("passthrough:///"+e.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(e.host("mvm-a")),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := healthpb.NewHealthClient(cc)
	withAuth := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(testContext(t), "x-aws-proxy-auth", token, "x-aws-proxy-port", "8081")
	}

	res, err := client.Check(withAuth(tok), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v, want SERVING", res.Status)
	}
	res, err = client.Check(withAuth(tok), &healthpb.HealthCheckRequest{Service: "hearth.test"})
	if err != nil || res.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("hearth.test: %v %v, want NOT_SERVING", res, err)
	}
	// grpc-status NOT_FOUND arrives in the trailers.
	if _, err := client.Check(withAuth(tok), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
	// A server stream: Watch's first message arrives while the stream
	// stays open.
	wctx, cancel := context.WithCancel(withAuth(tok))
	w, err := client.Watch(wctx, &healthpb.HealthCheckRequest{Service: "hearth.test"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch: %v %v", m, err)
	}
	hs.SetServingStatus("hearth.test", healthpb.HealthCheckResponse_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch after the change: %v %v", m, err)
	}
	cancel()

	// The endpoint's 403 is PermissionDenied to gRPC.
	bad := mustMint(t, b.tokens, "mvm-a", []microvm.PortRange{{Start: 8080, End: 8080}}, time.Now().Add(time.Hour))
	if _, err := client.Check(withAuth(bad), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("port outside the token: %v, want PermissionDenied", err)
	}
	b.waitClosed(t)
}
