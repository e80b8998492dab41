// Package testvm helps tests boot real microVMs: it builds the guest agent
// and test functions once per test binary, finds QEMU and a kernel, and
// makes sure no VM outlives its test. A test that needs a VM skips only
// when QEMU is not installed, and says so.
package testvm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hearthdev/hearth/internal/fnzip"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// ModuleRoot is the repository's root.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// workDir holds what the tests build; reused across runs (Go's build cache
// keeps rebuilds fast), one per user and checkout, so that two checkouts'
// tests never boot each other's agent.
func workDir(t testing.TB) string {
	sum := sha256.Sum256([]byte(ModuleRoot()))
	d := filepath.Join(os.TempDir(), "hearth-vmtest-"+strings.ReplaceAll(os.Getenv("USER"), "/", "")+"-"+hex.EncodeToString(sum[:4]))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// build builds a main package statically, once per test binary.
func build(t testing.TB, pkg, out string, ldflags string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[out]; ok {
		return p
	}
	// Test binaries of several packages run at once and share these
	// files: build aside, then rename, so a reader never sees half a file.
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	built[out] = out
	return out
}

// Agent returns a freshly built static hearth-agent.
func Agent(t testing.TB) string {
	return build(t, "./cmd/hearth-agent", filepath.Join(workDir(t), "hearth-agent"), "-s -w")
}

// Hearth returns a freshly built hearth CLI, next to the agent so that it
// finds it as an installed one would.
func Hearth(t testing.TB) string {
	Agent(t)
	return build(t, "./cmd/hearth", filepath.Join(workDir(t), "hearth"), "")
}

// FunctionZip builds the Go function at pkg (e.g. "./examples/hello") as
// bootstrap and returns the path of its zip.
func FunctionZip(t testing.TB, pkg string) string {
	t.Helper()
	name := filepath.Base(pkg)
	dir := filepath.Join(workDir(t), "fn-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(workDir(t), name+".zip")
	buildMu.Lock()
	_, done := built[zipPath]
	buildMu.Unlock()
	if done {
		return zipPath
	}
	bootstrap := build(t, pkg, filepath.Join(dir, "bootstrap"), "-s -w")
	tmp := fmt.Sprintf("%s.%d.tmp", zipPath, os.Getpid())
	if err := fnzip.Write(tmp, bootstrap); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, zipPath); err != nil {
		t.Fatal(err)
	}
	buildMu.Lock()
	built[zipPath] = zipPath
	buildMu.Unlock()
	return zipPath
}

// Driver returns a QEMU driver, or skips the test when QEMU is absent.
func Driver(t testing.TB) *qemu.Driver {
	t.Helper()
	d, err := qemu.New(qemu.Options{})
	if errors.Is(err, qemu.ErrNotInstalled) {
		t.Skipf("skipping VM test: QEMU is not installed (apt-get install qemu-system-x86): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// CacheDir is Hearth's cache, as the CLI and scripts/build-kernel.sh see it.
func CacheDir() string {
	if d := os.Getenv("HEARTH_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hearth")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "hearth")
}

// Kernel returns the kernel Hearth would pick: the minimal one when `make
// kernel` has run, else Debian's. A missing kernel fails the test: CI
// installs or builds one.
func Kernel(t testing.TB) *guestimage.Kernel {
	t.Helper()
	k, err := guestimage.FindKernel(guestimage.KernelOptions{CacheDir: CacheDir()})
	if err != nil {
		t.Fatalf("no guest kernel (run `make kernel`): %v", err)
	}
	return k
}

// DistroKernel returns Debian's installed kernel, prepared for booting.
func DistroKernel(t testing.TB) *guestimage.Kernel {
	t.Helper()
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(images) == 0 {
		t.Fatal("no distribution kernel in /boot (apt-get install linux-image-amd64)")
	}
	k, err := guestimage.FindKernel(guestimage.KernelOptions{Path: images[len(images)-1], CacheDir: CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Initramfs writes an image of code (a zip) for kernel k into t's temp dir.
func Initramfs(t testing.TB, k *guestimage.Kernel, zipPath string) string {
	t.Helper()
	code, err := guestimage.ReadZipFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := guestimage.BuildInitramfs(p, guestimage.InitramfsSpec{Agent: Agent(t), Modules: k.Modules, Code: code}); err != nil {
		t.Fatal(err)
	}
	return p
}

// KillOnCleanup makes sure the process pid is gone when t ends: a leaked
// QEMU would hold a core.
func KillOnCleanup(t testing.TB, pid int) {
	t.Cleanup(func() {
		if Alive(pid) {
			t.Errorf("process %d still running at the end of the test: killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// Alive reports whether a process (not a zombie) with pid exists.
func Alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state is the field after the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
