package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// drainHost is one daemon of a test cluster, with an SDK client.
type drainHost struct {
	srv    *Server
	data   string
	client *lambda.Client
}

// startDrainCluster starts n daemons as one cluster on loopback, whose idle
// environments suspend after keepWarm; snapStart makes templates; opts
// change each daemon's configuration.
func startDrainCluster(t *testing.T, n int, keepWarm time.Duration, snapStart bool, opts ...func(*Config)) []*drainHost {
	t.Helper()
	testvm.Driver(t)
	agent := testvm.Agent(t)
	ports := brokertest.FreePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	hs := make([]*drainHost, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		data := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := string(rune('a' + i))
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if os.Getenv("HEARTH_TEST_LOG") != "" {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", node)
			}
			cfg := Config{DataDir: data, Listen: "127.0.0.1:0", KeepWarm: keepWarm, KeepPaused: -1, MaxConcurrency: 4, SnapStart: snapStart,
				Host: vmboot.Options{Agent: agent, Accel: "tcg", CacheDir: testvm.CacheDir()},
				Cluster: ClusterOptions{Name: "test", Node: node, Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes,
					Interval: 200 * time.Millisecond, DownAfter: time.Second},
				Log: log}
			for _, o := range opts {
				o(&cfg)
			}
			srv, err := New(context.Background(), cfg)
			if err != nil {
				errs[i] = err
				return
			}
			if err := srv.Start(context.Background()); err != nil {
				errs[i] = err
				return
			}
			hs[i] = &drainHost{srv: srv, data: data}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, h := range hs {
			if h != nil {
				_ = h.srv.Shutdown(context.Background())
				_ = network.RemoveEnvNetworks(filepath.Join(h.data, "envs"))
				_ = network.RemoveEnvNetworks(filepath.Join(h.data, "microvms"))
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("daemon %d: %v", i, err)
		}
	}
	for _, h := range hs {
		profiles, err := ReadCredentials(CredentialsFile(h.data))
		if err != nil || len(profiles) == 0 {
			t.Fatalf("credentials: %v %v", profiles, err)
		}
		h.client = lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + h.srv.Addr()), Region: "local", RetryMaxAttempts: 1,
			Credentials: awscreds.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})
	}
	return hs
}

// drain turns the drain of h (node) on or off and waits until it obeys.
func (h *drainHost) drain(t *testing.T, node string, on bool) {
	t.Helper()
	if err := h.srv.member.Drain(context.Background(), node, on); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, node+" obeys", func() bool { return h.srv.drain.draining() == on })
}

// progress waits until h's drain progress is done.
func (h *drainHost) progress(t *testing.T, within time.Duration, what string, done func(p *cluster.DrainProgress) bool) *cluster.DrainProgress {
	t.Helper()
	var p *cluster.DrainProgress
	waitUntil(t, within, what, func() bool {
		p = h.srv.moves.DrainProgress()
		return p != nil && done(p)
	})
	return p
}

func waitUntil(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count invokes the counter on h: its count and how its environment
// started.
func (h *drainHost) count(t *testing.T) (int, string) {
	t.Helper()
	out, err := h.client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("counter"), Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Count int }
	if err := json.Unmarshal(out.Payload, &c); err != nil {
		t.Fatalf("%s: %v", out.Payload, err)
	}
	start := ""
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		start = raw.Header.Get("X-Hearth-Start-Type")
	}
	return c.Count, start
}

