package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

// A process put in its cgroups gets a CPU weight that follows memory, a
// memory limit of the guest's plus the VMM's overhead, and a task limit;
// where a controller is not writable, the error says so.
func TestLimitProcess(t *testing.T) {
	tests := []struct {
		memory   int
		accel    vmm.Accel
		v1, v2   string // CPU shares, weight
		image    int64  // kernel and initramfs bytes
		memLimit int64
	}{
		{128, vmm.AccelTCG, "74", "7", 0, (128 + overheadMiB + DefaultTCGCacheMiB) << 20},
		{1769, vmm.AccelKVM, "1024", "100", 20 << 20, (1769 + overheadMiB + 40) << 20},
		{3538, vmm.AccelTCG, "2048", "200", 250 << 20, (3538 + overheadMiB + DefaultTCGCacheMiB + 500) << 20},
	}
	for _, tt := range tests {
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		id := "test-" + strconv.Itoa(pid)
		dirs, err := limitProcess(id, pid, limitsFor(vmm.MachineSpec{MemoryMiB: tt.memory, Accel: tt.accel}, tt.image, DefaultTCGCacheMiB))
		if errors.Is(err, errNoCgroup) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("cgroups not writable here (%v): Hearth runs as root with cgroups mounted in CI", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		got := cgroupKnobs(t, pid)
		if len(got) == 0 {
			t.Errorf("%d MB: process %d is in no hearth cgroup", tt.memory, pid)
		}
		want := map[string]string{
			"pids.max": strconv.Itoa(pidsMax),
		}
		if _, ok := got["cpu.weight"]; ok { // v2
			want["cpu.weight"] = tt.v2
			want["memory.max"] = strconv.FormatInt(tt.memLimit, 10)
		} else {
			want["cpu.shares"] = tt.v1
			want["memory.limit_in_bytes"] = strconv.FormatInt(tt.memLimit, 10)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%d MB %s: %s = %q, want %s", tt.memory, tt.accel, k, got[k], v)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		for _, d := range dirs {
			if err := os.Remove(d); err != nil {
				t.Errorf("removing the cgroup: %v", err)
			}
		}
	}
}

// cgroupKnobs reads the limits of the hearth cgroups pid is in, knob by
// knob, from /proc/PID/cgroup: what the kernel applies, not what was meant.
func cgroupKnobs(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-id:controllers:path; v2's controllers field is empty.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/hearth/") {
			continue
		}
		dirs := []string{filepath.Join(cgroupRoot, parts[2])}
		if parts[1] != "" {
			dirs = nil
			for _, c := range strings.Split(parts[1], ",") {
				dirs = append(dirs, filepath.Join(cgroupRoot, c, parts[2]))
			}
			dirs = append(dirs, filepath.Join(cgroupRoot, parts[1], parts[2]))
		}
		for _, d := range dirs {
			for _, k := range []string{"cpu.weight", "cpu.shares", "memory.max", "memory.limit_in_bytes", "pids.max"} {
				if v, err := os.ReadFile(filepath.Join(d, k)); err == nil {
					got[k] = strings.TrimSpace(string(v))
				}
			}
		}
	}
	return got
}
