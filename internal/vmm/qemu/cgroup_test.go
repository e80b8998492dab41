package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A process given a CPU share lands in a cgroup of its own whose weight
// follows memory; where no controller is writable, the error says so.
func TestCPUShare(t *testing.T) {
	tests := []struct {
		memory int
		v1, v2 string
	}{
		{128, "74", "7"},
		{1769, "1024", "100"},
		{3538, "2048", "200"},
	}
	for _, tt := range tests {
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		id := "test-" + strconv.Itoa(cmd.Process.Pid)
		dir, err := cpuShare(id, cmd.Process.Pid, tt.memory)
		if errors.Is(err, errNoCPUControl) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no cgroup CPU control here (%v): Hearth runs as root with cgroups mounted in CI", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		cg, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
		if !strings.Contains(string(cg), "/hearth/"+id) {
			t.Errorf("%d MB: process cgroups %q lack hearth/%s", tt.memory, cg, id)
		}
		knob, want := "cpu.shares", tt.v1
		if _, err := os.Stat(filepath.Join(dir, "cpu.weight")); err == nil {
			knob, want = "cpu.weight", tt.v2
		}
		if got, _ := os.ReadFile(filepath.Join(dir, knob)); strings.TrimSpace(string(got)) != want {
			t.Errorf("%d MB: %s = %q, want %s", tt.memory, knob, got, want)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing the cgroup: %v", err)
		}
	}
}
