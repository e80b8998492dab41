package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmboot"
	"github.com/hearthdev/hearth/internal/vmm/qemu"
)

// hostFlags are the flags that choose how VMs are run.
type hostFlags struct {
	kernel string
	agent  string
	accel  string
	pool   int
	// tcgCache is the VMs' translated-code cache under emulation, MiB.
	tcgCache int
}

func (h *hostFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&h.kernel, "kernel", "", "guest kernel (ELF vmlinux or bzImage); default: the one `make kernel` built, else Debian's")
	cmd.Flags().StringVar(&h.agent, "agent", "", "hearth-agent binary; default: next to hearth")
	cmd.Flags().StringVar(&h.accel, "accel", "auto", "auto, kvm or tcg; auto probes once whether KVM runs a guest")
	cmd.Flags().IntVar(&h.pool, "vmm-pool", 0, "QEMU processes kept started ahead per machine shape, so that a boot, resume or clone skips the process's start (0: off)")
	cmd.Flags().IntVar(&h.tcgCache, "tcg-cache-mib", 0, fmt.Sprintf("under emulation (tcg), each VM's translated-code cache in MiB: most of what a paused environment holds; smaller holds less and translates again more (0: %d for a zip's code in the initramfs, %d for code on a root disk)", qemu.InitramfsTCGCacheMiB, qemu.DefaultTCGCacheMiB))
}

// dataDir is where Hearth keeps environments, templates and images:
// --data-dir, else $HEARTH_DATA_DIR, else the config file's dataDir, else the
// user's data folder.
func (c *CLI) dataDir(cmd *cobra.Command) string {
	if d, _ := cmd.Flags().GetString("data-dir"); d != "" {
		return d
	}
	if d := c.Getenv("HEARTH_DATA_DIR"); d != "" {
		return d
	}
	if fc, err := c.config(); err == nil && fc.DataDir != "" {
		return fc.DataDir
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

// host is this machine's VM host, as the CLI uses it.
type host = vmboot.Host

func (c *CLI) openHost(hf hostFlags, log *slog.Logger) (*host, error) {
	return vmboot.Open(vmboot.Options{Kernel: hf.kernel, Agent: hf.agent, Accel: hf.accel,
		QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir(), Log: log, VMMPool: hf.pool, TCGCacheMiB: hf.tcgCache})
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// endpoint is the daemon's API: --endpoint, else $HEARTH_ENDPOINT, else the
// config file's endpoint, else the default listen address.
func (c *CLI) endpoint(cmd *cobra.Command) string {
	if e, _ := cmd.Flags().GetString("endpoint"); e != "" {
		return e
	}
	if e := c.Getenv("HEARTH_ENDPOINT"); e != "" {
		return e
	}
	if fc, err := c.config(); err == nil && fc.Endpoint != "" {
		return fc.Endpoint
	}
	return "http://127.0.0.1:9000"
}

// scratchImage opens the host and writes the image of the zip at zipPath
// into a scratch folder (the work folder of one command), with the
// acceleration resolved. cleanup removes the folder.
func (c *CLI) scratchImage(cmd *cobra.Command, hf hostFlags, zipPath string, log *slog.Logger) (h *host, img sandbox.Image, work string, cleanup func(), err error) {
	code, err := guestimage.ReadZipFile(zipPath)
	if err != nil {
		return nil, img, "", nil, err
	}
	if h, err = c.openHost(hf, log); err != nil {
		return nil, img, "", nil, err
	}
	if work, err = os.MkdirTemp("", "hearth-"+cmd.Name()+"-"); err != nil {
		return nil, img, "", nil, err
	}
	cleanup = func() { os.RemoveAll(work) }
	if img, err = h.Image(work, code); err == nil {
		err = h.ResolveAccel(cmd.Context(), img)
	}
	if err != nil {
		cleanup()
		return nil, img, "", nil, err
	}
	return h, img, work, cleanup, nil
}
