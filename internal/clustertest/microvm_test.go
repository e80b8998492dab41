package clustertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	mvc "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

func microVMClient(t *testing.T, h *clustertest.Host, keys server.Profile) *mvc.Client {
	t.Helper()
	c, err := mvc.New(h.API, mvc.Credentials{AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey, Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A MicroVM created through host a is used through host b: its API
// (get, list, token, exec over a WebSocket) and its endpoint (HTTP and
// WebSocket); a key rotated on c is accepted on a and a revocation on c
// refuses the old key on a; with a down, b answers a clear error.
func TestMicroVMThroughAnyHost(t *testing.T) {
	img := testvm.MicroVMImage(t)
	c := clustertest.Start(t, clustertest.Options{})
	a, b, hc := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The image's registry, on a's own loopback (a pulls it over plain
	// HTTP, which Hearth allows only on loopback), pushed to from here.
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	inside, err := a.ListenInside("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	here, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []net.Listener{inside, here} {
		srv := &http.Server{Handler: reg}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { srv.Close() })
	}
	ref, err := name.ParseReference(here.Addr().String()+"/agent:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	viaA, viaB := microVMClient(t, a, a.Keys), microVMClient(t, b, b.Keys)
	im, err := viaA.CreateImage(ctx, mvc.ImageInput{Name: "agent", ImageURI: inside.Addr().String() + "/agent:v1",
		Resources: []mvc.Resources{{MinimumMemoryInMiB: 256}}})
	if err != nil {
		t.Fatalf("CreateMicrovmImage through a: %v", err)
	}
	if _, err := viaA.WaitImage(ctx, "agent", im.ImageVersion); err != nil {
		t.Fatal(err)
	}
	vm, err := viaA.Run(ctx, mvc.RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatalf("RunMicrovm through a: %v", err)
	}
	if _, err := viaA.WaitRunning(ctx, vm.MicrovmID); err != nil {
		t.Fatal(err)
	}

	// The API through b.
	got, err := viaB.Get(ctx, vm.MicrovmID)
	if err != nil || got.State != "RUNNING" {
		t.Fatalf("GetMicrovm through b: %+v %v", got, err)
	}
	items, err := viaB.ListAll(ctx, mvc.ListInput{})
	if err != nil || len(items) != 1 || items[0].MicrovmID != vm.MicrovmID || items[0].Node != a.Node {
		t.Fatalf("ListMicrovms through b (one item, run by a): %+v %v", items, err)
	}
	token, err := viaB.AuthToken(ctx, vm.MicrovmID, 10*time.Minute, mvc.Port(8080))
	if err != nil {
		t.Fatalf("CreateMicrovmAuthToken through b: %v", err)
	}
	var out bytes.Buffer
	st, err := viaB.ExecAll(ctx, vm.MicrovmID, mvc.ExecRequest{Argv: []string{"testmicrovm", "echo-args", "from-b"}, Env: []string{"PATH=/app"}}, nil, &out, io.Discard)
	if err != nil || st.Code != 0 || !strings.Contains(out.String(), "from-b") {
		t.Fatalf("exec through b: %+v %v %q", st, err, out.String())
	}

	// The endpoint through b's URL listener (by host name), HTTP and a
	// WebSocket (the path form, with AWS's subprotocols).
	host := vm.MicrovmID + ".lambda-microvm.localhost"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/", nil)
	req.Host = host
	req.Header.Set(mvc.AuthHeader, token)
	var resp *http.Response
	var body []byte
	var hits struct {
		Hits int `json:"hits"`
	}
	// The app in the MicroVM may not listen yet (no ready hook here).
	waitFor(t, time.Minute, "the endpoint through b answers", func() bool {
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return !strings.Contains(string(body), "nothing listens")
	})
	if resp.StatusCode != 200 || json.Unmarshal(body, &hits) != nil || hits.Hits < 1 {
		t.Fatalf("endpoint through b: %d %s", resp.StatusCode, body)
	}
	if n := resp.Header.Get(server.HeaderMicroVMNode); n != a.Node {
		t.Errorf("endpoint through b answered by %q, want %s", n, a.Node)
	}
	req.Header.Set(mvc.AuthHeader, token[:len(token)-2]+"xx")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("endpoint through b with an altered token: %v %v, want 403", resp, err)
	}
	ws, _, err := websocket.Dial(ctx, strings.Replace(b.URL, "http", "ws", 1)+"/microvm/"+vm.MicrovmID+"/ws",
		&websocket.DialOptions{Subprotocols: []string{"lambda-microvms", "lambda-microvms.authentication." + token}})
	if err != nil {
		t.Fatalf("WebSocket through b: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || !strings.Contains(string(msg), "ping") {
		t.Fatalf("WebSocket through b: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// Keys: rotated on c, the new key is accepted on a within seconds; a
	// revocation on c refuses the old one on a.
	next, err := server.RotateKeys(hc.Data, false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "c's new key accepted on a", func() bool {
		_, err := microVMClient(t, a, next).Get(ctx, vm.MicrovmID)
		return err == nil
	})
	t.Logf("a key rotated on c accepted on a after %v", time.Since(start).Round(10*time.Millisecond))
	if _, err := viaA.Get(ctx, vm.MicrovmID); err != nil {
		t.Errorf("the previous key refused on a after a rotation without revoke: %v", err)
	}
	newest, err := server.RotateKeys(hc.Data, true)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the old key refused on a after a revocation on c", func() bool {
		_, err := viaA.Get(ctx, vm.MicrovmID)
		return err != nil
	})
	if _, err := microVMClient(t, b, newest).Get(ctx, vm.MicrovmID); err != nil {
		t.Errorf("the newest key through b: %v", err)
	}

	// The owner down: b says so.
	if err := a.Kill(); err != nil {
		// A MicroVM's QEMU outlives a daemon killed -9 by more than the
		// harness's 10 s (it kills it by PID): noted, not this test's.
		t.Logf("killing a: %v", err)
	}
	waitFor(t, 30*time.Second, "b's clear error for a MicroVM on a down host", func() bool {
		_, err := microVMClient(t, b, newest).Get(ctx, vm.MicrovmID)
		var ae *mvc.APIError
		return errors.As(err, &ae) && ae.Type == "ServiceException" && strings.Contains(ae.Message, "which is down")
	})
}

// waitFor polls ok every 200 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
