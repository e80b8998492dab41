package qemu_test

import (
	"context"
	"errors"
	"os"
	"os/user"
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

// A booted QEMU runs as the unprivileged hearth-vmm user (when the tests
// run as root, as in CI), under its seccomp filter, in cgroups that cap its
// memory and tasks, and with a console.log of bounded size although the
// guest's kernel writes far more than the cap to its serial port.
func TestMachineIsJailed(t *testing.T) {
	const consoleLimit = 4 << 10
	d, err := qemu.New(qemu.Options{ConsoleLimit: consoleLimit})
	if errors.Is(err, qemu.ErrNotInstalled) {
		t.Skipf("skipping VM test: QEMU is not installed: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	k := testvm.Kernel(t)
	initrd := testvm.Initramfs(t, k, testvm.FunctionZip(t, "./examples/hello"))
	dir := filepath.Join(t.TempDir(), "env")
	spec := vmm.MachineSpec{
		ID: "jail-" + strconv.Itoa(os.Getpid()), Dir: dir, Kernel: k.Path, Initrd: initrd, ACPI: k.ACPI,
		// Every kernel message to the serial port: tens of kilobytes.
		Cmdline:   "loglevel=8 ignore_loglevel",
		MemoryMiB: 128, VCPUs: 1, Accel: vmm.AccelTCG,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := d.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	testvm.KillOnCleanup(t, m.PID())
	defer m.Stop(context.Background())
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
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

	status := procStatus(t, m.PID())
	if s := status["Seccomp"]; s != "2" {
		t.Errorf("QEMU's Seccomp is %q, want 2 (a filter)", s)
	}
	uid := strings.Fields(status["Uid"])
	if os.Geteuid() == 0 {
		u, err := user.Lookup(qemu.DefaultUser)
		if err != nil {
			t.Fatalf("no user %s (scripts/install-deps.sh creates it): %v", qemu.DefaultUser, err)
		}
		if len(uid) != 4 || uid[0] != u.Uid || uid[1] != u.Uid || uid[2] != u.Uid {
			t.Errorf("QEMU's Uid line is %q, want %s (%s) throughout", status["Uid"], u.Uid, qemu.DefaultUser)
		}
		if g := strings.TrimSpace(status["Groups"]); g != "" {
			t.Errorf("QEMU has supplementary groups %q, want none", g)
		}
		// Its only file of its own is the guest's memory: not the folder,
		// not the console, not QEMU's log.
		for _, name := range []string{"", "console.log", "qemu.log", "console.sock"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) == u.Uid || fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s/%s is writable for QEMU's user (owner %d, mode %v)", dir, name, st.Uid, fi.Mode())
			}
		}
		fi, err := os.Stat(spec.MemoryFile())
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) != u.Uid {
			t.Errorf("the memory file is owned by %d, not by QEMU's user", st.Uid)
		}
	} else if len(uid) == 0 || uid[0] != strconv.Itoa(os.Getuid()) {
		t.Errorf("QEMU's Uid line is %q, want this process's %d", status["Uid"], os.Getuid())
	}

	knobs := qemu.CgroupKnobs(t, m.PID())
	wantMem := strconv.FormatInt(qemu.MemoryLimit(qemu.LimitsFor(spec, fileSize(t, k.Path)+fileSize(t, initrd), qemu.DefaultTCGCacheMiB)), 10)
	if v, ok := knobs["memory.max"]; ok {
		if v != wantMem {
			t.Errorf("memory.max = %s, want %s", v, wantMem)
		}
	} else if v := knobs["memory.limit_in_bytes"]; v != wantMem {
		t.Errorf("memory.limit_in_bytes = %q, want %s", v, wantMem)
	}
	if v := knobs["pids.max"]; v != strconv.Itoa(qemu.PidsMax) {
		t.Errorf("pids.max = %q, want %d", v, qemu.PidsMax)
	}

	// The kernel's messages are in: let the last of them arrive.
	time.Sleep(500 * time.Millisecond)
	_ = m.Stop(context.Background())
	b, err := os.ReadFile(m.ConsolePath())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || len(b) > consoleLimit {
		t.Errorf("console.log is %d bytes, want 1 to %d", len(b), consoleLimit)
	}
	// The kernel's first message was dropped for its newest ones.
	if s := string(b); strings.Contains(s, "Linux version") || !strings.Contains(s, "Run /init") {
		t.Errorf("console.log does not hold the newest output only:\n%s", s)
	}
}

// procStatus is /proc/PID/status, field by field.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
