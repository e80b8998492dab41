package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// errNoCPUControl is returned where no cgroup CPU controller can be used
// (not mounted, or not writable): the VM then runs without a share.
var errNoCPUControl = errors.New("no writable cgroup cpu controller")

// cpuShare puts pid in a cgroup of its own whose CPU weight follows the
// guest's memory, as Lambda's CPU does (a full vCPU's worth at 1,769 MB):
// under contention, a 3,538 MB function gets twice the CPU of a 1,769 MB
// one. It is a weight, not a cap, so an idle host lends its CPU to anyone.
// It returns the cgroup's folder, to be removed when the VM has exited.
func cpuShare(id string, pid, memoryMiB int) (string, error) {
	// cgroup v2: a unified hierarchy with the cpu controller available.
	if b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil && hasWord(string(b), "cpu") {
		parent := filepath.Join(cgroupRoot, "hearth")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return "", fmt.Errorf("%w: %v", errNoCPUControl, err)
		}
		_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+cpu"), 0o644)
		_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+cpu"), 0o644)
		// cpu.weight is 1–10000, 100 by default: 100 per vCPU's worth.
		weight := min(max(memoryMiB*100/1769, 1), 10000)
		return join(filepath.Join(parent, id), "cpu.weight", strconv.Itoa(weight), "cgroup.procs", pid)
	}
	// cgroup v1: the cpu controller's own hierarchy.
	for _, name := range []string{"cpu", "cpu,cpuacct"} {
		base := filepath.Join(cgroupRoot, name)
		if _, err := os.Stat(filepath.Join(base, "cpu.shares")); err != nil {
			continue
		}
		// cpu.shares is 1024 by default: 1024 per vCPU's worth.
		shares := max(memoryMiB*1024/1769, 2)
		return join(filepath.Join(base, "hearth", id), "cpu.shares", strconv.Itoa(shares), "cgroup.procs", pid)
	}
	return "", errNoCPUControl
}

// join makes the cgroup dir, sets one knob and moves pid into it.
func join(dir, knob, value, procs string, pid int) (string, error) {
	// Sweep the cgroups of VMs whose starter exited before them (detached
	// ones): removing a cgroup only succeeds once it is empty.
	if old, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*")); len(old) > 0 {
		for _, o := range old {
			if fi, err := os.Stat(o); err == nil && fi.IsDir() {
				_ = os.Remove(o)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", errNoCPUControl, err)
	}
	if err := os.WriteFile(filepath.Join(dir, knob), []byte(value), 0o644); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("%w: %s: %v", errNoCPUControl, knob, err)
	}
	if err := os.WriteFile(filepath.Join(dir, procs), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("%w: %v", errNoCPUControl, err)
	}
	return dir, nil
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
