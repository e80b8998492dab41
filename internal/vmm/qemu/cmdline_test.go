package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

// A guest whose vCPU is starved at boot (many VMs booting on few cores)
// failed the kernel's check of its timer and panicked ("IO-APIC + timer
// doesn't work"); no_timer_check skips that check.
func TestKernelCmdlineSkipsTimerCheck(t *testing.T) {
	args := (&Driver{}).args(vmm.MachineSpec{ID: "t", Dir: t.TempDir(), MemoryMiB: 128, Accel: vmm.AccelTCG})
	i := slices.Index(args, "-append")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("no -append in %v", args)
	}
	if !slices.Contains(strings.Fields(args[i+1]), "no_timer_check") {
		t.Errorf("kernel command line %q lacks no_timer_check", args[i+1])
	}
}
