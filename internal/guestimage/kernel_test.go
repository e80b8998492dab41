package guestimage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(p, body string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(body), 0o644)
}

func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	dep := strings.Join([]string{
		"kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_ring.ko:",
		"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko",
	}, "\n")
	if err := writeFile(filepath.Join(dir, "modules.dep"), dep); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, "modules.builtin"), "kernel/drivers/block/loop.ko\n"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want    []string
		modules []string
		err     bool
	}{
		{"dependencies first, once each", []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console"}, []string{"virtio_mmio", "virtio_console"}, false},
		{"built-in skipped", nil, []string{"loop"}, false},
		{"dash and underscore alike", []string{"virtio_ring"}, []string{"virtio-ring"}, false},
		{"unknown module", nil, []string{"nope"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveModules(dir, tt.modules)
			if tt.err {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, moduleName(p))
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("got %v, want %v", names, tt.want)
			}
		})
	}
}

func TestFindKernel(t *testing.T) {
	elf := "\x7fELF....Linux version 6.1.99-hearth (gcc) #1"
	t.Run("explicit path wins", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "vmlinux")
		if err := writeFile(p, elf); err != nil {
			t.Fatal(err)
		}
		k, err := FindKernel(KernelOptions{Path: p, CacheDir: t.TempDir(), BootDir: t.TempDir(), ModulesRoot: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if k.Path != p || k.Source != "flag" || k.Version != "6.1.99-hearth" || k.ACPI || len(k.Modules) != 0 {
			t.Errorf("got %+v", k)
		}
	})
	t.Run("cached minimal kernel before the distribution's", func(t *testing.T) {
		cache, boot := t.TempDir(), t.TempDir()
		if err := writeFile(filepath.Join(cache, "kernel", "vmlinux"), elf); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(filepath.Join(boot, "vmlinuz-6.1.0-1-amd64"), elf); err != nil {
			t.Fatal(err)
		}
		k, err := FindKernel(KernelOptions{CacheDir: cache, BootDir: boot, ModulesRoot: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if k.Source != "cache" {
			t.Errorf("source %s, want cache", k.Source)
		}
	})
	t.Run("newest distribution kernel, with its modules", func(t *testing.T) {
		boot, mods := t.TempDir(), t.TempDir()
		for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64"} {
			if err := writeFile(filepath.Join(boot, "vmlinuz-"+v), "\x7fELF Linux version "+v+" "); err != nil {
				t.Fatal(err)
			}
		}
		dep := "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio.ko:\nkernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko\n" +
			"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\nkernel/crypto/crc32c_generic.ko:\n" +
			"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\nkernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\n"
		if err := writeFile(filepath.Join(mods, "6.1.0-10-amd64", "modules.dep"), dep); err != nil {
			t.Fatal(err)
		}
		k, err := FindKernel(KernelOptions{CacheDir: t.TempDir(), BootDir: boot, ModulesRoot: mods})
		if err != nil {
			t.Fatal(err)
		}
		if k.Version != "6.1.0-10-amd64" || k.Source != "distro" || !k.ACPI || len(k.Modules) != 8 {
			t.Errorf("got %+v", k)
		}
	})
	t.Run("nothing found says how to get one", func(t *testing.T) {
		_, err := FindKernel(KernelOptions{CacheDir: t.TempDir(), BootDir: t.TempDir(), ModulesRoot: t.TempDir()})
		if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "make kernel") || !strings.Contains(err.Error(), "apt-get install linux-image-amd64") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("missing explicit kernel", func(t *testing.T) {
		_, err := FindKernel(KernelOptions{Path: "/nonexistent/vmlinux"})
		if !errors.Is(err, ErrNoKernel) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("not a kernel", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "junk")
		if err := writeFile(p, strings.Repeat("junk", 200)); err != nil {
			t.Fatal(err)
		}
		if _, err := FindKernel(KernelOptions{Path: p, CacheDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "neither an ELF nor a bzImage") {
			t.Errorf("got %v", err)
		}
	})
}

// The distribution's real bzImage, where installed, yields an ELF.
func TestExtractDistributionKernel(t *testing.T) {
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(images) == 0 {
		t.Fatal("no /boot/vmlinuz-*: install linux-image-amd64 (scripts/install-deps.sh does)")
	}
	k, err := FindKernel(KernelOptions{Path: images[len(images)-1], CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !isELF(b) || k.Version == "" || !strings.Contains(images[len(images)-1], k.Version) {
		t.Errorf("extracted %s: ELF %v, version %q", k.Path, isELF(b), k.Version)
	}
}
