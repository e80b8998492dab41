package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/agent/runtimeapi"
	"github.com/hearthdev/hearth/internal/guestproto"
)

// Version is set at link time to the agent's build id.
var Version = "dev"

// Config says how the agent runs. The zero value is not useful; the
// hearth-agent command fills it for PID 1, tests fill it for a host process.
type Config struct {
	// Channel is the byte stream to the host. When nil the agent finds the
	// virtio-serial port named guestproto.PortName.
	Channel io.ReadWriter
	// System, when true, makes the agent prepare the machine: mounts, kernel
	// modules, loopback, and the reaping of orphans. Only for PID 1.
	System bool
	// TaskRoot holds the function's code; its bootstrap is started on Init.
	TaskRoot string
	// RuntimeAPIAddr is where the Runtime API listens.
	RuntimeAPIAddr string
	// Start is when the process started, for the Hello timings.
	Start time.Time
	Log   *slog.Logger
}

// Agent is one running guest agent.
type Agent struct {
	cfg   Config
	out   *guestproto.Writer
	inv   *invocations
	log   *slog.Logger
	procs *supervisor
	// ctx is Run's; services is the streams session that the services
	// listener opens streams on (services.go).
	ctx      context.Context
	services *servicesLink

	mu       sync.Mutex
	initCfg  *guestproto.Init
	envID    string
	restores int
}

// Run prepares the guest, greets the host and serves until ctx ends or the
// channel fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.TaskRoot == "" {
		cfg.TaskRoot = "/var/task"
	}
	if cfg.RuntimeAPIAddr == "" {
		cfg.RuntimeAPIAddr = guestproto.RuntimeAPIAddr
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now()
	}
	a := &Agent{cfg: cfg, log: cfg.Log, ctx: ctx, services: newServicesLink()}
	if cfg.System {
		if err := prepareSystem(cfg.TaskRoot, cfg.Log); err != nil {
			return fmt.Errorf("prepare system: %w", err)
		}
	}
	ch := cfg.Channel
	if ch == nil {
		port, err := openPort(ctx, guestproto.PortName)
		if err != nil {
			return fmt.Errorf("open host channel: %w", err)
		}
		defer port.Close()
		ch = port
	}
	a.out = guestproto.NewWriter(ch)
	a.inv = newInvocations(a.out)
	a.procs = newSupervisor(cfg.System, a.out, a.log)
	if cfg.Channel == nil {
		go serveStreamsPort(ctx, a.log, a.procs, a.services)
	}
	if cfg.System {
		// In a guest, the function never runs as root (see user.go).
		a.procs.cred = functionCredential()
	}
	a.inv.stats = a.procs

	api := runtimeapi.New(a.inv, a.log)
	srvErr := make(chan error, 1)
	ln, err := api.Listen(cfg.RuntimeAPIAddr)
	if err != nil {
		return fmt.Errorf("runtime api: %w", err)
	}
	go func() { srvErr <- api.Serve(ln) }()
	defer api.Close()

	hello := guestproto.Hello{
		AgentVersion: Version,
		UptimeMs:     bootUptimeMs(),
		AgentMs:      float64(time.Since(cfg.Start).Microseconds()) / 1000,
	}
	if err := a.out.Write(guestproto.TypeHello, hello, nil); err != nil {
		return err
	}
	frames := make(chan guestproto.Frame)
	readErr := make(chan error, 1)
	go func() {
		r := guestproto.NewReader(ch)
		for {
			f, err := r.Read()
			if err != nil {
				readErr <- err
				return
			}
			frames <- f
		}
	}()
	for {
		select {
		case <-ctx.Done():
			a.procs.stop()
			return ctx.Err()
		case err := <-srvErr:
			return fmt.Errorf("runtime api stopped: %w", err)
		case err := <-readErr:
			a.procs.stop()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("host channel: %w", err)
		case f := <-frames:
			if err := a.handle(f); err != nil {
				a.log.Error("frame", "type", f.Type, "err", err)
			}
		}
	}
}

func (a *Agent) handle(f guestproto.Frame) error {
	switch f.Type {
	case guestproto.TypeInit:
		var in guestproto.Init
		if err := f.Decode(&in); err != nil {
			return err
		}
		return a.init(in, f.Body)
	case guestproto.TypeInvoke:
		var iv guestproto.Invoke
		if err := f.Decode(&iv); err != nil {
			return err
		}
		a.procs.logs.newPhase()
		return a.inv.push(iv, f.Body)
	case guestproto.TypeResume:
		var r guestproto.Resume
		if err := f.Decode(&r); err != nil {
			return err
		}
		return a.resume(r, f.Body)
	case guestproto.TypePing:
		var p guestproto.Ping
		if err := f.Decode(&p); err != nil {
			return err
		}
		return a.out.Write(guestproto.TypePong, p, nil)
	default:
		return fmt.Errorf("unexpected frame %s", f.Type)
	}
}

// freshen sets the clock from the host's and mixes the host's entropy into
// the kernel's RNG, reseeding it at once: after a restore, the wall clock is
// behind by the time spent suspended, and every clone of one snapshot starts
// with the same RNG state.
func (a *Agent) freshen(unixNano int64, entropy []byte) {
	if !a.cfg.System {
		return
	}
	if err := setClock(unixNano); err != nil {
		a.log.Warn("set clock", "err", err)
	}
	if err := addEntropy(entropy); err != nil {
		a.log.Warn("add entropy", "err", err)
	}
}

