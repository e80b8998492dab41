package sandbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/vmm"
)

// VMM starts machines; vmm/qemu's Driver is one.
type VMM interface {
	Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error)
	Restore(ctx context.Context, spec vmm.MachineSpec, snap vmm.Snapshot) (vmm.Machine, error)
	Attach(ctx context.Context, spec vmm.MachineSpec, pid int) (vmm.Machine, error)
}

// Function is what an environment runs.
type Function struct {
	Name     string            `json:"name"`
	Version  string            `json:"version"`
	MemoryMB int               `json:"memoryMB"`
	Timeout  time.Duration     `json:"timeout"`
	Handler  string            `json:"handler,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Region   string            `json:"region,omitempty"`
	// LogLimit caps the output kept per phase; 0 is the agent's default.
	LogLimit int64 `json:"logLimit,omitempty"`
	// EphemeralStorageMB is the size of the guest's /tmp; 0 is Lambda's
	// default, 512 MB.
	EphemeralStorageMB int `json:"ephemeralStorageMB,omitempty"`
	// Root, when set, runs the function in a root of its own (a container
	// image's) with a /tmp disk of EphemeralStorageMB; nil runs the code
	// in the initramfs.
	Root *Root `json:"root,omitempty"`
	// Network is the function's egress policy; nil is network.DefaultPolicy.
	Network *network.Policy `json:"network,omitempty"`
	// Service runs Root's command as a long-lived server (a MicroVM's):
	// the environment is ready once it has started, and is reached through
	// DialGuest and Exec, never invoked.
	Service bool `json:"service,omitempty"`
	// ServicesPort, when set (and Config.GuestServices is), is the port on
	// the guest's loopback where the function reaches the host's services
	// (services.go); 0: it reaches none.
	ServicesPort int `json:"servicesPort,omitempty"`
}

// DefaultRegion is the region a function is in when none is set.
const DefaultRegion = "local"

// ARN is the function's ARN in Hearth's account and region.
func (f Function) ARN() string {
	return fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", f.region(), f.Name)
}

func (f Function) region() string {
	if f.Region == "" {
		return DefaultRegion
	}
	return f.Region
}

// VCPUs is the number of vCPUs Lambda gives a memory size: one per
// 1,769 MB, at least one, at most six.
func VCPUs(memoryMB int) int {
	return min(max((memoryMB+1768)/1769, 1), 6)
}

// Image is what the machine boots.
type Image struct {
	Kernel *guestimage.Kernel
	Initrd string
	// AgentDigest identifies the agent build in Initrd: a snapshot made with
	// another build is refused.
	AgentDigest string
}

// Config is how environments are run.
type Config struct {
	VMM VMM
	// Dir is the folder under which each environment makes its own.
	Dir   string
	Accel vmm.Accel
	// InitramfsTCGCacheMiB is, under emulation, the translated-code cache
	// of an environment whose code is in its initramfs (a zip on a
	// provided runtime: the agent and one static binary, which translate
	// to far less than an interpreter on a root disk); 0 leaves it the
	// VMM driver's, as every other environment's.
	InitramfsTCGCacheMiB int
	// Logs receives the function's output; nil discards it.
	Logs io.Writer
	// Detached lets the VMM outlive this process.
	Detached bool
	// AgentDigest is the agent build this host runs now; snapshots made by
	// another are refused. Empty skips the check.
	AgentDigest string
	// InitTimeout bounds the runtime's init (Lambda's is 10 s), past which
	// the function's timeout is added, as Lambda retries init within the
	// first invocation; BootTimeout
	// the kernel's boot to the agent, and a restore to the agent's answer.
	InitTimeout time.Duration
	BootTimeout time.Duration
	// StreamStall is how long the consumer of a streamed response may take
	// nothing before the stream is abandoned; DefaultStreamStall if zero.
	StreamStall time.Duration
	// Net gives each environment a network; nil gives none.
	Net Networks
	// GuestServices serves the connections guests open to the host's
	// services (functions with a ServicesPort); nil: guests reach none.
	GuestServices GuestServices
	Log           *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Logs == nil {
		c.Logs = io.Discard
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = 10 * time.Second
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = 60 * time.Second
	}
	if c.StreamStall == 0 {
		c.StreamStall = DefaultStreamStall
	}
	return c
}
