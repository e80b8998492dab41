package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// bootSpyVMM records the machine it is asked to boot, and boots none.
type bootSpyVMM struct {
	*fakevmm.VMM
	got *vmm.MachineSpec
}

var errNoBoot = errors.New("not booted: the test reads the spec only")

func (v *bootSpyVMM) Boot(_ context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	v.got = &spec
	return nil, errNoBoot
}

// Under emulation, an environment whose code is in its initramfs gets the
// small translated-code cache; one on a root disk, or any under KVM, the
// driver's.
func TestInitramfsTCGCache(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd", "root.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	root := &sandbox.Root{Disk: filepath.Join(dir, "root.ext4"), Digest: "sha256:x", Size: 9, Command: []string{"/app"}}
	cases := []struct {
		name  string
		accel vmm.Accel
		root  *sandbox.Root
		want  int
	}{
		{"zip, tcg", vmm.AccelTCG, nil, 20},
		{"root disk, tcg", vmm.AccelTCG, root, 0},
		{"zip, kvm", vmm.AccelKVM, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := &bootSpyVMM{VMM: fakevmm.New()}
			cfg := sandbox.Config{VMM: v, Dir: filepath.Join(t.TempDir(), "envs"), Accel: c.accel, InitramfsTCGCacheMiB: 20, BootTimeout: 5 * time.Second}
			fn := sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 3 * time.Second, Root: c.root}
			if _, err := sandbox.Boot(context.Background(), cfg, fn, img); !errors.Is(err, errNoBoot) {
				t.Fatalf("boot: %v, want the spy's refusal", err)
			}
			if v.got == nil || v.got.TCGCacheMiB != c.want {
				t.Fatalf("machine %+v, want a translated-code cache of %d MiB", v.got, c.want)
			}
		})
	}
}
