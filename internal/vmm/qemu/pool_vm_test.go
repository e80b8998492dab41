package qemu_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

// poolPIDs lists the pre-started processes of this test's pool, by the
// name on their command line.
func poolPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "hearth-pool-"+strconv.Itoa(os.Getpid())+"-") && testvm.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A machine booted, and one restored, from pre-started processes run as a
// fresh one would (the agent speaks, the
// snapshot loads and runs), and Close leaves no pre-started QEMU behind.
func TestPoolBootAndRestore(t *testing.T) {
	d, err := qemu.New(qemu.Options{Pool: 1, PoolDir: filepath.Join(t.TempDir(), "pool")})
	if errors.Is(err, qemu.ErrNotInstalled) {
		t.Skipf("skipping VM test: QEMU is not installed: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	k := testvm.Kernel(t)
	initrd := testvm.Initramfs(t, k, testvm.FunctionZip(t, "./examples/hello"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := func(n int) vmm.MachineSpec {
		dir := filepath.Join(t.TempDir(), "env")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// A disk, as every environment has (its /tmp): bound by blockdev-add.
		disk := filepath.Join(dir, "tmp.img")
		if err := os.WriteFile(disk, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 16<<20); err != nil {
			t.Fatal(err)
		}
		return vmm.MachineSpec{ID: "pool-test-" + strconv.Itoa(n), Dir: dir,
			Kernel: k.Path, Initrd: initrd, ACPI: k.ACPI, MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG,
			Disks: []vmm.Disk{{Path: disk, Serial: "tmp"}}}
	}
	// The first boot of a shape starts its own process and the pool's.
	first, err := d.Boot(ctx, spec(0))
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, first.PID())
	_ = first.Stop(ctx)
	waitIdle(t, d, 1)
	pooled := poolPIDs(t)
	if len(pooled) != 1 {
		t.Fatalf("pre-started processes %v, want 1", pooled)
	}
	s := spec(1)
	m, err := d.Boot(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, m.PID())
	defer m.Stop(context.Background())
	if m.PID() != pooled[0] {
		t.Fatalf("boot ran in process %d, not the pre-started %d", m.PID(), pooled[0])
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	agentSpeaks(ctx, t, m)
	// Its cgroup allows the guest's memory (the pool's limits were set to
	// the machine's).
	snap, err := m.Snapshot(ctx, filepath.Join(s.Dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	// A restore is another shape (-incoming defer): its first finds none.
	r, err := d.Restore(ctx, s, snap)
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, r.PID())
	_ = r.Stop(ctx)
	waitIdle(t, d, 2)
	pooled = poolPIDs(t)
	r, err = d.Restore(ctx, s, snap)
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, r.PID())
	defer r.Stop(context.Background())
	if !containsInt(pooled, r.PID()) {
		t.Fatalf("restore ran in process %d, not a pre-started one of %v", r.PID(), pooled)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !testvm.Alive(r.PID()) {
		t.Fatal("restored machine died")
	}
	waitIdle(t, d, 2)
	// Taken processes keep their pool name on their command line.
	var left []int
	for _, pid := range poolPIDs(t) {
		if pid != r.PID() && pid != m.PID() {
			left = append(left, pid)
			testvm.KillOnCleanup(t, pid)
		}
	}
	if len(left) != 2 {
		t.Fatalf("pre-started processes %v, want 2", left)
	}
	d.Close()
	closed = true
	for _, pid := range left {
		if testvm.Alive(pid) {
			t.Errorf("pre-started QEMU %d outlived Close", pid)
		}
	}
	if !testvm.Alive(r.PID()) {
		t.Error("Close ended a machine taken from the pool")
	}
}

func containsInt(l []int, v int) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

func waitIdle(t *testing.T, d *qemu.Driver, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.PoolIdle() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pool idle %d, want %d", d.PoolIdle(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func agentSpeaks(ctx context.Context, t *testing.T, m vmm.Machine) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := m.Agent().Read(b[:])
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("agent channel: %v", err)
		}
	case <-m.Done():
		t.Fatal("QEMU exited before its agent spoke")
	case <-ctx.Done():
		t.Fatal("the agent did not speak")
	}
}
