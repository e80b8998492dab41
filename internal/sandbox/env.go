// Package sandbox is one execution environment: a microVM with the agent in
// it, bound to one function, running one invocation at a time. It boots the
// machine, waits for the agent and the runtime's init, invokes, enforces the
// timeout, notices a crash, suspends to disk and resumes, clones templates,
// and closes leaving no process and no files.
//
// An Env (this file) is the environment's identity and life: its state,
// its folder and the manifest that records it there (manifest.go). The VMM
// it runs in at a time is a conn (conn.go), made by a boot (boot.go), a
// restore or an attach (snapshot.go, template.go) and ended as a whole.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/vmm"
)

// State is where an environment is in its life.
type State string

// States.
const (
	StateBooting State = "booting"
	StateReady   State = "ready"
	StateBusy    State = "busy"
	// StatePaused holds a VMM whose vCPUs are stopped and whose guest
	// memory is in its file, not in host RAM (pause.go).
	StatePaused    State = "paused"
	StateSuspended State = "suspended"
	StateDead      State = "dead"
)

// StartType says how the environment that served an invocation got there.
type StartType string

// Start types, as metered and reported.
const (
	StartCold   StartType = "cold"   // booted for this invocation
	StartWarm   StartType = "warm"   // reused, running
	StartResume StartType = "resume" // restored from its own suspend
	StartPaused StartType = "paused" // continued from a pause, same VMM
	StartClone  StartType = "clone"  // restored from a template
)

// BootTimings split a cold start into its phases.
type BootTimings struct {
	// VMMStart is from spawning the VMM to its control socket answering.
	VMMStart time.Duration `json:"vmmStart"`
	// KernelBoot is from starting the vCPUs to the agent's hello.
	KernelBoot time.Duration `json:"kernelBoot"`
	// GuestKernel is the part of KernelBoot the guest's kernel took before
	// it ran /init, by the guest's own clock; GuestAgent the agent's set-up.
	GuestKernel time.Duration `json:"guestKernel"`
	GuestAgent  time.Duration `json:"guestAgent"`
	// RuntimeInit is from starting the function's runtime to its first
	// request for work.
	RuntimeInit time.Duration `json:"runtimeInit"`
}

// Total is the whole cold start: the platform's part and the runtime's.
func (t BootTimings) Total() time.Duration { return t.PlatformInit() + t.RuntimeInit }

// PlatformInit is Hearth's part of a cold start, making the sandbox (VMM
// start and kernel boot). It is not in Lambda's Init Duration, which is the
// runtime's and the function's own init (RuntimeInit), so it is reported
// beside it and, by default, not billed.
func (t BootTimings) PlatformInit() time.Duration { return t.VMMStart + t.KernelBoot }

// Env is one execution environment.
type Env struct {
	id   string
	dir  string
	kind string // kindEnv, or kindTemplate while a template is made
	fn   Function
	img  Image
	cfg  Config
	log  *slog.Logger

	// Where the function's output goes, whichever VMM it runs in.
	logs   *logSink
	stream *streamRoute

	mu       sync.Mutex
	state    State
	conn     *conn  // the VMM it runs in; nil before its first, and suspended
	guest    *guest // since its last cold boot
	spec     vmm.MachineSpec
	initType string
	timings  BootTimings
	restores int
	snap     *snapshotRef
	ready    readiness
	lease    *network.Lease // its network, if it has one

	closeOnce sync.Once
}

