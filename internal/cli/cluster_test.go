package cli

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

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// startClusterDaemons starts n daemons (accel tcg) as one cluster on
// loopback.
func startClusterDaemons(t *testing.T, n int) []*cliDaemon {
	t.Helper()
	testvm.Driver(t)
	agent := testvm.Agent(t)
	ports := brokertest.FreePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	ds := make([]*cliDaemon, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		data := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := string(rune('a' + i))
			srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0", KeepPaused: -1,
				Host: vmboot.Options{Agent: agent, Accel: "tcg", CacheDir: testvm.CacheDir()},
				Cluster: server.ClusterOptions{Name: "test", Node: node, Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes,
					Interval: 200 * time.Millisecond, DownAfter: time.Second},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				errs[i] = err
				return
			}
			if err := srv.Start(context.Background()); err != nil {
				errs[i] = err
				return
			}
			ds[i] = &cliDaemon{srv: srv, data: data,
				env: map[string]string{"HEARTH_DATA_DIR": data, "HEARTH_ENDPOINT": "http://" + srv.Addr(), "AWS_SHARED_CREDENTIALS_FILE": ""}}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, d := range ds {
			if d != nil {
				d.srv.Shutdown(context.Background())
				_ = network.RemoveEnvNetworks(filepath.Join(d.data, "envs"))
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("daemon %d: %v", i, err)
		}
	}
	return ds
}

// `hearth cluster status` and `hearth cluster drain` against three daemons
// in cluster mode: every host is seen up with its API address from any of
// them; a drain set through one reaches another, which then sends a cold
// start to another host (booting nothing itself); a cleanly stopped host
// shows stopped.
func TestClusterCommands(t *testing.T) {
	ds := startClusterDaemons(t, 3)
	a, b, c := ds[0], ds[1], ds[2]
	status := func(d *cliDaemon) api.ClusterStatus {
		t.Helper()
		out, _ := d.hearth(t, ExitOK, "cluster", "status", "--json")
		var st api.ClusterStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return st
	}
	host := func(st api.ClusterStatus, node string) cluster.HostStatus {
		for _, h := range st.Hosts {
			if h.Node == node {
				return h
			}
		}
		return cluster.HostStatus{}
	}
	wait := func(what string, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("after 15s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("c sees three hosts up with their API addresses", func() bool {
		st := status(c)
		n := 0
		for i, d := range ds {
			h := host(st, string(rune('a'+i)))
			if h.State == cluster.StateUp && h.API == d.srv.Addr() {
				n++
			}
		}
		return n == 3 && st.Cluster == "test" && st.Node == "c" && st.Replicas == 3
	})
	out, _ := a.hearth(t, ExitOK, "cluster", "status")
	for _, want := range []string{"cluster test, seen from a", "NODE", "CPU", "CODE/ROOTS", "a ", "b ", "c ", b.srv.Addr()} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}

	// A function made through b; b drained through a starts nothing
	// itself: its cold start goes to another host (routing).
	zip := testvm.FunctionZip(t, "./examples/hello")
	b.hearth(t, ExitOK, "fn", "create", "hello", "--zip", zip)
	out, _ = a.hearth(t, ExitOK, "cluster", "drain", "b")
	if !strings.Contains(out, "b: drained") {
		t.Errorf("drain: %s", out)
	}
	wait("b obeys the drain", func() bool { return b.srv.Member().Draining() })
	if out, _ = b.hearth(t, ExitOK, "invoke", "hello"); !strings.Contains(out, "Hello") {
		t.Fatalf("invoke through a drained host: %s", out)
	}
	if st := b.srv.Scheduler().Stats(); st.Busy+st.Warm+st.Paused+st.Suspended != 0 {
		t.Fatalf("a drained host started an environment: %+v", st)
	}
	if sa, sc := a.srv.Scheduler().Stats(), c.srv.Scheduler().Stats(); sa.Warm+sc.Warm != 1 {
		t.Errorf("the cold start did not go to another host: a %+v, c %+v", sa, sc)
	}
	wait("c sees b's drain obeyed", func() bool {
		h := host(status(c), "b")
		return h.DrainRequested && h.Draining
	})
	if out, _ = c.hearth(t, ExitOK, "cluster", "status"); !strings.Contains(out, "obeyed") {
		t.Errorf("status table does not show the drain:\n%s", out)
	}
	// Nothing suspended on b: its moves are done at once.
	if out, _ = a.hearth(t, ExitOK, "cluster", "drain", "b", "--wait", "--timeout", "20s"); !strings.Contains(out, "b: done: 0 moved, 0 dropped, 0 left") {
		t.Errorf("drain --wait: %s", out)
	}
	if out, _ = c.hearth(t, ExitOK, "cluster", "status"); !strings.Contains(out, "b drained: done: 0 moved") {
		t.Errorf("status does not show b's moves:\n%s", out)
	}
	_, errOut := a.hearth(t, ExitBadInput, "cluster", "drain", "nope")
	if !strings.Contains(errOut, "no host nope") {
		t.Errorf("drain of an unknown host: %s", errOut)
	}
	c.hearth(t, ExitOK, "cluster", "drain", "b", "--undo")
	wait("b no longer drained", func() bool { return !b.srv.Member().Draining() })

	// c stops cleanly: the others say stopped.
	if err := c.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ds[2] = nil
	wait("a sees c stopped", func() bool { return host(status(a), "c").State == cluster.StateStopped })
}

func TestClusterFlags(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		f       clusterFlags
		wantErr string
		check   func(server.ClusterOptions) bool
	}{
		{"standalone", clusterFlags{}, "", func(o server.ClusterOptions) bool { return o.Name == "" && o.NATS == "" }},
		{"node alone", clusterFlags{node: "a"}, "need --cluster-name", nil},
		{"routes alone", clusterFlags{routes: []string{"nats://10.0.0.2:6222"}}, "need --cluster-name", nil},
		{"no listen", clusterFlags{name: "prod", node: "a", routes: []string{"nats://10.0.0.2:6222"}}, "--cluster-listen and --routes", nil},
		{"no routes", clusterFlags{name: "prod", node: "a", listen: "10.0.0.1:6222"}, "--cluster-listen and --routes", nil},
		{"both", clusterFlags{name: "prod", nats: "nats://x:4222"}, "not both", nil},
		{"cluster", clusterFlags{name: "prod", node: "a", listen: "10.0.0.1:6222", routes: []string{"nats://10.0.0.2:6222"}, secretFile: secret}, "",
			func(o server.ClusterOptions) bool {
				return o.Name == "prod" && o.Node == "a" && o.Listen == "10.0.0.1:6222" && len(o.Routes) == 1 && o.Secret == "0123456789abcdef0123"
			}},
		{"default node", clusterFlags{nats: "nats://x:4222"}, "", func(o server.ClusterOptions) bool { return o.Node != "" && o.NATS == "nats://x:4222" }},
		{"short secret", clusterFlags{nats: "nats://x:4222", secretFile: short}, "shorter than 16", nil},
		{"missing secret", clusterFlags{nats: "nats://x:4222", secretFile: secret + "-nope"}, "--cluster-secret-file", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.f.options()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(o) {
				t.Fatalf("options %+v, %v", o, err)
			}
		})
	}
}
