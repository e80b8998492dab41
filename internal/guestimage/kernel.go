package guestimage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
)

// Kernel is the kernel a microVM boots.
type Kernel struct {
	// Path is an uncompressed ELF vmlinux, which QEMU boots through PVH
	// without the time a bzImage spends decompressing itself.
	Path string
	// Version is the kernel release, e.g. "6.1.0-56-amd64".
	Version string
	// Source says where it was found: "flag", "cache" or "distro".
	Source string
	// Modules are the modules its virtio devices need, in load order; empty
	// for a kernel with its drivers built in.
	Modules []string
	// ACPI is true for a kernel that finds its devices through ACPI (the
	// distribution's); Hearth's minimal kernel has no ACPI and gets its
	// virtio-mmio devices on the command line.
	ACPI bool
}

// KernelOptions say where to look for a kernel.
type KernelOptions struct {
	// Path is an explicit kernel (ELF or bzImage); it wins when set.
	Path string
	// CacheDir is Hearth's cache: make kernel leaves the minimal kernel at
	// CacheDir/kernel/vmlinux, and extracted ELFs go to CacheDir/kernel.
	CacheDir string
	// BootDir and ModulesRoot locate the distribution's kernel; default /boot
	// and /lib/modules.
	BootDir     string
	ModulesRoot string
}

// GuestModules are the distribution kernel's modules a Hearth VM needs: the
// virtio-mmio transport, the console driver behind the agent's channels,
// the block driver and ext4 for the root and /tmp disks (with crc32c,
// which ext4 asks the crypto API for by name: a soft dependency that
// modules.dep does not list, and there is no modprobe in the guest), and
// the network card's driver.
var GuestModules = []string{"virtio_mmio", "virtio_console", "virtio_blk", "crc32c_generic", "ext4", "virtio_net"}

// ErrNoKernel is returned when no kernel can be found.
var ErrNoKernel = errors.New("no guest kernel found")

// FindKernel picks the kernel: an explicit path, else the cached minimal
// kernel, else the distribution's installed kernel.
func FindKernel(opts KernelOptions) (*Kernel, error) {
	if opts.BootDir == "" {
		opts.BootDir = "/boot"
	}
	if opts.ModulesRoot == "" {
		opts.ModulesRoot = "/lib/modules"
	}
	if opts.Path != "" {
		if _, err := os.Stat(opts.Path); err != nil {
			return nil, fmt.Errorf("%w: --kernel %s: %w", ErrNoKernel, opts.Path, err)
		}
		return prepare(opts, opts.Path, "flag")
	}
	if opts.CacheDir != "" {
		p := filepath.Join(opts.CacheDir, "kernel", "vmlinux")
		if _, err := os.Stat(p); err == nil {
			return prepare(opts, p, "cache")
		}
	}
	images, _ := filepath.Glob(filepath.Join(opts.BootDir, "vmlinuz-*"))
	slices.SortFunc(images, compareVersions)
	if len(images) > 0 {
		return prepare(opts, images[len(images)-1], "distro")
	}
	return nil, fmt.Errorf("%w: run `make kernel` to build Hearth's minimal kernel (needs: apt-get install linux-source-6.1 bc flex bison libelf-dev libssl-dev), or install Debian's: apt-get install linux-image-amd64, or pass --kernel", ErrNoKernel)
}

// prepare turns an image into a bootable Kernel: a bzImage is extracted to
// an ELF in the cache, and a kernel whose modules are installed on the host
// gets the modules it needs.
func prepare(opts KernelOptions, path, source string) (*Kernel, error) {
	elf, version, err := toELF(path, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Path: elf, Version: version, Source: source}
	if version == "" {
		return k, nil
	}
	modDir := filepath.Join(opts.ModulesRoot, version)
	if _, err := os.Stat(filepath.Join(modDir, "modules.dep")); err != nil {
		return k, nil // no modules installed: its drivers must be built in
	}
	mods, err := ResolveModules(modDir, GuestModules)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", version, err)
	}
	k.Modules = mods
	k.ACPI = true
	return k, nil
}

var versionRE = regexp.MustCompile(`Linux version (\S+)`)

// kernelVersion finds the release string in a kernel image.
func kernelVersion(b []byte) string {
	if m := versionRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// compareVersions orders vmlinuz-X paths by their version, numerically.
func compareVersions(a, b string) int {
	na, nb := splitNumbers(filepath.Base(a)), splitNumbers(filepath.Base(b))
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] - nb[i]
		}
	}
	return len(na) - len(nb)
}

func splitNumbers(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	if in {
		out = append(out, n)
	}
	return out
}

// isELF reports whether b starts like an ELF file.
func isELF(b []byte) bool { return bytes.HasPrefix(b, []byte("\x7fELF")) }