// resume runs after every restore from a snapshot, before anything else.
func (a *Agent) resume(r guestproto.Resume, entropy []byte) error {
	t0 := time.Now()
	a.freshen(r.UnixNano, entropy)
	if a.cfg.System {
		if err := configureNet(r.Net); err != nil {
			a.log.Warn("network after restore", "err", err)
		}
	}
	freshenMs := float64(time.Since(t0).Microseconds()) / 1000
	a.mu.Lock()
	a.restores++
	if r.EnvID != "" {
		a.envID = r.EnvID
	}
	ack := guestproto.Resumed{EnvID: a.envID, Restores: a.restores, FreshenMs: freshenMs}
	a.mu.Unlock()
	a.inv.restored()
	return a.out.Write(guestproto.TypeResumed, ack, nil)
}

// confine readies the guest for the function just before it starts: /tmp
// becomes the environment's disk (or, with none, gets its configured size), and device nodes that appeared since boot (a
// port whose driver probed late) are closed to it.
func (a *Agent) confine(in guestproto.Init) error {
	if !a.cfg.System {
		return nil
	}
	if in.Root != nil {
		// The function's /tmp is its disk, in its own root.
		if err := mountRoot(in.Root, a.cfg.TaskRoot); err != nil {
			return err
		}
		return lockDevices("/dev")
	}
	switch {
	case in.TmpDisk != "":
		// The function's /tmp is its disk, in place of the tmpfs.
		if err := mountTmpDisk(in.TmpDisk); err != nil {
			return err
		}
	case in.EphemeralStorageMB > 0 && in.EphemeralStorageMB != DefaultTmpMB:
		// No disk (an agent run on its own): the tmpfs, sized.
		if err := tmpRemount(in.EphemeralStorageMB).apply(); err != nil {
			return err
		}
	}
	return lockDevices("/dev")
}

// network configures the guest's card before the runtime starts, and
// shows its resolver and hosts files in a function's own root.
func (a *Agent) network(in guestproto.Init) error {
	if !a.cfg.System || in.Net == nil {
		return nil
	}
	if err := configureNet(in.Net); err != nil {
		return err
	}
	if in.Root != nil {
		return bindNetFiles(RootDir)
	}
	return nil
}

// init applies the host's clock and entropy, then starts the runtime.
func (a *Agent) init(in guestproto.Init, entropy []byte) error {
	a.mu.Lock()
	if a.initCfg != nil {
		a.mu.Unlock()
		return errors.New("init received twice")
	}
	a.initCfg = &in
	a.mu.Unlock()
	a.freshen(in.UnixNano, entropy)
	a.mu.Lock()
	a.envID = in.EnvID
	a.mu.Unlock()
	a.inv.setARN(in.FunctionARN)
	a.procs.logs.setLimit(in.LogLimit)
	if err := a.confine(in); err != nil {
		return a.inv.initFailed("Runtime.Unknown", err.Error())
	}
	if err := a.network(in); err != nil {
		return a.inv.initFailed("Runtime.Unknown", err.Error())
	}
	if in.ServicesPort > 0 {
		ln, err := listenServices(in.ServicesPort)
		if err != nil {
			return a.inv.initFailed("Runtime.Unknown", fmt.Sprintf("services listener: %v", err))
		}
		go serveServices(a.ctx, a.services, ln)
	}
	a.inv.initStarted(time.Now())
	onExit := a.inv.runtimeExited
	started := make(chan struct{})
	if in.Service {
		// A service that ends at once is still told as ready, then ended
		// (TypeExit), never as an init that failed: its end waits for its
		// start to be told.
		onExit = func(status string, code int) {
			<-started
			a.inv.runtimeExited(status, code)
		}
	}
	defer close(started)
	rc, err := a.runtimeCmd(in)
	if err == nil {
		err = a.procs.run(rc, onExit)
	}
	if err != nil {
		return a.inv.initFailed("Runtime.InvalidEntrypoint", err.Error())
	}
	if in.Service {
		// A server is ready once started: the host asks it (its hooks)
		// whether it is ready to serve.
		_, err := a.inv.endInit()
		return err
	}
	return nil
}

// runtimeCmd is how in's runtime starts: a zip's bootstrap in the task
// root, or, in a root of its own, an image's command in its working folder
// (a zip on a root runs its bootstrap there, its code bound in).
func (a *Agent) runtimeCmd(in guestproto.Init) (runtimeCmd, error) {
	env := runtimeEnv(in, a.cfg)
	if in.Root == nil {
		return bootstrapCmd(a.cfg.TaskRoot, env)
	}
	rc := runtimeCmd{argv: in.Root.Command, dir: in.Root.WorkingDir, env: env}
	if len(rc.argv) == 0 {
		rc.argv, rc.dir = []string{path.Join(a.cfg.TaskRoot, "bootstrap")}, a.cfg.TaskRoot
		// A managed runtime's root brings the bootstrap, as Lambda's does.
		if _, err := os.Stat(filepath.Join(RootDir, "var/runtime/bootstrap")); err == nil && a.cfg.System {
			rc.argv[0] = "/var/runtime/bootstrap"
		}
	}
	if rc.dir == "" {
		rc.dir = "/"
	}
	if a.cfg.System {
		rc.chroot = RootDir
	}
	return rc, nil
}
