package microvm

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Store keeps images, their versions and MicroVMs; *store.Store is one.
// The Manager holds them in memory too, and writes each change through.
type Store interface {
	CreateMicroVMImage(ctx context.Context, img store.MicroVMImage, v store.MicroVMImageVersion) (store.MicroVMImageVersion, error)
	AddMicroVMImageVersion(ctx context.Context, name, description string, v store.MicroVMImageVersion) (store.MicroVMImageVersion, error)
	UpdateMicroVMImageVersion(ctx context.Context, v store.MicroVMImageVersion) error
	MicroVMImages(ctx context.Context) ([]store.MicroVMImage, error)
	MicroVMImageVersions(ctx context.Context) ([]store.MicroVMImageVersion, error)
	DeleteMicroVMImage(ctx context.Context, name string) error
	DeleteMicroVMImageVersion(ctx context.Context, name string, version int) error
	PutMicroVM(ctx context.Context, m store.MicroVM) error
	MicroVMs(ctx context.Context) ([]store.MicroVM, error)
	DeleteMicroVM(ctx context.Context, id string) error
}

// Meter records what MicroVMs use: their lives, their running periods
// (billed in GB-s) and their suspensions (billed as snapshot storage).
// name is the row of the cost report ("microvm:<image>"). *store.Store is
// one.
type Meter interface {
	EnvStarted(ctx context.Context, id, name string, memoryMB int, at time.Time) error
	EnvEnded(ctx context.Context, id string, at time.Time) error
	MicroVMRunStarted(ctx context.Context, id, name string, memoryMB int, at time.Time) error
	MicroVMRunEnded(ctx context.Context, id string, at time.Time) error
	Suspended(ctx context.Context, id, name string, bytes int64, at time.Time) error
	Resumed(ctx context.Context, id string, at time.Time) error
}

// ImageSource pulls an OCI image and builds its root disk; *rootfs.Builder
// is one.
type ImageSource interface {
	Pull(ctx context.Context, uri string) (*rootfs.Root, error)
}

// Tokens mints and checks the endpoint's auth tokens; vmproxy.Tokens is
// one.
type Tokens interface {
	Mint(id string, ports []PortRange, expires time.Time) (string, error)
	Verify(token, id string, port int, now time.Time) error
}

// Config is how the Manager runs MicroVMs.
type Config struct {
	Store Store
	// Sandbox runs the environments: Dir is the MicroVMs' own folder
	// (data/microvms, apart from data/envs, which the daemon's recovery
	// sweeps); templates are made in Dir/templates. MicroVMs run detached
	// whatever Sandbox.Detached says, so that they outlive a daemon's
	// crash.
	Sandbox sandbox.Config
	// Image is the agent-only image MicroVMs boot (their code is their
	// root disk).
	Image  sandbox.Image
	Images ImageSource
	Tokens Tokens
	// Endpoint is a MicroVM's URL; nil gives none.
	Endpoint func(id string) string
	Meter    Meter // nil meters nothing
	Region   string
	// NetworkPolicy is the MicroVMs' egress policy; nil is
	// network.DefaultPolicy.
	NetworkPolicy *network.Policy
	Log           *slog.Logger
	// Now is the clock of idle decisions; time.Now if nil.
	Now func() time.Time
	// IdleTick is how often the idle policies are applied; 5 s if zero.
	IdleTick time.Duration
	// KeepTerminated is how long a terminated MicroVM is still listed; 1 h
	// if zero.
	KeepTerminated time.Duration
	// Forgotten is told of each terminated MicroVM forgotten after
	// KeepTerminated (a cluster drops the record of which host runs it);
	// nil tells no one.
	Forgotten func(ctx context.Context, id string)
	// BuildTimeout bounds an image build; 30 min if zero.
	BuildTimeout time.Duration

	// dial reaches a guest port of an environment; Env.DialGuest if nil.
	// Unit tests on the fake VMM (which has no streams port) set it.
	dial func(ctx context.Context, env *sandbox.Env, port int) (net.Conn, error)
	// traffic reads an environment's network byte count; nil reads its
	// veth's counters.
	traffic func(env *sandbox.Env) (uint64, bool)
}

// Defaults.
const (
	defaultIdleTick       = 5 * time.Second
	defaultKeepTerminated = time.Hour
	defaultBuildTimeout   = 30 * time.Minute
	// opTimeout bounds one lifecycle operation (clone, suspend, resume,
	// terminate) that a caller's cancel must not cut in half.
	opTimeout = 10 * time.Minute
)

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, errors.New("microvm: no store")
	}
	if c.Sandbox.Dir == "" {
		return c, errors.New("microvm: no folder (Sandbox.Dir)")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.IdleTick <= 0 {
		c.IdleTick = defaultIdleTick
	}
	if c.KeepTerminated <= 0 {
		c.KeepTerminated = defaultKeepTerminated
	}
	if c.BuildTimeout <= 0 {
		c.BuildTimeout = defaultBuildTimeout
	}
	if c.Region == "" {
		c.Region = sandbox.DefaultRegion
	}
	if c.dial == nil {
		c.dial = func(ctx context.Context, env *sandbox.Env, port int) (net.Conn, error) {
			return env.DialGuest(ctx, port)
		}
	}
	if c.traffic == nil {
		c.traffic = vethBytes
	}
	c.Sandbox.Detached = true
	return c, nil
}
