package qemu_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
)

// A guest with the free-page-reporting balloon hands back what it frees,
// and QEMU punches it out of the memory file: the same guest boots with and
// without it, and with it the file ends up with fewer allocated blocks. The
// initramfs's image, which QEMU writes into the guest's memory and the
// guest frees once unpacked (the hello function's is ~10 MB), is the
// clearest part of the difference.
func TestFreePageReportingPunchesMemoryFile(t *testing.T) {
	d := testvm.Driver(t)
	k := testvm.Kernel(t)
	initrd := testvm.Initramfs(t, k, testvm.FunctionZip(t, "./examples/hello"))
	boot := func(name string, reporting bool) (vmm.Machine, string) {
		t.Helper()
		spec := vmm.MachineSpec{
			ID: name + "-" + strconv.Itoa(os.Getpid()), Dir: filepath.Join(t.TempDir(), name), Kernel: k.Path, Initrd: initrd, ACPI: k.ACPI,
			MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG, FreePageReporting: reporting,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		m, err := d.Boot(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		testvm.KillOnCleanup(t, m.PID())
		t.Cleanup(func() { _ = m.Stop(context.Background()) })
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitAgent(ctx, t, m)
		return m, spec.MemoryFile()
	}
	// Without: what the guest touched stays allocated. The guest reports
	// a freed block 2 s after it was freed, so both are measured later.
	m, mem := boot("noballoon", false)
	time.Sleep(6 * time.Second)
	without := vmm.DiskBytes(mem)
	_ = m.Stop(context.Background())

	m, mem = boot("balloon", true)
	const least = 8 << 20
	deadline := time.Now().Add(30 * time.Second)
	var with int64
	for {
		with = vmm.DiskBytes(mem)
		if with < without-least || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("memory file allocated: %d KiB without free page reporting, %d KiB with", without>>10, with>>10)
	if with >= without-least {
		t.Errorf("with free page reporting the memory file holds %d KiB, not %d KiB less than without (%d KiB)", with>>10, least>>10, without>>10)
	}
	select {
	case <-m.Done():
		t.Error("the machine with the balloon exited")
	default:
	}
}

// waitAgent waits for the agent's first bytes on its channel.
func waitAgent(ctx context.Context, t *testing.T, m vmm.Machine) {
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
