package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// fakeNets hands out leases and records what became of them.
type fakeNets struct {
	mu      sync.Mutex
	n       int
	live    map[string]network.Lease // by env id
	adopted []string
}

func (f *fakeNets) Create(_ context.Context, envID, _ string, _ network.Policy) (network.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	l := network.Lease{Netns: network.NetnsPrefix + envID, Slot: f.n, Tap: "tap0", MAC: fmt.Sprintf("02:68:65:00:00:%02x", f.n),
		Hostname: envID, Guest: netip.MustParsePrefix(fmt.Sprintf("10.200.0.%d/30", 8*f.n+2))}
	f.live[envID] = l
	return l, nil
}

func (f *fakeNets) Remove(_ context.Context, l network.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, x := range f.live {
		if x.Slot == l.Slot {
			delete(f.live, id)
			return nil
		}
	}
	return errors.New("removed twice")
}

func (f *fakeNets) Resumed(context.Context, network.Lease) error { return nil }

func (f *fakeNets) Adopt(l network.Lease, _ string) {
	f.mu.Lock()
	f.adopted = append(f.adopted, l.Netns)
	f.mu.Unlock()
}

// specVMM records the NIC of every machine it boots or restores.
type specVMM struct {
	*fakevmm.VMM
	mu   sync.Mutex
	nics []*vmm.NIC
}

func (v *specVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	v.record(spec)
	return v.VMM.Boot(ctx, spec)
}

func (v *specVMM) Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error) {
	v.record(spec)
	return v.VMM.Restore(ctx, spec, snap)
}

func (v *specVMM) record(spec vmm.MachineSpec) {
	v.mu.Lock()
	v.nics = append(v.nics, spec.NIC)
	v.mu.Unlock()
}

func (v *specVMM) last() *vmm.NIC {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.nics[len(v.nics)-1]
}

func netFixture(t *testing.T) (sandbox.Config, sandbox.Image, *specVMM, *fakeNets) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	v := &specVMM{VMM: fakevmm.New()}
	nets := &fakeNets{live: map[string]network.Lease{}}
	cfg := sandbox.Config{VMM: v, Dir: filepath.Join(dir, "envs"), BootTimeout: 5 * time.Second, Net: nets}
	return cfg, img, v, nets
}

// An environment keeps one lease through suspends, a restart's Open and
// resumes, with its TAP on every machine, and gives it back at its end.
func TestNetworkLeaseLife(t *testing.T) {
	cfg, img, v, nets := netFixture(t)
	ctx := context.Background()
	fn := sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}
	env, err := sandbox.Boot(ctx, cfg, fn, img)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := env.Lease()
	if !ok || len(nets.live) != 1 {
		t.Fatalf("lease %v %v, live %v", l, ok, nets.live)
	}
	if nic := v.last(); nic == nil || nic.Tap != "tap0" || nic.MAC != l.MAC || nic.Netns != l.NetnsPath() {
		t.Fatalf("boot NIC %+v, lease %+v", nic, l)
	}
	if _, err := env.Suspend(ctx); err != nil {
		t.Fatal(err)
	}
	// Another process opens it from its folder: the lease is adopted.
	env2, err := sandbox.Open(ctx, cfg, env.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(nets.adopted) != 1 || nets.adopted[0] != l.Netns {
		t.Errorf("adopted %v, want %s", nets.adopted, l.Netns)
	}
	if err := env2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if nic := v.last(); nic == nil || nic.MAC != l.MAC || nic.Tap == "" {
		t.Errorf("resume NIC %+v, want the lease's", nic)
	}
	if len(nets.live) != 1 {
		t.Errorf("leases %v after a resume, want the one", nets.live)
	}
	if err := env2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(nets.live) != 0 {
		t.Errorf("leases left after close: %v", nets.live)
	}
}

// A template's card has no cable and no lease; each clone gets a lease
// and a TAP of its own.
func TestNetworkTemplateAndClones(t *testing.T) {
	cfg, img, v, nets := netFixture(t)
	ctx := context.Background()
	fn := sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second}
	tpl, err := sandbox.NewTemplate(ctx, cfg, fn, img)
	if err != nil {
		t.Fatal(err)
	}
	if nic := v.last(); nic == nil || nic.Tap != "" {
		t.Fatalf("template NIC %+v, want a card with no TAP", nic)
	}
	if len(nets.live) != 0 {
		t.Fatalf("template took a lease: %v", nets.live)
	}
	var macs []string
	for range 2 {
		c, err := sandbox.Clone(ctx, cfg, tpl.Dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		l, _ := c.Lease()
		if nic := v.last(); nic == nil || nic.Tap == "" || nic.MAC != l.MAC {
			t.Fatalf("clone NIC %+v, lease %+v", nic, l)
		}
		macs = append(macs, l.MAC)
	}
	if macs[0] == macs[1] || len(nets.live) != 2 {
		t.Errorf("clones' MACs %v, leases %v: want two of their own", macs, nets.live)
	}
	// Without networks, a host refuses the template rather than restore a
	// machine with a card it cannot connect.
	cfg.Net = nil
	if _, err := sandbox.Clone(ctx, cfg, tpl.Dir); !errors.Is(err, sandbox.ErrSnapshotInvalid) {
		t.Errorf("clone without networks: %v, want ErrSnapshotInvalid", err)
	}
}

// A function that asks for a network where there is none fails clearly.
func TestNetworkUnavailable(t *testing.T) {
	cfg, img, _, _ := netFixture(t)
	cfg.Net = nil
	fn := sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second, Network: &network.Policy{Enabled: true, AllowPrivate: true}}
	if env, err := sandbox.Boot(context.Background(), cfg, fn, img); !errors.Is(err, sandbox.ErrNoNetwork) {
		if env != nil {
			_ = env.Close(context.Background())
		}
		t.Fatalf("boot: %v, want ErrNoNetwork", err)
	}
	// The default policy asks for nothing beyond the default: no card.
	p := network.DefaultPolicy()
	fn.Network = &p
	env, err := sandbox.Boot(context.Background(), cfg, fn, img)
	if err != nil {
		t.Fatalf("boot without a network: %v", err)
	}
	_ = env.Close(context.Background())
}