// readiness is how an environment got ready, told to the invocation that
// follows; the one after that is warm.
type readiness struct {
	start    StartType
	restore  time.Duration // to resume or clone
	fallback string        // why a resume became a cold start
}

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func newEnv(cfg Config, fn Function, img Image, id, dir string) *Env {
	if fn.Version == "" {
		fn.Version = "$LATEST"
	}
	fn.Region = fn.region()
	e := &Env{
		id: id, dir: dir, kind: kindEnv, fn: fn, img: img, cfg: cfg,
		log:    cfg.Log.With("env", id),
		logs:   newLogSink(cfg.Logs, fn.LogLimit),
		stream: &streamRoute{},
		state:  StateBooting,
		guest:  newGuest(),
	}
	e.spec = vmm.MachineSpec{
		ID: id, Dir: dir, MemoryMiB: fn.MemoryMB, VCPUs: VCPUs(fn.MemoryMB),
		Accel: cfg.Accel, Detached: cfg.Detached, Disks: disks(fn, dir),
	}
	if fn.Root == nil && cfg.Accel == vmm.AccelTCG {
		e.spec.TCGCacheMiB = cfg.InitramfsTCGCacheMiB
	}
	if img.Kernel != nil {
		e.spec.Kernel, e.spec.ACPI = img.Kernel.Path, img.Kernel.ACPI
	}
	e.spec.Initrd = img.Initrd
	return e
}

// connect makes m the VMM the environment runs in and starts reading its
// agent channel; initing says the machine boots and its init is to come.
// An environment closed meanwhile gets no VMM: m is stopped, and the
// caller finds its channel gone.
func (e *Env) connect(m vmm.Machine, initing bool) *conn {
	e.mu.Lock()
	c := newConn(m, initing, e.guest, e.logs, e.stream, e.log, e.linkLost)
	c.streams.guestOpens = e.servesGuests()
	dead := e.state == StateDead
	if !dead {
		e.conn = c
	}
	e.mu.Unlock()
	if dead {
		_ = c.stop(context.Background())
	}
	return c
}

// linkLost is told that c's agent channel broke under this process, and
// its VMM was stopped. An environment that was ready is then dead; one in
// another state is in the hands of whoever put it there (a boot, a restore
// or an invocation, which see the channel gone).
func (e *Env) linkLost(c *conn) {
	e.mu.Lock()
	ready := e.conn == c && (e.state == StateReady || e.state == StatePaused)
	e.mu.Unlock()
	if ready {
		e.log.Warn("agent channel broke while ready; environment ended", "err", c.err())
		_ = e.Close(context.Background())
	}
}

// current is the VMM it runs in, or nil.
func (e *Env) current() *conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn
}

// ID is the environment's id.
func (e *Env) ID() string { return e.id }

// PID is its VMM's process id, 0 when it has none (suspended, closed).
func (e *Env) PID() int {
	if c := e.current(); c != nil {
		return c.pid()
	}
	return 0
}

// Dir is its state folder.
func (e *Env) Dir() string { return e.dir }

// Function is what it runs.
func (e *Env) Function() Function { return e.fn }

// Timings are its last cold boot's phases.
func (e *Env) Timings() BootTimings {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.timings
}

// State is where it is in its life.
func (e *Env) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

func (e *Env) setState(s State) {
	e.mu.Lock()
	if e.state != StateDead {
		e.state = s
	}
	e.mu.Unlock()
}

// Close stops the machine and removes the environment's folder, snapshot
// included.
func (e *Env) Close(ctx context.Context) error {
	var err error
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.state = StateDead
		c := e.conn
		e.mu.Unlock()
		if c != nil {
			err = c.stop(ctx)
		}
		// The network before the folder: a daemon that dies between
		// finds the folder and sweeps both.
		if nerr := e.releaseNetwork(ctx); nerr != nil && err == nil {
			err = nerr
		}
		if rmErr := os.RemoveAll(e.dir); rmErr != nil && err == nil {
			err = rmErr
		}
	})
	return err
}

// Detach lets a detached environment run on without this process: its
// connections close, its VMM and files stay for another process to Open.
func (e *Env) Detach() error {
	c := e.current()
	if err := e.saveManifest(); err != nil {
		return err
	}
	if c != nil {
		c.disconnect()
	}
	return nil
}

// consoleTailBytes is how much of the guest's console an error carries.
const consoleTailBytes = 1500

// consoleTail is the end of the guest's console, to explain a failure:
// only the end is read, however large the file.
func (e *Env) consoleTail() string {
	b, err := vmm.ReadTail(filepath.Join(e.dir, "console.log"), consoleTailBytes)
	if err != nil || len(b) == 0 {
		return ""
	}
	return "; console:\n" + string(b)
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
