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

// BenchmarkProcessStart measures what a QEMU process start costs under
// Hearth's jail (its user, seccomp, cgroups): from opening its files to a
// paused machine whose QMP, agent and console sockets are connected — the
// part of a cold boot, a resume or a clone that a pre-started VMM skips.
//
//	flock /tmp/hearth-vm.lock go test -run XXX -bench ProcessStart ./internal/vmm/qemu/
func BenchmarkProcessStart(b *testing.B) {
	d := testvm.Driver(b)
	k := testvm.Kernel(b)
	initrd := testvm.Initramfs(b, k, testvm.FunctionZip(b, "./examples/hello"))
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		spec := vmm.MachineSpec{
			ID: "start-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i), Dir: filepath.Join(b.TempDir(), "env"),
			Kernel: k.Path, Initrd: initrd, ACPI: k.ACPI, MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG,
		}
		t0 := time.Now()
		m, err := d.Boot(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		testvm.KillOnCleanup(b, m.PID())
		_ = m.Stop(ctx)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
}
