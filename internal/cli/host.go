package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/vmhost"
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
type host = vmhost.Host

func (c *CLI) openHost(hf hostFlags, log *slog.Logger) (*host, error) {
	return vmhost.Open(vmhost.Options{Kernel: hf.kernel, Agent: hf.agent, Accel: hf.accel,
		QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir(), Log: log})
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
