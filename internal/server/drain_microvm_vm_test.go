package server

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	mvc "github.com/hearthdev/hearth/client/microvm"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/microvm"
	"github.com/hearthdev/hearth/internal/testvm"
)

// mvClient is a MicroVM client of h, signed with its keys.
func (h *drainHost) mvClient(t *testing.T) *mvc.Client {
	t.Helper()
	profiles, err := ReadCredentials(CredentialsFile(h.data))
	if err != nil || len(profiles) == 0 {
		t.Fatalf("credentials: %v %v", profiles, err)
	}
	c, err := mvc.New("http://"+h.srv.Addr(), mvc.Credentials{AccessKeyID: profiles[0].AccessKeyID, SecretAccessKey: profiles[0].SecretAccessKey, Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// appHits is the test MicroVM app's GET /: its hit counter lives in the
// guest's memory, and its instance id says which process answered.
type appHits struct {
	Hits     int    `json:"hits"`
	Instance string `json:"instance"`
}

// getHits sends GET / for MicroVM endpoint to the URL listener at addr
// (any host's), with token.
func getHits(t *testing.T, ctx context.Context, addr, endpoint, token string) appHits {
	t.Helper()
	req, err := mvc.Request(ctx, http.MethodGet, endpoint, "/", token, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET / through %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h appHits
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &h) != nil {
		t.Fatalf("GET / through %s: %d %s (node %q)", addr, resp.StatusCode, b, resp.Header.Get(HeaderMicroVMNode))
	}
	return h
}

// A drained host moves its MicroVMs: a running one whose idle policy lets
// it be suspended is suspended first; one with no idle policy stays,
// reported with the reason. Hosts whose platform differs (a forged kernel
// digest) refuse it: dropped with the reasons, kept suspended where it
// was. With the platforms equal it moves under its id: every host's API
// shows it on its new host, and its endpoint, through any host, answers
// from the same process with its memory (the app's hit counter) kept.
func TestDrainMovesAMicroVM(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	rs := httptest.NewServer(reg)
	t.Cleanup(rs.Close)
	uri := strings.TrimPrefix(rs.URL, "http://") + "/agent:v1"
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, testvm.MicroVMImage(t)); err != nil {
		t.Fatal(err)
	}
	hs := startDrainCluster(t, 3, time.Minute, false, func(c *Config) { c.URLListen = "127.0.0.1:0" })
	a := hs[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ca := a.mvClient(t)

	// The ready hook: the template is taken once the app listens. The
	// suspend and resume hooks travel with the MicroVM.
	on := mvc.HookEnabled
	img, err := ca.CreateImage(ctx, mvc.ImageInput{Name: "agent", ImageURI: uri, Resources: []mvc.Resources{{MinimumMemoryInMiB: 256}},
		Hooks: &mvc.Hooks{Port: testvm.MicroVMHookPort, MicrovmImageHooks: &mvc.ImageHooks{Ready: on},
			MicrovmHooks: &mvc.MicroVMHooks{Suspend: on, Resume: on}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WaitImage(ctx, "agent", img.ImageVersion); err != nil {
		t.Fatal(err)
	}
	// moving: an idle policy (never idle long enough to suspend on its
	// own here) that resumes on a request; stays: none.
	moving, err := ca.Run(ctx, mvc.RunInput{ImageIdentifier: "agent", IdlePolicy: &mvc.IdlePolicy{MaxIdleDurationSeconds: 3600, AutoResumeEnabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	stays, err := ca.Run(ctx, mvc.RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	token, err := ca.AuthToken(ctx, moving.MicrovmID, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first := getHits(t, ctx, a.srv.URLAddrs()[0], moving.Endpoint, token)
	if again := getHits(t, ctx, a.srv.URLAddrs()[0], moving.Endpoint, token); again.Hits != first.Hits+1 || again.Instance != first.Instance {
		t.Fatalf("second GET: %+v after %+v", again, first)
	}

	reasons := func(p *cluster.DrainProgress) map[string]string {
		out := map[string]string{}
		for _, mv := range p.Recent {
			if mv.To == "" {
				out[mv.Env] = mv.Reason
			}
		}
		return out
	}

	// b and c run another kernel (forged): the MicroVM is suspended for
	// the move, refused by both, and stays on a, suspended.
	kernel := a.srv.moves.plat.Kernel
	for _, h := range hs[1:] {
		h.srv.moves.plat.Kernel = strings.Repeat("0", 64)
	}
	a.drain(t, "a", true)
	p := a.progress(t, 3*time.Minute, "both MicroVMs dropped", func(p *cluster.DrainProgress) bool { return p.State == cluster.DrainDone })
	if p.Dropped != 2 || p.Moved != 0 {
		t.Fatalf("progress %+v, want two dropped", p)
	}
	r := reasons(p)
	for _, mv := range p.Recent {
		if mv.Env == moving.MicrovmID {
			t.Logf("the running MicroVM suspended for the move and refused by both hosts in %.2fs", mv.Seconds)
		}
	}
	if !strings.Contains(r[moving.MicrovmID], "kernel digest 000000000000 here") || !strings.Contains(r[moving.MicrovmID], "b: ") ||
		!strings.Contains(r[moving.MicrovmID], "c: ") {
		t.Errorf("drop reason %q: want both hosts' kernel digests", r[moving.MicrovmID])
	}
	if !strings.Contains(r[stays.MicrovmID], "no idle policy") {
		t.Errorf("the MicroVM with no idle policy: reason %q", r[stays.MicrovmID])
	}
	if v, err := a.srv.microvms.Get(ctx, moving.MicrovmID); err != nil || v.State != microvm.StateSuspended {
		t.Fatalf("the refused MicroVM on a: %+v %v; want it SUSPENDED there", v, err)
	}
	if v, err := a.srv.microvms.Get(ctx, stays.MicrovmID); err != nil || v.State != microvm.StateRunning {
		t.Fatalf("the MicroVM with no idle policy on a: %+v %v; want it RUNNING", v, err)
	}
	a.drain(t, "a", false)

	// The same kernel everywhere: it moves.
	for _, h := range hs[1:] {
		h.srv.moves.plat.Kernel = kernel
	}
	t0 := time.Now()
	a.drain(t, "a", true)
	p = a.progress(t, 3*time.Minute, "the MicroVM moved", func(p *cluster.DrainProgress) bool { return p.Moved == 1 && p.State == cluster.DrainDone })
	took := time.Since(t0)
	var mv cluster.DrainMove
	for _, m := range p.Recent {
		if m.To != "" {
			mv = m
		}
	}
	t.Logf("moved MicroVM %s to %s: %.2fs in the mover, %.2fs from the drain request, %d MB shipped", mv.Env, mv.To, mv.Seconds, took.Seconds(), mv.Bytes>>20)
	if mv.Env != moving.MicrovmID || mv.NewEnv != moving.MicrovmID || mv.Function != "microvm:agent" {
		t.Fatalf("moved %+v", mv)
	}
	if p.Dropped != 1 || !strings.Contains(reasons(p)[stays.MicrovmID], "no idle policy") {
		t.Errorf("progress %+v: want the MicroVM with no idle policy left, with its reason", p)
	}
	var to, other *drainHost
	for i, h := range hs[1:] {
		if string(rune('b'+i)) == mv.To {
			to = h
		} else {
			other = h
		}
	}
	if to == nil {
		t.Fatalf("moved to %q", mv.To)
	}
	if _, err := a.srv.microvms.Get(ctx, moving.MicrovmID); err == nil {
		t.Error("a still has the moved MicroVM")
	}
	if v, err := to.srv.microvms.Get(ctx, moving.MicrovmID); err != nil || v.State != microvm.StateSuspended {
		t.Fatalf("the MicroVM on %s: %+v %v; want it SUSPENDED there", mv.To, v, err)
	}
	if node, ok, err := a.srv.mvmOwners.Owner(ctx, moving.MicrovmID); err != nil || !ok || node != mv.To {
		t.Errorf("owner record: %q %v %v; want %s", node, ok, err, mv.To)
	}
	// Every host's API shows it on its new host.
	for i, h := range hs {
		items, err := h.mvClient(t).ListAll(ctx, mvc.ListInput{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, it := range items {
			if it.MicrovmID == moving.MicrovmID {
				found = it.Node == mv.To
			}
		}
		if !found {
			t.Errorf("host %c lists %+v; want %s on %s", 'a'+i, items, moving.MicrovmID, mv.To)
		}
	}
	// Its endpoint, through the drained host and the third one, with the
	// token minted before the move: the same process, its memory kept.
	got := getHits(t, ctx, other.srv.URLAddrs()[0], moving.Endpoint, token)
	if got.Instance != first.Instance || got.Hits != first.Hits+2 {
		t.Fatalf("after the move: %+v; want instance %s with hit %d (its memory)", got, first.Instance, first.Hits+2)
	}
	if got := getHits(t, ctx, a.srv.URLAddrs()[0], moving.Endpoint, token); got.Instance != first.Instance || got.Hits != first.Hits+3 {
		t.Fatalf("through a: %+v", got)
	}
	v, err := other.mvClient(t).Get(ctx, moving.MicrovmID)
	if err != nil || v.State != string(microvm.StateRunning) {
		t.Fatalf("GetMicrovm through %s: %+v %v; want RUNNING", "the third host", v, err)
	}
}
