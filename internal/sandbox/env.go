// Package sandbox is one execution environment: a microVM with the agent in
// it, bound to one function, running one invocation at a time. It boots the
// machine, waits for the agent and the runtime's init, invokes, enforces the
// timeout, notices a crash, suspends to disk and resumes, clones templates,
// and closes leaving no process and no files.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
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
	// Logs receives the function's output; nil discards it.
	Logs io.Writer
	// Detached lets the VMM outlive this process.
	Detached bool
	// AgentDigest is the agent build this host runs now; snapshots made by
	// another are refused. Empty skips the check.
	AgentDigest string
	// InitTimeout bounds the runtime's init (Lambda's is 10 s); BootTimeout
	// the kernel's boot to the agent, and a restore to the agent's answer.
	InitTimeout time.Duration
	BootTimeout time.Duration
	Log         *slog.Logger
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
	return c
}

// State is where an environment is in its life.
type State string

// States.
const (
	StateBooting   State = "booting"
	StateReady     State = "ready"
	StateBusy      State = "busy"
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

// InitError is returned by Boot when the function's init failed; the
// environment is closed.
type InitError struct {
	Object guestproto.ErrorObject
	Raw    []byte
}

func (e *InitError) Error() string {
	return fmt.Sprintf("function init failed: %s: %s", e.Object.ErrorType, e.Object.ErrorMessage)
}

// link is this process's connection to one VMM incarnation.
type link struct {
	m    vmm.Machine
	out  *guestproto.Writer
	gone chan struct{} // the channel or the VMM ended
}

// Env is one execution environment.
type Env struct {
	id   string
	dir  string
	kind string
	fn   Function
	img  Image
	cfg  Config
	spec vmm.MachineSpec
	log  *slog.Logger

	hello   chan guestproto.Hello
	initEnd chan guestproto.Frame
	results chan guestproto.Frame
	idle    chan string // the runtime asked for its next event after this request
	resumed chan guestproto.Resumed
	pong    chan struct{}

	logMu sync.Mutex
	tail  tailBuffer

	streamMu    sync.Mutex
	stream      ResponseStream
	streamID    string
	streamBegun bool

	mu         sync.Mutex
	link       *link
	state      State
	exited     chan struct{} // the runtime process ended
	exitState  string
	initType   string
	timings    BootTimings
	nextStart  StartType
	restoreDur time.Duration
	restores   int
	snap       *snapshotRef
	fallback   string // why the last resume fell back to a cold start
	restoreErr *guestproto.ErrorObject
	closeOnce  sync.Once
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
		log:     cfg.Log.With("env", id),
		hello:   make(chan guestproto.Hello, 1),
		initEnd: make(chan guestproto.Frame, 1),
		results: make(chan guestproto.Frame, 4),
		idle:    make(chan string, 4),
		resumed: make(chan guestproto.Resumed, 1),
		pong:    make(chan struct{}, 1),
		exited:  make(chan struct{}),
		state:   StateBooting,
		tail:    tailBuffer{max: 4096},
	}
	e.spec = vmm.MachineSpec{
		ID: id, Dir: dir, MemoryMiB: fn.MemoryMB, VCPUs: VCPUs(fn.MemoryMB),
		Accel: cfg.Accel, Detached: cfg.Detached,
	}
	if img.Kernel != nil {
		e.spec.Kernel, e.spec.ACPI = img.Kernel.Path, img.Kernel.ACPI
	}
	e.spec.Initrd = img.Initrd
	return e
}

// Boot starts an environment: the machine, the agent, the runtime's init.
// On an init failure it returns an *InitError and leaves nothing behind.
func Boot(ctx context.Context, cfg Config, fn Function, img Image) (*Env, error) {
	cfg = cfg.withDefaults()
	id := newID("env-")
	e := newEnv(cfg, fn, img, id, filepath.Join(cfg.Dir, id))
	if err := e.boot(ctx); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	if err := e.saveManifest(); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	return e, nil
}

