package qemu_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

// A clone's snapshot keeps only the pages that differ from its template,
// and a restore from it, mapping the template privately again, has the
// very guest memory the clone had: every byte of its 128 MiB, read from
// QEMU's mapping before the suspend and after the restore. The same state
// loaded over an empty memory file (what a restore that did not map the
// template would do) has another memory: the pages left out matter.
func TestCloneSnapshotIsDelta(t *testing.T) {
	d := testvm.Driver(t)
	k := testvm.Kernel(t)
	initrd := testvm.Initramfs(t, k, testvm.FunctionZip(t, "./examples/hello"))
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := "delta-" + strconv.Itoa(os.Getpid())
	spec := func(name string) vmm.MachineSpec {
		return vmm.MachineSpec{
			ID: id + "-" + name, Dir: filepath.Join(root, name), Kernel: k.Path, Initrd: initrd, ACPI: k.ACPI,
			MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG,
		}
	}

	// The template: booted until its agent speaks, then snapshotted with
	// its memory in its shared file.
	tpl := spec("tpl")
	m, err := d.Boot(ctx, tpl)
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, m.PID())
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	awaitAgent(ctx, t, m)
	tplSnap, err := m.Snapshot(ctx, filepath.Join(tpl.Dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if tplSnap.MemoryBase != "" || tplSnap.MemoryInState {
		t.Fatalf("a template's snapshot is %+v, want its memory in its file", tplSnap)
	}

	// Two clones run for a while, then are suspended: one whole, one as
	// a delta over the template.
	clone := func(name string, delta bool) (vmm.Snapshot, [32]byte, time.Duration) {
		s := spec(name)
		s.MemoryPath, s.MemoryPrivate, s.DeltaSnapshot = tpl.MemoryFile(), true, delta
		c, err := d.Restore(ctx, s, tplSnap)
		if err != nil {
			t.Fatal(err)
		}
		testvm.KillOnCleanup(t, c.PID())
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := qemu.StopVCPUs(ctx, c); err != nil {
			t.Fatal(err)
		}
		sum := guestMemorySum(t, c.PID(), tpl.MemoryFile(), s.MemoryMiB)
		t0 := time.Now()
		snap, err := c.Snapshot(ctx, filepath.Join(s.Dir, "state"))
		if err != nil {
			t.Fatal(err)
		}
		return snap, sum, time.Since(t0)
	}
	whole, _, wholeTook := clone("whole", false)
	snap, sum, deltaTook := clone("delta", true)
	if whole.MemoryBase != "" || !whole.MemoryInState {
		t.Fatalf("a clone's snapshot without DeltaSnapshot is %+v, want its whole memory in its state", whole)
	}
	if snap.MemoryBase != tpl.MemoryFile() || !snap.MemoryInState {
		t.Fatalf("a clone's delta snapshot is %+v, want a delta over %s", snap, tpl.MemoryFile())
	}
	t.Logf("clone state: whole %d bytes (%d on disk) in %v; delta %d bytes (%d on disk) in %v",
		whole.StateBytes, vmm.DiskBytes(whole.StatePath), wholeTook, snap.StateBytes, vmm.DiskBytes(snap.StatePath), deltaTook)
	if snap.StateBytes*4 > whole.StateBytes {
		t.Errorf("the delta state is %d bytes, the whole one %d: want under a quarter", snap.StateBytes, whole.StateBytes)
	}

	restore := func(name string, s vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, [32]byte) {
		t0 := time.Now()
		r, err := d.Restore(ctx, s, snap)
		if err != nil {
			t.Fatalf("restore %s: %v", name, err)
		}
		took := time.Since(t0)
		testvm.KillOnCleanup(t, r.PID())
		t.Cleanup(func() { _ = r.Stop(context.Background()) })
		sum := guestMemorySum(t, r.PID(), s.MemoryFile(), s.MemoryMiB)
		t.Logf("restore %s: %v", name, took)
		return r, sum
	}
	private := spec("resumed")
	private.MemoryPath, private.MemoryPrivate, private.DeltaSnapshot = tpl.MemoryFile(), true, true
	r, got := restore("delta", private, snap)
	if got != sum {
		t.Errorf("the guest memory restored from the delta differs from the clone's at its suspend")
	}
	_, _ = restore("whole", spec("whole-resumed"), whole)
	// The restored guest runs on.
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case <-r.Done():
		t.Fatal("the guest restored from the delta ended")
	default:
	}
	_ = r.Stop(ctx)

	// A delta is refused anywhere but over its base, mapped privately.
	if _, err := d.Restore(ctx, spec("refused"), snap); err == nil || !strings.Contains(err.Error(), "delta") {
		t.Errorf("a delta restored over a fresh memory file: err = %v, want a refusal", err)
	}
	// What that refusal prevents: the delta over an empty memory.
	blind := snap
	blind.MemoryBase = ""
	if _, got := restore("blind", spec("blind"), blind); got == sum {
		t.Errorf("the delta over an empty memory has the clone's memory: the pages left out were not needed")
	}
}

// awaitAgent waits for the guest's agent to speak: the guest has booted.
func awaitAgent(ctx context.Context, t *testing.T, m vmm.Machine) {
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

// guestMemorySum is the SHA-256 of a guest's whole memory, read through
// /proc/PID/mem from QEMU's mapping of memFile.
func guestMemorySum(t *testing.T, pid int, memFile string, mib int) [32]byte {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(memFile, &st); err != nil {
		t.Fatal(err)
	}
	start := mappingOf(t, pid, st.Ino, int64(mib)<<20)
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, int64(start), int64(mib)<<20)); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// mappingOf is the address of pid's mapping of the file with inode ino,
// size bytes long.
func mappingOf(t *testing.T, pid int, ino uint64, size int64) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != strconv.FormatUint(ino, 10) {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && int64(b-a) == size {
			return a
		}
	}
	t.Fatalf("QEMU %d has no %d-byte mapping of inode %d", pid, size, ino)
	return 0
}
