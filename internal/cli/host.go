package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

// hostFlags are the flags that choose how VMs are run.
type hostFlags struct {
	kernel string
	agent  string
	accel  string
}

func (h *hostFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&h.kernel, "kernel", "", "guest kernel (ELF vmlinux or bzImage); default: the one `make kernel` built, else Debian's")
	cmd.Flags().StringVar(&h.agent, "agent", "", "hearth-agent binary; default: next to hearth")
	cmd.Flags().StringVar(&h.accel, "accel", "auto", "auto, kvm or tcg; auto probes once whether KVM runs a guest")
}

// host is what running VMs on this machine takes: a VMM driver, a kernel,
// the agent and the acceleration.
type host struct {
	driver      *qemu.Driver
	kernel      *guestimage.Kernel
	agent       string
	agentDigest string
	accel       vmm.Accel
	cache       string
	log         *slog.Logger
}

// dataDir is where Hearth keeps environments, templates and images:
// --data-dir, else $HEARTH_DATA_DIR, else the user's data folder.
func (c *CLI) dataDir(cmd *cobra.Command) string {
	if d, _ := cmd.Flags().GetString("data-dir"); d != "" {
		return d
	}
	if d := c.Getenv("HEARTH_DATA_DIR"); d != "" {
		return d
	}
	if d := c.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "hearth")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hearth-data")
	}
	return filepath.Join(home, ".local", "share", "hearth")
}

// cacheDir is Hearth's cache, shared with scripts/build-kernel.sh.
func (c *CLI) cacheDir() string {
	if d := c.Getenv("HEARTH_CACHE_DIR"); d != "" {
		return d
	}
	if d := c.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hearth")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "hearth-cache")
	}
	return filepath.Join(home, ".cache", "hearth")
}

func (c *CLI) openHost(hf hostFlags, log *slog.Logger) (*host, error) {
	accel, err := vmm.ParseAccel(hf.accel)
	if err != nil {
		return nil, err
	}
	cache := c.cacheDir()
	k, err := guestimage.FindKernel(guestimage.KernelOptions{Path: hf.kernel, CacheDir: cache})
	if err != nil {
		return nil, err
	}
	agent, err := guestimage.FindAgent(hf.agent)
	if err != nil {
		return nil, err
	}
	drv, err := qemu.New(qemu.Options{Binary: c.Getenv("HEARTH_QEMU"), Log: log})
	if err != nil {
		return nil, err
	}
	digest, err := guestimage.FileDigest(agent)
	if err != nil {
		return nil, err
	}
	log.Debug("host", "kernel", k.Path, "kernel_source", k.Source, "modules", len(k.Modules), "agent", agent)
	return &host{driver: drv, kernel: k, agent: agent, agentDigest: digest, accel: accel, cache: cache, log: log}, nil
}

// image writes the initramfs for code into dir.
func (h *host) image(dir string, code *guestimage.Code) (sandbox.Image, error) {
	p := filepath.Join(dir, "initramfs.cpio")
	err := guestimage.BuildInitramfs(p, guestimage.InitramfsSpec{Agent: h.agent, Modules: h.kernel.Modules, Code: code})
	if err != nil {
		return sandbox.Image{}, fmt.Errorf("initramfs: %w", err)
	}
	return sandbox.Image{Kernel: h.kernel, Initrd: p, AgentDigest: h.agentDigest}, nil
}

// storedImage returns the image of code kept under imagesDir, building it
// once: a suspended environment needs its initramfs again to resume, so it
// outlives the command that made it. The key covers all that goes into it.
func (h *host) storedImage(imagesDir string, code *guestimage.Code) (sandbox.Image, error) {
	sum := sha256.New()
	fmt.Fprintln(sum, code.Digest(), h.agentDigest, h.kernel.Path, strings.Join(h.kernel.Modules, ","))
	dir := filepath.Join(imagesDir, hex.EncodeToString(sum.Sum(nil))[:16])
	p := filepath.Join(dir, "initramfs.cpio")
	if _, err := os.Stat(p); err == nil {
		return sandbox.Image{Kernel: h.kernel, Initrd: p, AgentDigest: h.agentDigest}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sandbox.Image{}, err
	}
	return h.image(dir, code)
}

// resolveAccel settles auto, probing with img once per host.
func (h *host) resolveAccel(ctx context.Context, img sandbox.Image) error {
	if h.accel != vmm.AccelAuto {
		return nil
	}
	spec := vmm.MachineSpec{Kernel: img.Kernel.Path, Initrd: img.Initrd, ACPI: img.Kernel.ACPI, MemoryMiB: 128, VCPUs: 1}
	a, err := h.driver.ResolveAccel(ctx, vmm.AccelAuto, spec, filepath.Join(h.cache, "accel-probe.json"))
	if err != nil {
		return err
	}
	h.accel = a
	return nil
}

func (h *host) sandboxConfig(dir string, logs io.Writer) sandbox.Config {
	return sandbox.Config{VMM: h.driver, Dir: dir, Accel: h.accel, Logs: logs, Log: h.log, AgentDigest: h.agentDigest}
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