// A drained host moves its suspended environment to another host, where
// the next invocation resumes it with its memory; a host whose platform
// differs (here a forged kernel digest) refuses it, and with every other
// host refusing too the environment is dropped, with the reasons, and
// stays where it was.
func TestDrainMovesASuspendedEnv(t *testing.T) {
	hs := startDrainCluster(t, 3, time.Second, false)
	a := hs[0]
	ctx := context.Background()
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./examples/counter"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("counter"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs[1:] {
		waitUntil(t, 15*time.Second, "the function replicated", func() bool {
			_, err := h.srv.store.Resolve(ctx, "counter", "")
			return err == nil
		})
	}
	if n, start := a.count(t); n != 1 || start != "cold" {
		t.Fatalf("first call: count %d, start %q", n, start)
	}
	waitUntil(t, 30*time.Second, "a's env suspended", func() bool { return a.srv.sched.Stats().Suspended == 1 })
	oldDir := a.srv.sched.SuspendedEnvs()[0].Dir

	// b and c run another kernel (forged): a's env is dropped.
	kernel := a.srv.moves.plat.Kernel
	for _, h := range hs[1:] {
		h.srv.moves.plat.Kernel = strings.Repeat("0", 64)
	}
	a.drain(t, "a", true)
	p := a.progress(t, 2*time.Minute, "the env dropped", func(p *cluster.DrainProgress) bool { return p.State == cluster.DrainDone })
	if p.Dropped != 1 || p.Moved != 0 || len(p.Recent) != 1 {
		t.Fatalf("progress %+v, want one dropped", p)
	}
	if r := p.Recent[0].Reason; !strings.Contains(r, "kernel digest 000000000000 here") || !strings.Contains(r, "b: ") || !strings.Contains(r, "c: ") {
		t.Errorf("drop reason %q: want both hosts' kernel digests", r)
	}
	if st := a.srv.sched.Stats(); st.Suspended != 1 {
		t.Fatalf("a dropped env is kept on a: %+v", st)
	}
	// The status every host serves shows it.
	waitUntil(t, 5*time.Second, "c sees a's drop", func() bool {
		for _, h := range hs[2].srv.member.Status().Hosts {
			if h.Node == "a" && h.Drain != nil && h.Drain.Dropped == 1 {
				return true
			}
		}
		return false
	})
	a.drain(t, "a", false)

	// The same kernel everywhere: the env moves.
	for _, h := range hs[1:] {
		h.srv.moves.plat.Kernel = kernel
	}
	t0 := time.Now()
	a.drain(t, "a", true)
	p = a.progress(t, 2*time.Minute, "the env moved", func(p *cluster.DrainProgress) bool { return p.Moved == 1 && p.State == cluster.DrainDone })
	took := time.Since(t0)
	mv := p.Recent[len(p.Recent)-1]
	t.Logf("moved %s to %s as %s: %.2fs in the mover, %.2fs from the drain request, %d MB shipped", mv.Env, mv.To, mv.NewEnv, mv.Seconds, took.Seconds(), mv.Bytes>>20)
	if st := a.srv.sched.Stats(); st.Suspended != 0 {
		t.Errorf("a still holds the env: %+v", st)
	}
	if _, err := os.Stat(oldDir); !os.IsNotExist(err) {
		t.Errorf("a's copy is still there: %v", err)
	}
	var to *drainHost
	for i, h := range hs {
		if string(rune('a'+i)) == mv.To {
			to = h
		}
	}
	if to == nil || to == a {
		t.Fatalf("moved to %q", mv.To)
	}
	if st := to.srv.sched.Stats(); st.Suspended != 1 {
		t.Fatalf("%s holds %+v, want one suspended env", mv.To, st)
	}
	if to.srv.nets != nil {
		// Its network is the receiver's, made for it under its new id.
		b, err := os.ReadFile(filepath.Join(to.data, "envs", mv.NewEnv, "manifest.json"))
		if err != nil || !strings.Contains(string(b), `"netns": "`+network.NetnsPrefix+mv.NewEnv+`"`) {
			t.Errorf("the moved env's manifest on %s names no network of its own: %v\n%s", mv.To, err, b)
		}
	}
	if n, start := to.count(t); n != 2 || start != "resume" {
		t.Fatalf("the call on %s: count %d, start %q; want 2, resume (the env's memory)", mv.To, n, start)
	}
	if n, start := to.count(t); n != 3 || start != "warm" {
		t.Fatalf("the next call on %s: count %d, start %q; want 3, warm", mv.To, n, start)
	}
}

// invoke calls function fn on h with payload: the answer and how its
// environment started.
func (h *drainHost) invoke(t *testing.T, fn, payload string) ([]byte, string) {
	t.Helper()
	out, err := h.client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(payload)})
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	start := ""
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		start = raw.Header.Get("X-Hearth-Start-Type")
	}
	return out.Payload, start
}