// boot cold-boots the environment's machine and runs the runtime's init.
func (e *Env) boot(ctx context.Context) error {
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return err
	}
	e.mu.Lock()
	e.exited = make(chan struct{})
	e.mu.Unlock()
	t0 := time.Now()
	m, err := e.cfg.VMM.Boot(ctx, e.spec)
	if err != nil {
		return fmt.Errorf("boot %s: %w", e.id, err)
	}
	l := e.connect(m)
	t1 := time.Now()
	var tm BootTimings
	tm.VMMStart = t1.Sub(t0)
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", e.id, err)
	}
	var hello guestproto.Hello
	select {
	case hello = <-e.hello:
	case <-l.gone:
		return fmt.Errorf("%s: the microVM stopped before its agent answered%s", e.id, e.consoleTail())
	case <-time.After(e.cfg.BootTimeout):
		return fmt.Errorf("%s: no answer from the agent after %s%s", e.id, e.cfg.BootTimeout, e.consoleTail())
	case <-ctx.Done():
		return ctx.Err()
	}
	t2 := time.Now()
	tm.KernelBoot = t2.Sub(t1)
	tm.GuestAgent = ms(hello.AgentMs)
	tm.GuestKernel = max(ms(hello.UptimeMs)-tm.GuestAgent, 0)

	initMsg := guestproto.Init{
		FunctionName: e.fn.Name, FunctionVersion: e.fn.Version, FunctionARN: e.fn.ARN(),
		MemoryMB: e.fn.MemoryMB, Handler: e.fn.Handler, Region: e.fn.Region,
		LogGroup: "/aws/lambda/" + e.fn.Name, LogStream: time.Now().UTC().Format("2006/01/02") + "/[" + e.fn.Version + "]" + e.id,
		Env: e.fn.Env, LogLimit: e.fn.LogLimit, UnixNano: time.Now().UnixNano(),
		InitType: e.initType, EnvID: e.id,
	}
	if err := l.out.Write(guestproto.TypeInit, initMsg, entropy()); err != nil {
		return fmt.Errorf("%s: init: %w", e.id, err)
	}
	select {
	case f := <-e.initEnd:
		if f.Type == guestproto.TypeInitError {
			return initError(f.Body)
		}
		tm.RuntimeInit = time.Since(t2)
	case <-l.gone:
		return fmt.Errorf("%s: the microVM stopped during init%s", e.id, e.consoleTail())
	case <-time.After(e.cfg.InitTimeout):
		return &InitError{Object: guestproto.ErrorObject{
			ErrorType:    "Runtime.Unknown",
			ErrorMessage: fmt.Sprintf("Task timed out after %.2f seconds (init did not finish)", e.cfg.InitTimeout.Seconds()),
		}}
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	e.timings, e.nextStart, e.restoreDur = tm, StartCold, 0
	if e.state != StateDead {
		e.state = StateReady
	}
	e.mu.Unlock()
	return nil
}

func entropy() []byte {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	return b
}

func initError(body []byte) *InitError {
	ie := &InitError{Raw: body}
	if err := jsonUnmarshal(body, &ie.Object); err != nil || ie.Object.ErrorType == "" {
		ie.Object = guestproto.ErrorObject{ErrorType: "Runtime.Unknown", ErrorMessage: string(body)}
	}
	return ie
}

// connect makes m the environment's machine and starts reading its frames.
func (e *Env) connect(m vmm.Machine) *link {
	l := &link{m: m, out: guestproto.NewWriter(m.Agent()), gone: make(chan struct{})}
	e.mu.Lock()
	e.link = l
	e.mu.Unlock()
	go e.read(l)
	return l
}

// current is the live link, or nil.
func (e *Env) current() *link {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.link
}

