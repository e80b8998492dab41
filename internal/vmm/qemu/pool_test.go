package qemu

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/vmm"
)

// fakeProc is a pre-started process that counts its kills.
type fakeProc struct {
	key    string
	killed atomic.Int32
}

func (f *fakeProc) kill() { f.killed.Add(1) }

// fakeStarter starts fake processes and remembers them all.
type fakeStarter struct {
	mu    sync.Mutex
	all   []*fakeProc
	fail  bool
	delay time.Duration
}

func (s *fakeStarter) start(ctx context.Context, key string) (*fakeProc, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("no")
	}
	p := &fakeProc{key: key}
	s.all = append(s.all, p)
	return p, nil
}

// settle waits until the pool holds want idle processes of key.
func settle(t *testing.T, p *pool[string, *fakeProc], key string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.counts()[key] != want {
		if time.Now().After(deadline) {
			t.Fatalf("idle %s: %d, want %d", key, p.counts()[key], want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPoolLearnsShapesTakesRefillsAndKills(t *testing.T) {
	s := &fakeStarter{}
	p := newPool(2, 2, s.start)
	// The first take of a shape finds none: it starts the shape's.
	if _, ok := p.take("a"); ok {
		t.Fatal("a new pool had a process")
	}
	settle(t, p, "a", 2)
	got, ok := p.take("a")
	if !ok || got.key != "a" {
		t.Fatalf("take a: %v %v", got, ok)
	}
	settle(t, p, "a", 2) // refilled in the background
	p.take("b")
	settle(t, p, "b", 2)
	// A third shape pushes out the least recently taken one: its idle
	// processes are killed.
	p.take("c")
	settle(t, p, "c", 2)
	settle(t, p, "a", 0)
	p.close()
	if _, ok := p.take("c"); ok {
		t.Fatal("a closed pool gave a process")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.all {
		want := int32(1)
		if f == got {
			want = 0 // taken: the machine's now, not the pool's
		}
		if n := f.killed.Load(); n != want {
			t.Errorf("process of %s killed %d times, want %d", f.key, n, want)
		}
	}
}

func TestPoolCloseKillsProcessesStillStarting(t *testing.T) {
	s := &fakeStarter{delay: 50 * time.Millisecond}
	p := newPool(3, 2, s.start)
	p.take("a")
	p.close() // while the three start
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.all) != 3 {
		t.Fatalf("%d started, want 3", len(s.all))
	}
	for _, f := range s.all {
		if f.killed.Load() != 1 {
			t.Error("a process that finished starting after close was not killed")
		}
	}
}

func TestPoolFailedStartsLeaveItEmpty(t *testing.T) {
	s := &fakeStarter{fail: true}
	p := newPool(2, 2, s.start)
	p.take("a")
	p.close()
	if n := p.counts()["a"]; n != 0 {
		t.Fatalf("idle %d after failed starts", n)
	}
}

func TestPoolable(t *testing.T) {
	base := vmm.MachineSpec{ID: "x", Accel: vmm.AccelTCG, VCPUs: 1, MemoryMiB: 128}
	tests := []struct {
		name  string
		edit  func(*vmm.MachineSpec)
		extra []string
		ok    bool
		key   poolKey
	}{
		{"boot", func(*vmm.MachineSpec) {}, nil, true, poolKey{accel: vmm.AccelTCG, vcpus: 1, memoryMiB: 128}},
		{"restore", func(*vmm.MachineSpec) {}, []string{"-incoming", "defer"}, true, poolKey{accel: vmm.AccelTCG, vcpus: 1, memoryMiB: 128, incoming: true}},
		{"template NIC", func(s *vmm.MachineSpec) { s.NIC = &vmm.NIC{MAC: "52:54:00:00:00:01"} }, nil, true,
			poolKey{accel: vmm.AccelTCG, vcpus: 1, memoryMiB: 128, mac: "52:54:00:00:00:01"}},
		{"detached", func(s *vmm.MachineSpec) { s.Detached = true }, nil, false, poolKey{}},
		{"disks", func(s *vmm.MachineSpec) {
			s.Disks = []vmm.Disk{{Path: "/x", Serial: "root", ReadOnly: true}, {Path: "/y", Serial: "tmp"}}
		}, nil, true, poolKey{accel: vmm.AccelTCG, vcpus: 1, memoryMiB: 128, disks: "root:true,tmp:false"}},
		{"bad serial", func(s *vmm.MachineSpec) { s.Disks = []vmm.Disk{{Path: "/x", Serial: "a,b"}} }, nil, false, poolKey{}},
		{"TAP", func(s *vmm.MachineSpec) { s.NIC = &vmm.NIC{MAC: "m", Tap: "tap0"} }, nil, false, poolKey{}},
		{"other flags", func(*vmm.MachineSpec) {}, []string{"-loadvm", "x"}, false, poolKey{}},
		{"own translation cache", func(s *vmm.MachineSpec) { s.TCGCacheMiB = 20 }, nil, true,
			poolKey{accel: vmm.AccelTCG, vcpus: 1, memoryMiB: 128, tcgCache: 20}},
		{"own translation cache, kvm: none to size", func(s *vmm.MachineSpec) { s.Accel, s.TCGCacheMiB = vmm.AccelKVM, 20 }, nil, true,
			poolKey{accel: vmm.AccelKVM, vcpus: 1, memoryMiB: 128}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.edit(&s)
			k, ok := poolable(s, tt.extra)
			if ok != tt.ok || k != tt.key {
				t.Fatalf("poolable = %+v %v, want %+v %v", k, ok, tt.key, tt.ok)
			}
		})
	}
}

// A pre-started process's command line is a fresh one's less what is bound
// later, so that a snapshot of either loads into the other.
func TestPreconfigArgs(t *testing.T) {
	d := &Driver{}
	spec := vmm.MachineSpec{ID: "x", Kernel: "/k", Initrd: "/i", MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG, Cmdline: "a=b",
		Disks: []vmm.Disk{{Path: "/r", Serial: "root", ReadOnly: true}, {Path: "/t", Serial: "tmp"}}}
	fresh := d.args(spec)
	got := preconfigArgs(fresh, true)
	for _, gone := range []string{"-kernel", "-initrd", "-append", "-object", "-drive"} {
		if slices.Contains(got, gone) {
			t.Errorf("%s is still in %q", gone, got)
		}
	}
	if m := argValue(got, "-M"); m != "microvm,isa-serial=on,rtc=on,acpi=off" {
		t.Errorf("-M %q", m)
	}
	if !slices.Contains(got, "-preconfig") || argValue(got, "-incoming") != "defer" {
		t.Errorf("no -preconfig or -incoming defer: %q", got)
	}
	// Everything else (devices, chardevs, sandbox) is kept in order.
	var rest []string
	for i := 0; i < len(fresh); i++ {
		switch fresh[i] {
		case "-kernel", "-initrd", "-append", "-object", "-drive", "-M":
			i++
			continue
		}
		rest = append(rest, fresh[i])
	}
	var kept []string
	for i := 0; i < len(got); i++ {
		if got[i] == "-M" {
			i++
			continue
		}
		kept = append(kept, got[i])
	}
	if want := append(rest, "-preconfig", "-incoming", "defer"); !slices.Equal(kept, want) {
		t.Errorf("kept %q\nwant %q", kept, want)
	}
	// The pool's process for spec's shape has the same devices.
	key, ok := poolable(spec, []string{"-incoming", "defer"})
	if !ok {
		t.Fatal("not poolable")
	}
	ks := key.spec("x")
	ks.Kernel, ks.Initrd, ks.Cmdline = spec.Kernel, spec.Initrd, spec.Cmdline
	if pre := preconfigArgs(d.args(ks), true); !slices.Equal(pre, got) {
		t.Errorf("pool's command line %q\nmachine's %q", pre, got)
	}
}

func TestPoolRefillsAfterTheDelay(t *testing.T) {
	s := &fakeStarter{}
	p := newPool(1, 2, s.start)
	p.refillDelay = 100 * time.Millisecond
	p.take("a")
	settle(t, p, "a", 1)
	t0 := time.Now()
	if _, ok := p.take("a"); !ok {
		t.Fatal("no process")
	}
	time.Sleep(50 * time.Millisecond)
	if n := p.counts()["a"]; n != 0 {
		t.Fatalf("refilled after %v, before the delay", time.Since(t0))
	}
	settle(t, p, "a", 1)
	p.close()
}
