package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/vmm"
)

// ProbeTimeout bounds the KVM probe's boot: a standard guest boots to the
// agent in well under a second on working KVM; on a KVM that cannot run it
// (a paravirtual nested one, say) it hangs or fails.
const ProbeTimeout = 15 * time.Second

// ResolveAccel turns auto into kvm or tcg. /dev/kvm being there proves
// nothing: some hosts have a KVM that cannot run a standard guest kernel.
// So auto boots spec (an agent-only image) once under KVM and takes KVM only
// if the agent answers. The answer is cached in cacheFile, keyed by what it
// depends on.
func (d *Driver) ResolveAccel(ctx context.Context, want vmm.Accel, spec vmm.MachineSpec, cacheFile string) (vmm.Accel, error) {
	switch want {
	case vmm.AccelKVM, vmm.AccelTCG:
		return want, nil
	case vmm.AccelAuto, "":
	default:
		return "", fmt.Errorf("unknown accel %q", want)
	}
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return vmm.AccelTCG, nil
	}
	unix.Close(fd)
	key := d.probeKey(spec.Kernel)
	if cacheFile != "" {
		if b, err := os.ReadFile(cacheFile); err == nil {
			var c probeCache
			if json.Unmarshal(b, &c) == nil && c.Key == key && (c.Accel == vmm.AccelKVM || c.Accel == vmm.AccelTCG) {
				return c.Accel, nil
			}
		}
	}
	accel := vmm.AccelTCG
	if d.probeKVM(ctx, spec) {
		accel = vmm.AccelKVM
	}
	d.log.Info("acceleration probed", "accel", accel)
	if cacheFile != "" {
		b, _ := json.Marshal(probeCache{Key: key, Accel: accel})
		_ = os.MkdirAll(filepath.Dir(cacheFile), 0o755)
		_ = os.WriteFile(cacheFile, b, 0o644)
	}
	return accel, nil
}

type probeCache struct {
	Key   string    `json:"key"`
	Accel vmm.Accel `json:"accel"`
}

// probeKey names what the probe's answer depends on: the host kernel, QEMU
// and the guest kernel.
func (d *Driver) probeKey(kernel string) string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	parts := []string{unix.ByteSliceToString(uts.Release[:]), d.bin}
	for _, p := range []string{d.bin, kernel} {
		if fi, err := os.Stat(p); err == nil {
			parts = append(parts, fmt.Sprintf("%s:%d:%d", p, fi.Size(), fi.ModTime().Unix()))
		}
	}
	return strings.Join(parts, "|")
}

// probeKVM boots spec under KVM and reports whether the agent spoke.
func (d *Driver) probeKVM(ctx context.Context, spec vmm.MachineSpec) bool {
	dir, err := os.MkdirTemp("", "hearth-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	spec.Dir, spec.Accel, spec.ID, spec.Detached = dir, vmm.AccelKVM, "kvm-probe", false
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 128
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	m, err := d.Boot(ctx, spec)
	if err != nil {
		return false
	}
	defer m.Stop(context.Background())
	if err := m.Start(ctx); err != nil {
		return false
	}
	got := make(chan bool, 1)
	go func() {
		var b [1]byte
		n, err := m.Agent().Read(b[:])
		got <- n == 1 && err == nil
	}()
	select {
	case ok := <-got:
		return ok
	case <-m.Done():
		return false
	case <-ctx.Done():
		return false
	}
}
