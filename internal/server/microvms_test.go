package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	mvc "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// mvDaemon is a daemon with a URL listener (the MicroVMs' endpoints) and
// a MicroVM client signed with its keys.
type mvDaemon struct {
	*daemon
	mv *mvc.Client
}

func startMicroVMDaemon(t *testing.T, dataDir string) *mvDaemon {
	t.Helper()
	d := startWith(t, server.Config{DataDir: dataDir, URLListen: "127.0.0.1:0"})
	c, err := mvc.New(d.url, mvc.Credentials{AccessKeyID: d.creds.AccessKeyID, SecretAccessKey: d.creds.SecretAccessKey, Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return &mvDaemon{daemon: d, mv: c}
}

// get sends a GET to the MicroVM's endpoint with the token (and the port,
// when not 0) and returns the status and body.
func endpointGet(t *testing.T, ctx context.Context, endpoint, p, token string, port int) (int, []byte) {
	t.Helper()
	req, err := mvc.Request(ctx, http.MethodGet, endpoint, p, token, port, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := mvLoopbackClient(false).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mvLoopbackClient dials every name on loopback (Go's resolver does not
// know *.localhost), over HTTP/1.1 or, with h2c, HTTP/2 without TLS.
func mvLoopbackClient(h2c bool) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, mvc.LoopbackAddr(addr))
	}, DisableKeepAlives: true}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

type hits struct {
	Hits     int    `json:"hits"`
	Instance string `json:"instance"`
	Proto    string `json:"proto"`
}

// getHits is GET / on the endpoint.
func getHits(t *testing.T, ctx context.Context, endpoint, token string) hits {
	t.Helper()
	st, b := endpointGet(t, ctx, endpoint, "/", token, 0)
	return decodeHits(t, st, b)
}

func decodeHits(t *testing.T, status int, b []byte) hits {
	t.Helper()
	var h hits
	if status != http.StatusOK || json.Unmarshal(b, &h) != nil {
		t.Fatalf("GET /: %d %s", status, b)
	}
	return h
}

// The whole MicroVM path through a real daemon: an image built from an OCI
// reference with every hook, a run (and its clientToken), the endpoint
// (token per port, HTTP/1.1, h2c, WebSocket with AWS's subprotocols, SSE,
// the path form), exec and files, idle → suspended → auto-resumed with
// its memory kept, the hooks in order, terminate, and a daemon restart
// that finds a suspended MicroVM and resumes it.
func TestMicroVMsThroughTheDaemon(t *testing.T) {
	reg := newGatedRegistry(t)
	uri := reg.push(t, "agent:v1", testvm.MicroVMImage(t))
	data := t.TempDir()
	d := startMicroVMDaemon(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	enabled := mvc.HookEnabled
	img, err := d.mv.CreateImage(ctx, mvc.ImageInput{Name: "agent", ImageURI: uri, Resources: []mvc.Resources{{MinimumMemoryInMiB: 512}},
		Hooks: &mvc.Hooks{Port: 9000, MicrovmImageHooks: &mvc.ImageHooks{Ready: enabled, Validate: enabled},
			MicrovmHooks: &mvc.MicroVMHooks{Run: enabled, Resume: enabled, Suspend: enabled, Terminate: enabled}}})
	if err != nil {
		t.Fatalf("CreateMicrovmImage: %v", err)
	}
	if _, err := d.mv.WaitImage(ctx, "agent", img.ImageVersion); err != nil {
		t.Fatal(err)
	}

	// Bad input: clear errors of Lambda's shape, nothing started.
	if _, err := d.mv.Run(ctx, mvc.RunInput{ImageIdentifier: "nope"}); !errors.Is(err, mvc.ErrNotFound) {
		t.Errorf("run of an unknown image: %v, want ResourceNotFoundException", err)
	}
	if _, err := d.mv.Run(ctx, mvc.RunInput{ImageIdentifier: "agent", RunHookPayload: strings.Repeat("x", 16<<10+1)}); !errors.Is(err, mvc.ErrValidation) {
		t.Errorf("run with a 16 KB+1 payload: %v, want ValidationException", err)
	}

	in := mvc.RunInput{ImageIdentifier: "agent", RunHookPayload: `{"task":"t1"}`, ClientToken: "tok-1",
		IdlePolicy: &mvc.IdlePolicy{MaxIdleDurationSeconds: 2, SuspendedDurationSeconds: 3600, AutoResumeEnabled: true}}
	vm, err := d.mv.Run(ctx, in)
	if err != nil {
		t.Fatalf("RunMicrovm: %v", err)
	}
	if vm.State != "RUNNING" || !strings.Contains(vm.Endpoint, vm.MicrovmID+".lambda-microvm.localhost:") {
		t.Fatalf("RunMicrovm: %+v", vm)
	}
	again, err := d.mv.Run(ctx, in)
	if err != nil || again.MicrovmID != vm.MicrovmID {
		t.Errorf("the same clientToken and input: %v %v, want MicroVM %s again", again, err, vm.MicrovmID)
	}
	other := in
	other.RunHookPayload = "other"
	if _, err := d.mv.Run(ctx, other); !errors.Is(err, mvc.ErrConflict) {
		t.Errorf("the same clientToken with other input: %v, want ConflictException", err)
	}
	// A wrong-state call is a conflict.
	if err := d.mv.Resume(ctx, vm.MicrovmID); !errors.Is(err, mvc.ErrConflict) {
		t.Errorf("resume of a running MicroVM: %v, want ConflictException", err)
	}

	tok8080, err := d.mv.AuthToken(ctx, vm.MicrovmID, 10*time.Minute, mvc.Port(8080))
	if err != nil {
		t.Fatal(err)
	}
	first := getHits(t, ctx, vm.Endpoint, tok8080)
	if first.Hits != 1 || first.Proto != "HTTP/1.1" {
		t.Errorf("first request: %+v", first)
	}
	for _, tc := range []struct {
		name  string
		token string
		port  int
	}{
		{"no token", "", 0},
		{"a forged token", tok8080[:len(tok8080)-2] + "AA", 0},
		{"a port the token does not allow", tok8080, 9000},
	} {
		if st, b := endpointGet(t, ctx, vm.Endpoint, "/", tc.token, tc.port); st != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", tc.name, st, b)
		}
	}
	// The guest never sees x-aws-proxy-* headers.
	st, b := endpointGet(t, ctx, vm.Endpoint, "/echo", tok8080, 8080)
	if st != http.StatusOK || bytes.Contains(bytes.ToLower(b), []byte("x-aws-proxy")) {
		t.Errorf("/echo: %d %s", st, b)
	}
	// h2c (HTTP/2 with prior knowledge), and the path form.
	// With X-aws-proxy-force-h2 the guest is spoken to in h2c too.
	req, _ := mvc.Request(ctx, http.MethodGet, vm.Endpoint, "/", tok8080, 0, nil)
	req.Header.Set("X-aws-proxy-force-h2", "true")
	resp, err := mvLoopbackClient(true).Do(req)
	if err != nil {
		t.Fatalf("h2c: %v", err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if h := decodeHits(t, resp.StatusCode, b); resp.ProtoMajor != 2 || h.Proto != "HTTP/2.0" || h.Instance != first.Instance {
		t.Errorf("h2c: %s %+v", resp.Proto, h)
	}
	pathForm := "http://" + strings.TrimPrefix(d.srv.URLAddrs()[0], "http://") + "/microvm/" + vm.MicrovmID + "/"
	if h := getHits(t, ctx, pathForm, tok8080); h.Instance != first.Instance {
		t.Errorf("path form: %+v", h)
	}

	// WebSocket: the token and port as AWS's subprotocols.
	wsURL := "ws://" + strings.TrimPrefix(strings.TrimSuffix(vm.Endpoint, "/"), "http://") + "/ws"
	ws, wsResp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: mvLoopbackClient(false),
		Subprotocols: []string{"lambda-microvms", "lambda-microvms.authentication." + tok8080, "lambda-microvms.port.8080"}})
	if err != nil {
		t.Fatalf("WebSocket: %v", err)
	}
	if got := wsResp.Header.Get("X-Received-Protocol"); strings.Contains(got, "lambda-microvms") {
		t.Errorf("the guest saw the subprotocols %q", got)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Errorf("WebSocket echo: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// SSE: the events come as they are sent.
	req, _ = mvc.Request(ctx, http.MethodGet, vm.Endpoint, "/sse?n=3", tok8080, 0, nil)
	resp, err = mvLoopbackClient(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, v)
		}
	}
	resp.Body.Close()
	if strings.Join(events, ",") != "0,1,2" || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("SSE: %v %s", events, resp.Header.Get("Content-Type"))
	}

	// Exec and files through the daemon's sandbox interface.
	var out, errOut bytes.Buffer
	status, err := d.mv.ExecAll(ctx, vm.MicrovmID, mvc.ExecRequest{Argv: []string{"testmicrovm", "echo-args", "a", "b"}, Env: []string{"PATH=/app"}}, nil, &out, &errOut)
	if err != nil || status.Code != 0 || out.String() != "a\nb\n" {
		t.Errorf("exec echo-args: %+v %v %q %q", status, err, out.String(), errOut.String())
	}
	status, err = d.mv.ExecAll(ctx, vm.MicrovmID, mvc.ExecRequest{Argv: []string{"/app/testmicrovm", "exit", "3"}}, nil, io.Discard, io.Discard)
	if err != nil || status.Code != 3 {
		t.Errorf("exec exit 3: %+v %v", status, err)
	}
	csv := []byte("a,b\n1,2\n")
	if n, err := d.mv.Upload(ctx, vm.MicrovmID, "/tmp/data.csv", 0o644, bytes.NewReader(csv), int64(len(csv))); err != nil || n != int64(len(csv)) {
		t.Fatalf("upload: %d %v", n, err)
	}
	rc, fi, err := d.mv.Download(ctx, vm.MicrovmID, "/tmp/data.csv")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, csv) || fi.Size != int64(len(csv)) {
		t.Errorf("download: %q %+v", got, fi)
	}
	if _, err := d.mv.Stat(ctx, vm.MicrovmID, "/tmp/none"); !errors.Is(err, mvc.ErrNotFound) {
		t.Errorf("stat of a missing file: %v", err)
	}

	// Idle (2 s, nothing open): suspended; the next request resumes it
	// with its memory: the same process, its counter on.
	waitState(t, ctx, d.mv, vm.MicrovmID, "SUSPENDED")
	resumed := getHits(t, ctx, vm.Endpoint, tok8080)
	if resumed.Instance != first.Instance || resumed.Hits != 4 {
		t.Errorf("after auto-resume: %+v, want instance %s with 4 hits", resumed, first.Instance)
	}
	if got, _ := d.mv.Get(ctx, vm.MicrovmID); got == nil || got.State != "RUNNING" {
		t.Errorf("after auto-resume: %+v", got)
	}

	// Every hook once, in order; the run hook had the payload. /ready ran
	// before the template's snapshot, so the clone remembers it; /validate
	// ran in the build's test clone.
	tokAll, err := d.mv.AuthToken(ctx, vm.MicrovmID, time.Minute, mvc.AllPorts())
	if err != nil {
		t.Fatal(err)
	}
	st, b = endpointGet(t, ctx, vm.Endpoint, "/hooks", tokAll, 9000)
	var calls []struct {
		Name   string `json:"name"`
		Body   string `json:"body"`
		Status int    `json:"status"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &calls) != nil {
		t.Fatalf("GET /hooks: %d %s", st, b)
	}
	var names []string
	for _, c := range calls {
		names = append(names, c.Name)
		if c.Name == "run" && c.Body != in.RunHookPayload {
			t.Errorf("run hook's body %q, want the payload", c.Body)
		}
	}
	if strings.Join(names, ",") != "ready,run,suspend,resume" {
		t.Errorf("hooks %v, want ready,run,suspend,resume", names)
	}

	// gRPC (HTTP/2 without TLS) to the guest's health service on 8081.
	hostPort := strings.TrimSuffix(strings.TrimPrefix(vm.Endpoint, "http://"), "/")
	cc, err := grpc.NewClient("passthrough:///"+hostPort, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", mvc.LoopbackAddr(addr))
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	md := metadata.Pairs("x-aws-proxy-auth", tokAll, "x-aws-proxy-port", "8081")
	hc, err := healthpb.NewHealthClient(cc).Check(metadata.NewOutgoingContext(ctx, md), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health through the endpoint: %v %v", hc, err)
	}

	// A second MicroVM, without auto-resume, for the restart.
	vm2, err := d.mv.Run(ctx, mvc.RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	// Terminate, twice: idempotent; its endpoint then refuses.
	if err := d.mv.Terminate(ctx, vm.MicrovmID); err != nil {
		t.Fatal(err)
	}
	if err := d.mv.Terminate(ctx, vm.MicrovmID); err != nil {
		t.Errorf("a second terminate: %v", err)
	}
	if got, err := d.mv.Get(ctx, vm.MicrovmID); err != nil || got.State != "TERMINATED" {
		t.Errorf("after terminate: %+v %v", got, err)
	}
	if st, _ := endpointGet(t, ctx, vm.Endpoint, "/", tok8080, 0); st == http.StatusOK {
		t.Errorf("a terminated MicroVM's endpoint answered %d", st)
	}

	// A graceful stop suspends vm2; the next daemon finds it and resumes it.
	tok2, err := d.mv.AuthToken(ctx, vm2.MicrovmID, 10*time.Minute, mvc.Port(8080))
	if err != nil {
		t.Fatal(err)
	}
	before := getHits(t, ctx, vm2.Endpoint, tok2)
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := startMicroVMDaemon(t, data)
	got2, err := d2.mv.Get(ctx, vm2.MicrovmID)
	if err != nil || got2.State != "SUSPENDED" {
		t.Fatalf("after a restart: %+v %v, want SUSPENDED", got2, err)
	}
	if err := d2.mv.Resume(ctx, vm2.MicrovmID); err != nil {
		t.Fatal(err)
	}
	// The token, signed with the kept key, still holds.
	after := getHits(t, ctx, got2.Endpoint, tok2)
	if after.Instance != before.Instance || after.Hits != before.Hits+1 {
		t.Errorf("after the restart: %+v, before %+v", after, before)
	}
	if err := d2.mv.Terminate(ctx, vm2.MicrovmID); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(data + "/microvms"); len(entries) > 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Logf("left in data/microvms: %v", names)
	}
}

// waitState polls GetMicrovm until the MicroVM is in state.
func waitState(t *testing.T, ctx context.Context, c *mvc.Client, id, state string) {
	t.Helper()
	for {
		vm, err := c.Get(ctx, id)
		if err == nil && vm.State == state {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("MicroVM %s never %s: %+v %v", id, state, vm, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