// read dispatches the agent's frames until the link ends.
func (e *Env) read(l *link) {
	defer close(l.gone)
	r := guestproto.NewReader(l.m.Agent())
	for {
		f, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && e.State() != StateDead {
				e.log.Debug("agent channel ended", "err", err)
			}
			return
		}
		switch f.Type {
		case guestproto.TypeHello:
			var h guestproto.Hello
			_ = f.Decode(&h)
			offer(e.hello, h)
		case guestproto.TypeReady, guestproto.TypeInitError:
			if f.Type == guestproto.TypeInitError && e.State() != StateBooting {
				// After init, only an after-restore hook can fail: the
				// environment is unusable, and its next caller is told why.
				e.mu.Lock()
				e.restoreErr = errorObject("Runtime.RestoreError", f.Body)
				e.mu.Unlock()
				continue
			}
			offer(e.initEnd, f)
		case guestproto.TypeResponse, guestproto.TypeFunctionError:
			offer(e.results, f)
		case guestproto.TypeIdle:
			var idle guestproto.Idle
			_ = f.Decode(&idle)
			offer(e.idle, idle.After)
		case guestproto.TypeResumed:
			var r guestproto.Resumed
			_ = f.Decode(&r)
			offer(e.resumed, r)
		case guestproto.TypeLog:
			e.writeLog(f.Body)
		case guestproto.TypeResponseChunk:
			var c guestproto.Chunk
			_ = f.Decode(&c)
			e.writeChunk(c, f.Body)
		case guestproto.TypeExit:
			var x guestproto.Exit
			_ = f.Decode(&x)
			e.mu.Lock()
			e.exitState = x.Status
			select {
			case <-e.exited:
			default:
				close(e.exited)
			}
			e.mu.Unlock()
		case guestproto.TypePong:
			offer(e.pong, struct{}{})
		default:
			e.log.Warn("unexpected frame from agent", "type", f.Type)
		}
	}
}

// offer sends v unless the channel is full: a frame nobody waits for (a
// stale one, after a reconnection) must not block the reader.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// setStream names the invocation whose streamed response goes to st.
func (e *Env) setStream(id string, st ResponseStream) {
	e.streamMu.Lock()
	e.streamID, e.stream, e.streamBegun = id, st, false
	e.streamMu.Unlock()
}

// writeChunk passes a chunk of a streamed response on. It runs on the
// reader: a slow client slows the function's stream, as backpressure
// should.
func (e *Env) writeChunk(c guestproto.Chunk, b []byte) {
	e.streamMu.Lock()
	defer e.streamMu.Unlock()
	if e.stream == nil || c.RequestID != e.streamID {
		return
	}
	if !e.streamBegun {
		e.streamBegun = true
		e.stream.Begin(c.ContentType)
	}
	_, _ = e.stream.Write(b)
}

func (e *Env) writeLog(b []byte) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.tail.Write(b)
	_, _ = e.cfg.Logs.Write(b)
}

// ID is the environment's id.
func (e *Env) ID() string { return e.id }

// PID is its VMM's process id, 0 when it has none (suspended, closed).
func (e *Env) PID() int {
	if l := e.current(); l != nil {
		return l.m.PID()
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
		l := e.link
		e.mu.Unlock()
		if l != nil {
			err = l.m.Stop(ctx)
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
	e.mu.Lock()
	l := e.link
	e.mu.Unlock()
	if err := e.saveManifest(); err != nil {
		return err
	}
	if l != nil {
		l.m.Disconnect()
	}
	return nil
}

// consoleTail is the end of the guest's console, to explain a failure.
func (e *Env) consoleTail() string {
	b, err := os.ReadFile(filepath.Join(e.dir, "console.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return "; console:\n" + string(b)
}

// VCPUs is the number of vCPUs Lambda gives a memory size: one per
// 1,769 MB, at least one, at most six.
func VCPUs(memoryMB int) int {
	return min(max((memoryMB+1768)/1769, 1), 6)
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
