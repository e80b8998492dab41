// Package brokertest starts clusters of in-process brokers on loopback
// for tests of what is built on them.
package brokertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearthdev/hearth/internal/broker"
)

// FreePorts returns n loopback ports free a moment ago.
func FreePorts(t testing.TB, n int) []int {
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

// Configs are n brokers' configurations for one cluster named "test" on
// loopback (nodes n0, n1, …), each with its own store folder and the same
// route list.
func Configs(t testing.TB, n int) []broker.Config {
	t.Helper()
	ports := FreePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfgs := make([]broker.Config, n)
	for i := range n {
		cfgs[i] = broker.Config{Dir: filepath.Join(t.TempDir(), "js"), Log: log, Cluster: &broker.Cluster{Name: "test",
			Node: fmt.Sprintf("n%d", i), Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}}
	}
	return cfgs
}

// Start starts brokers from cfgs at once (the first waits for a quorum)
// and shuts them down when the test ends.
func Start(t testing.TB, ctx context.Context, cfgs []broker.Config) []*broker.Broker {
	t.Helper()
	bs := make([]*broker.Broker, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bs[i], errs[i] = broker.New(ctx, cfgs[i])
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

// Cluster starts a cluster of n brokers.
func Cluster(t testing.TB, ctx context.Context, n int) []*broker.Broker {
	t.Helper()
	return Start(t, ctx, Configs(t, n))
}
