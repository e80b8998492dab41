package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// FreePorts returns n loopback ports free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// clusterConfigs are n brokers' configurations for one cluster on
// loopback, every host given the same route list, its own among them.
func clusterConfigs(t *testing.T, n int, secret string) []Config {
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfgs := make([]Config, n)
	for i := range n {
		cfgs[i] = Config{Dir: filepath.Join(t.TempDir(), "js"), Log: log, Cluster: &Cluster{Name: "test", Node: fmt.Sprintf("n%d", i),
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, Secret: secret}}
	}
	return cfgs
}

// startAll starts brokers at once (the first waits for a quorum).
func startAll(t *testing.T, ctx context.Context, cfgs []Config) []*Broker {
	t.Helper()
	bs := make([]*Broker, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bs[i], errs[i] = New(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, b := range bs {
			if b != nil {
				b.Shutdown(context.Background())
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("broker %d: %v", i, err)
		}
	}
	return bs
}

func startCluster(t *testing.T, ctx context.Context, n int, secret string) ([]*Broker, []Config) {
	t.Helper()
	cfgs := clusterConfigs(t, n, secret)
	return startAll(t, ctx, cfgs), cfgs
}

// Three hosts form one JetStream: a stream made on one with Replicas()
// copies is written through another and read through the third, and
// keeps its messages, and takes new ones, when one host is gone.
func TestClusterStreamSurvivesAHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs, _ := startCluster(t, ctx, 3, "")
	for i, b := range bs {
		if b.Replicas() != 3 || !b.Shared() {
			t.Fatalf("broker %d: replicas %d, shared %v; want 3 and shared", i, b.Replicas(), b.Shared())
		}
	}
	if _, err := bs[0].JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"},
		Storage: jetstream.FileStorage, Replicas: bs[0].Replicas()}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[1].JetStream().Publish(ctx, "t.one", []byte("one")); err != nil {
		t.Fatal(err)
	}
	s, err := bs[2].JetStream().Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.CachedInfo().Cluster.Replicas) + 1; got != 3 {
		t.Fatalf("the stream has %d copies, want 3", got)
	}
	// The stream's leader goes: the others elect another, and nothing
	// stored is lost.
	leader := s.CachedInfo().Cluster.Leader
	var gone, left []*Broker
	for _, b := range bs {
		if b.ns.Name() == leader {
			gone = append(gone, b)
		} else {
			left = append(left, b)
		}
	}
	if len(gone) != 1 {
		t.Fatalf("leader %q is none of the brokers", leader)
	}
	gone[0].Shutdown(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := left[0].JetStream().Publish(pctx, "t.two", []byte("two"))
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write after the leader's loss: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s, err = left[1].JetStream().Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "one", 2: "two"} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil || string(m.Data) != want {
			t.Fatalf("message %d after a host's loss: %+v %v", seq, m, err)
		}
	}
}

// A host with a wrong secret does not join: its JetStream finds no quorum.
func TestClusterRoutesNeedTheSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs, cfgs := startCluster(t, ctx, 2, "s3cret")
	cfg := cfgs[0]
	cfg.Dir = filepath.Join(t.TempDir(), "js")
	cfg.Cluster = &Cluster{Name: "test", Node: "intruder", Listen: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]),
		Routes: cfgs[0].Cluster.Routes, Secret: "wrong"}
	cfg.ReadyTimeout = 3 * time.Second
	if b, err := New(ctx, cfg); err == nil {
		b.Shutdown(ctx)
		t.Fatal("a host with the wrong secret joined")
	}
	// The good ones still see only each other.
	if n := bs[0].ns.NumRoutes(); n < 1 {
		t.Fatalf("the members lost their route: %d", n)
	}
	for _, b := range bs {
		for _, r := range b.ns.JetStreamClusterPeers() {
			if r == "intruder" {
				t.Fatal("the intruder is a JetStream peer")
			}
		}
	}
}

func TestClusterConfigRefused(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		c    Cluster
		want string
	}{
		{"no routes", Cluster{Name: "c", Node: "a", Listen: "127.0.0.1:6222"}, "needs --routes"},
		{"only itself", Cluster{Name: "c", Node: "a", Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6222"}}, "needs --routes"},
		{"itself as localhost", Cluster{Name: "c", Node: "a", Listen: "0.0.0.0:6222", Routes: []string{"nats://localhost:6222"}}, "needs --routes"},
		{"bad node", Cluster{Name: "c", Node: "a.b", Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6223"}}, "node name"},
		{"no node", Cluster{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6223"}}, "node name"},
		{"no name", Cluster{Node: "a", Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6223"}}, "cluster name"},
		{"no port", Cluster{Name: "c", Node: "a", Listen: "127.0.0.1", Routes: []string{"nats://127.0.0.1:6223"}}, "listen address"},
		{"http route", Cluster{Name: "c", Node: "a", Listen: "127.0.0.1:6222", Routes: []string{"http://127.0.0.1:6223"}}, "nats://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, Config{Dir: t.TempDir(), Cluster: &tt.c})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// With a URL the daemon embeds no server and uses that NATS's JetStream.
func TestExternalNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	b, err := New(ctx, Config{URL: ns.ClientURL(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	if b.ns != nil || !b.Shared() || b.Replicas() != 1 {
		t.Fatalf("embedded %v, shared %v, replicas %d", b.ns != nil, b.Shared(), b.Replicas())
	}
	if _, err := b.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Publish(ctx, "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// The stream is the external server's.
	acc, err := ns.LookupAccount(server.DEFAULT_GLOBAL_ACCOUNT)
	if err != nil {
		t.Fatal(err)
	}
	if n := acc.JetStreamUsage().Streams; n != 1 {
		t.Fatalf("the external server has %d streams, want 1", n)
	}
	if _, err := New(ctx, Config{URL: "nats://127.0.0.1:1", ReadyTimeout: time.Second}); err == nil {
		t.Fatal("connected to nothing")
	}
}