// A suspended clone's state is a delta over its template's memory: the
// template's memory goes with it (once per receiver), and the clone
// resumes there with its /tmp and its memory; the environment it was
// cloned beside moves too.
func TestDrainMovesAClone(t *testing.T) {
	hs := startDrainCluster(t, 3, 2*time.Second, true)
	a := hs[0]
	ctx := context.Background()
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./internal/testfunction"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("tf"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs[1:] {
		waitUntil(t, 15*time.Second, "the function replicated", func() bool {
			_, err := h.srv.store.Resolve(ctx, "tf", "")
			return err == nil
		})
	}
	if _, start := a.invoke(t, "tf", `{}`); start != "cold" {
		t.Fatalf("first call: start %q", start)
	}
	waitUntil(t, time.Minute, "a's template", func() bool { return a.srv.sched.Stats().Templates == 1 })
	// The warm env busy, the next call is cloned; it writes to its /tmp.
	slept := make(chan string, 1)
	go func() {
		_, start := a.invoke(t, "tf", `{"action":"sleep","ms":3000}`)
		slept <- start
	}()
	time.Sleep(500 * time.Millisecond)
	if out, start := a.invoke(t, "tf", `{"action":"tmp","data":"clone-data"}`); start != "clone" || !strings.Contains(string(out), "clone-data") {
		t.Fatalf("the second call: start %q, %s; want a clone", start, out)
	}
	// It ran in the first env: warm, or resumed when a loaded machine
	// made the template slow enough for that env to idle out first.
	if start := <-slept; start != "warm" && start != "paused" && start != "resume" {
		t.Fatalf("the sleeping call: start %q, want the first env's", start)
	}
	waitUntil(t, time.Minute, "a's two envs suspended", func() bool { return a.srv.sched.Stats().Suspended == 2 })
	clones := 0
	for _, e := range a.srv.sched.SuspendedEnvs() {
		if f, err := sandbox.ReadFolder(e.Dir); err == nil && f.MemoryBase != "" {
			clones++
		}
	}
	if clones != 1 {
		t.Fatalf("%d suspended clones with a delta on a, want 1", clones)
	}

	t0 := time.Now()
	if err := a.srv.member.Drain(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	var p *cluster.DrainProgress
	waitUntil(t, 3*time.Minute, "both envs moved", func() bool {
		p = a.srv.moves.DrainProgress()
		return p != nil && p.Moved == 2 && p.State == cluster.DrainDone
	})
	t.Logf("2 envs (one clone) moved in %.2fs from the drain request", time.Since(t0).Seconds())
	on := map[string]int{}
	for _, mv := range p.Recent {
		t.Logf("moved %s to %s as %s in %.2fs, %d MB shipped", mv.Env, mv.To, mv.NewEnv, mv.Seconds, mv.Bytes>>20)
		on[mv.To]++
	}
	if st := a.srv.sched.Stats(); st.Suspended != 0 {
		t.Errorf("a still holds %+v", st)
	}
	// On each receiver as many calls at once as it took envs: each
	// resumes one; the clone's has its /tmp.
	var contents []string
	for i, h := range hs[1:] {
		node := string(rune('b' + i))
		n := on[node]
		if n == 0 {
			continue
		}
		if st := h.srv.sched.Stats(); st.Suspended != n {
			t.Errorf("%s holds %+v, want %d suspended", node, st, n)
		}
		bases, _ := filepath.Glob(filepath.Join(h.data, "snapstart", "moved-*", "memory"))
		if len(bases) > 1 {
			t.Errorf("%s got %d template memories, want at most one", node, len(bases))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, start := h.invoke(t, "tf", `{"action":"tmp"}`)
				if start != "resume" {
					t.Errorf("a call on %s: start %q, want resume", node, start)
				}
				mu.Lock()
				contents = append(contents, string(out))
				mu.Unlock()
			}()
			time.Sleep(200 * time.Millisecond)
		}
		wg.Wait()
	}
	found := 0
	for _, c := range contents {
		if strings.Contains(c, "clone-data") {
			found++
		}
	}
	if len(contents) != 2 || found != 1 {
		t.Errorf("the moved envs' /tmp: %q; want two, one with the clone's data", contents)
	}
}
