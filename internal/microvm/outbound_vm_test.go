package microvm

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// outboundPort is where the test host counts the guest's connections
// (its own HTTP server on 80 counts nothing).
const outboundPort = 8000

// Outbound traffic is activity: a real MicroVM whose server connects to a
// test host every 300 ms stays RUNNING well past its maxIdle (the byte
// counters of its veth move between idle ticks), while one of the same
// image without that traffic is SUSPENDED by the same policy in that time.
func TestRealMicroVMOutboundActivity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("a MicroVM's network needs root: run the tests as root, as .ci/run does")
	}
	const (
		tick    = 500 * time.Millisecond
		maxIdle = 2 // seconds
		every   = 300 * time.Millisecond
	)
	ctx := context.Background()
	drv := testvm.Driver(t)
	k := testvm.Kernel(t)
	dir := t.TempDir()

	// Every namespace made here is gone at the end: checked after the
	// Manager's shutdown, removed anyway so that a failure leaves none.
	before := network.Namespaces()
	newNamespaces := func() []string {
		var out []string
		for _, ns := range network.Namespaces() {
			if !slices.Contains(before, ns) {
				out = append(out, ns)
			}
		}
		return out
	}
	t.Cleanup(func() {
		for _, ns := range newNamespaces() {
			_ = network.RemoveNetns(ns)
		}
	})

	host, err := network.NewTestHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Close() })
	var conns atomic.Int64
	var ln net.Listener
	if err := network.InNetns(network.Lease{Netns: host.Netns}.NetnsPath(), func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(outboundPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 512)
				_, _ = c.Read(b)
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
			}()
		}
	}()

	nets, err := network.New(ctx, network.Config{DNS: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nets.Close(context.Background()) })

	ref, initrd, st, roots := realParts(t, ctx, dir, k)
	rec := &recordedNets{Manager: nets, names: map[string]bool{}}
	sbx := sandbox.Config{VMM: drv, Dir: filepath.Join(dir, "microvms"), Accel: vmm.AccelTCG, BootTimeout: 120 * time.Second, Net: rec}
	m, err := New(ctx, Config{Store: st, Meter: st, Images: roots, Tokens: hmacTokens{key: []byte("k")}, Sandbox: sbx,
		Image: sandbox.Image{Kernel: k, Initrd: initrd}, IdleTick: tick})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	m.Start(ctx)

	// The ready hook makes the template's snapshot wait for the server,
	// and so for its outbound loop.
	hooks := &Hooks{Port: testvm.MicroVMHookPort, Ready: true}
	target := net.JoinHostPort(network.TestHostAddr.Addr().String(), strconv.Itoa(outboundPort))
	for _, in := range []ImageInput{
		{Name: "chatty", ImageURI: ref, MemoryMiB: 256, Hooks: hooks,
			EnvironmentVariables: map[string]string{"OUTBOUND_TO": target, "OUTBOUND_EVERY": every.String()}},
		{Name: "quiet", ImageURI: ref, MemoryMiB: 256, Hooks: hooks},
	} {
		if _, err := m.CreateImage(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	for _, img := range []string{"chatty", "quiet"} {
		for {
			iv, err := m.GetImageVersion(ctx, img, "1")
			if err != nil {
				t.Fatal(err)
			}
			if iv.State == ImageCreated {
				break
			}
			if iv.State != ImageCreating {
				t.Fatalf("build of %s: %s: %s", img, iv.State, iv.StateReason)
			}
			if time.Since(t0) > 5*time.Minute {
				t.Fatal("the builds take more than 5 minutes")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("images built in %s; the test host saw %d connections from the build", time.Since(t0), conns.Load())

	type running struct {
		id, netns string
		pid       int
	}
	policy := &IdlePolicy{MaxIdleDurationSeconds: maxIdle}
	run := func(img string) running {
		t.Helper()
		vm, err := m.Run(ctx, RunInput{ImageIdentifier: img, IdlePolicy: policy})
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		env := m.vms[vm.ID].env
		m.mu.Unlock()
		l, ok := env.Lease()
		if vm.State != StateRunning || env.PID() <= 0 || !ok || l.Link == "" {
			t.Fatalf("run %s: %+v, pid %d, lease %+v", img, vm, env.PID(), l)
		}
		testvm.KillOnCleanup(t, env.PID())
		return running{id: vm.ID, netns: l.Netns, pid: env.PID()}
	}
	state := func(id string) MicroVM {
		t.Helper()
		got, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// The chatty one first: it is idle-eligible the longest.
	chatty := run("chatty")
	quiet := run("quiet")
	ran := time.Now()
	seen := conns.Load()

	// Until the quiet one is suspended, and maxIdle and 4 ticks more have
	// passed since it ran: the chatty one runs all along.
	for {
		if got := state(chatty.id); got.State != StateRunning {
			t.Fatalf("the MicroVM with outbound traffic is %s after %s: %s", got.State, time.Since(ran), got.StateReason)
		}
		q := state(quiet.id)
		if q.State == StateSuspended && time.Since(ran) >= maxIdle*time.Second+4*tick {
			if !strings.Contains(q.StateReason, "Idle") {
				t.Errorf("quiet suspended for %q, want the idle policy", q.StateReason)
			}
			break
		}
		if !slices.Contains([]State{StateRunning, StateSuspending, StateSuspended}, q.State) {
			t.Fatalf("the quiet MicroVM is %s: %s", q.State, q.StateReason)
		}
		if time.Since(ran) > 90*time.Second {
			t.Fatalf("the quiet MicroVM is still %s %s after its run (maxIdle %ds, tick %s)", q.State, time.Since(ran), maxIdle, tick)
		}
		time.Sleep(tick / 2)
	}
	t.Logf("quiet suspended, chatty running, %s after the runs; the test host saw %d connections", time.Since(ran), conns.Load()-seen)
	if testvm.Alive(quiet.pid) {
		t.Errorf("the quiet MicroVM's QEMU %d runs on after its suspend", quiet.pid)
	}
	if !testvm.Alive(chatty.pid) {
		t.Errorf("the chatty MicroVM's QEMU %d is gone", chatty.pid)
	}
	if n := conns.Load() - seen; n < 3 {
		t.Errorf("the test host saw %d connections from the running MicroVMs, want several", n)
	}

	for _, v := range []running{chatty, quiet} {
		if err := m.Terminate(ctx, v.id); err != nil {
			t.Fatal(err)
		}
		if testvm.Alive(v.pid) {
			t.Errorf("QEMU %d still runs after terminate", v.pid)
		}
		if slices.Contains(network.Namespaces(), v.netns) {
			t.Errorf("namespace %s left after terminate", v.netns)
		}
	}
	for _, img := range []string{"chatty", "quiet"} {
		if err := m.DeleteImage(ctx, img); err != nil {
			t.Error(err)
		}
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	// Only this manager's namespaces: other test packages running at the
	// same time make theirs.
	for _, ns := range newNamespaces() {
		if rec.made(ns) {
			t.Errorf("namespace %s of this manager left after its shutdown", ns)
		}
	}
}

// recordedNets is the network manager, noting each namespace it makes.
type recordedNets struct {
	*network.Manager
	mu    sync.Mutex
	names map[string]bool
}

func (r *recordedNets) Create(ctx context.Context, envID, function string, p network.Policy) (network.Lease, error) {
	l, err := r.Manager.Create(ctx, envID, function, p)
	if err == nil {
		r.mu.Lock()
		r.names[l.Netns] = true
		r.mu.Unlock()
	}
	return l, err
}

func (r *recordedNets) made(ns string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[ns]
}
