package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hearthdev/hearth/internal/vmm"
)

// cgroupRoot is where cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// errNoCgroup is returned where a cgroup controller cannot be used (not
// mounted, or not writable): the VM then runs without that limit.
var errNoCgroup = errors.New("no writable cgroup controller")

// VMM overhead beyond the guest's memory, counted into the memory limit:
// QEMU's own heap, stacks and device state, and under TCG its
// translated-code cache (capped by tb-size).
const overheadMiB = 96

// pidsMax bounds QEMU's tasks (threads: the main loop, RCU, one per vCPU,
// the I/O worker pool up to 64); spawn=deny already forbids new processes.
const pidsMax = 128

// limits is what a machine's cgroup holds it to.
type limits struct {
	cpuWeight   int   // cgroup v2 cpu.weight, 1–10000
	cpuShares   int   // cgroup v1 cpu.shares
	memoryBytes int64 // guest memory plus the VMM's overhead
	pids        int
}

// limitsFor follows the guest's memory: its CPU weight as Lambda's CPU does
// (a full vCPU's worth at 1,769 MB: under contention, a 3,538 MB function
// gets twice the CPU of a 1,769 MB one; a weight, not a cap, so an idle
// host lends its CPU to anyone), its memory the guest's plus the VMM's.
// imageBytes is the kernel's and initramfs's size: QEMU keeps a copy of
// each in its own memory (to reload on reset) besides the one in the
// guest's, and a function's image can be hundreds of megabytes.
func limitsFor(spec vmm.MachineSpec, imageBytes int64, tcgCacheMiB int) limits {
	over := overheadMiB
	if spec.Accel != vmm.AccelKVM {
		over += tcgCacheMiB
	}
	return limits{
		cpuWeight: min(max(spec.MemoryMiB*100/1769, 1), 10000),
		cpuShares: max(spec.MemoryMiB*1024/1769, 2),
		// In whole pages, as the kernel keeps it.
		memoryBytes: (int64(spec.MemoryMiB+over)<<20 + 2*imageBytes + 4095) &^ 4095,
		pids:        pidsMax,
	}
}

// knob is one cgroup setting.
type knob struct{ file, value string }

// limitProcess puts pid in cgroups of its own named id, with l's CPU
// weight, memory and task limits. It returns the cgroup folders, to be
// removed when the process has exited, and an error wrapping errNoCgroup
// for each controller it could not use (the others still apply).
func limitProcess(id string, pid int, l limits) ([]string, error) {
	// cgroup v2: one unified hierarchy, controllers enabled for children.
	if b, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		parent := filepath.Join(cgroupRoot, "hearth")
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("%w: %v", errNoCgroup, err)
		}
		var want []string
		for _, c := range []string{"cpu", "memory", "pids"} {
			if hasWord(string(b), c) {
				want = append(want, "+"+c)
			}
		}
		enable := []byte(strings.Join(want, " "))
		_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), enable, 0o644)
		_ = os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), enable, 0o644)
		dir, err := join(filepath.Join(parent, id), pid,
			knob{"cpu.weight", strconv.Itoa(l.cpuWeight)},
			knob{"memory.max", strconv.FormatInt(l.memoryBytes, 10)},
			knob{"memory.swap.max", "0"},
			knob{"pids.max", strconv.Itoa(l.pids)})
		if dir == "" {
			return nil, err
		}
		return []string{dir}, err
	}
	// cgroup v1: a hierarchy per controller.
	var dirs []string
	var errs []error
	add := func(dir string, err error) {
		if dir != "" {
			dirs = append(dirs, dir)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	cpu := false
	for _, name := range []string{"cpu", "cpu,cpuacct"} {
		base := filepath.Join(cgroupRoot, name)
		if _, err := os.Stat(filepath.Join(base, "cpu.shares")); err == nil {
			add(join(filepath.Join(base, "hearth", id), pid, knob{"cpu.shares", strconv.Itoa(l.cpuShares)}))
			cpu = true
			break
		}
	}
	if !cpu {
		errs = append(errs, fmt.Errorf("%w: cpu", errNoCgroup))
	}
	add(join(filepath.Join(cgroupRoot, "memory", "hearth", id), pid,
		knob{"memory.limit_in_bytes", strconv.FormatInt(l.memoryBytes, 10)}))
	add(join(filepath.Join(cgroupRoot, "pids", "hearth", id), pid,
		knob{"pids.max", strconv.Itoa(l.pids)}))
	return dirs, errors.Join(errs...)
}

// join makes the cgroup dir, sets its knobs and moves pid into it. A knob
// that cannot be set is reported but does not keep pid out; a dir that
// cannot be made or joined is removed and "" returned.
func join(dir string, pid int, knobs ...knob) (string, error) {
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
		return "", fmt.Errorf("%w: %v", errNoCgroup, err)
	}
	var errs []error
	for _, k := range knobs {
		if err := os.WriteFile(filepath.Join(dir, k.file), []byte(k.value), 0o644); err != nil {
			// memory.swap.max is absent where swap is not accounted.
			if !(k.file == "memory.swap.max" && errors.Is(err, os.ErrNotExist)) {
				errs = append(errs, fmt.Errorf("%w: %s: %v", errNoCgroup, k.file, err))
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		_ = os.Remove(dir)
		return "", errors.Join(append(errs, fmt.Errorf("%w: %s: %v", errNoCgroup, dir, err))...)
	}
	return dir, errors.Join(errs...)
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
