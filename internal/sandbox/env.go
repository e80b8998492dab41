// Package sandbox is one execution environment: a microVM with the agent in
// it, bound to one function, running one invocation at a time. It boots the
// machine, waits for the agent and the runtime's init, invokes, enforces the
// timeout, notices a crash, and closes leaving no process and no files.
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

// Booter starts machines; vmm/qemu's Driver is one.
type Booter interface {
	Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error)
}

// Function is what an environment runs.
type Function struct {
	Name     string
	Version  string
	MemoryMB int
	Timeout  time.Duration
	Handler  string
	Env      map[string]string
	Region   string
	// LogLimit caps the output kept per phase; 0 is the agent's default.
	LogLimit int64
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
}

// Config is how an environment is run.
type Config struct {
	VMM Booter
	// Dir is the folder under which the environment makes its own.
	Dir   string
	Accel vmm.Accel
	// Logs receives the function's output; nil discards it.
	Logs io.Writer
	// Detached lets the VMM outlive this process.
	Detached bool
	// InitTimeout bounds the runtime's init (Lambda's is 10 s); BootTimeout
	// the kernel's boot to the agent.
	InitTimeout time.Duration
	BootTimeout time.Duration
	Log         *slog.Logger
}

// State is where an environment is in its life.
type State string

// States.
const (
	StateBooting State = "booting"
	StateReady   State = "ready"
	StateBusy    State = "busy"
	StateDead    State = "dead"
)

// BootTimings split a cold start into its phases.
type BootTimings struct {
	// VMMStart is from spawning the VMM to its control socket answering.
	VMMStart time.Duration
	// KernelBoot is from starting the vCPUs to the agent's hello.
	KernelBoot time.Duration
	// GuestKernel is the part of KernelBoot the guest's kernel took before
	// it ran /init, by the guest's own clock; GuestAgent the agent's set-up.
	GuestKernel time.Duration
	GuestAgent  time.Duration
	// RuntimeInit is from starting the function's runtime to its first
	// request for work.
	RuntimeInit time.Duration
}

// Total is the whole cold start.
func (t BootTimings) Total() time.Duration { return t.VMMStart + t.KernelBoot + t.RuntimeInit }

// InitError is returned by Boot when the function's init failed; the
// environment is closed.
type InitError struct {
	Object guestproto.ErrorObject
	Raw    []byte
}

func (e *InitError) Error() string {
	return fmt.Sprintf("function init failed: %s: %s", e.Object.ErrorType, e.Object.ErrorMessage)
}

// Env is one execution environment.
type Env struct {
	id      string
	dir     string
	fn      Function
	cfg     Config
	machine vmm.Machine
	out     *guestproto.Writer
	log     *slog.Logger
	timings BootTimings

	hello   chan guestproto.Hello
	initEnd chan guestproto.Frame
	results chan guestproto.Frame
	idle    chan string // the runtime asked for its next event after this request
	gone    chan struct{} // the channel or the VMM ended
	exited  chan struct{} // the runtime process ended

	logMu sync.Mutex
	tail  tailBuffer

	mu        sync.Mutex
	state     State
	exitState string
	closeOnce sync.Once
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "env-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Boot starts an environment: the machine, the agent, the runtime's init.
// On an init failure it returns an *InitError and leaves nothing behind.
func Boot(ctx context.Context, cfg Config, fn Function, img Image) (*Env, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Logs == nil {
		cfg.Logs = io.Discard
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 60 * time.Second
	}
	if fn.Version == "" {
		fn.Version = "$LATEST"
	}
	fn.Region = fn.region()
	id := newID()
	e := &Env{
		id: id, dir: filepath.Join(cfg.Dir, id), fn: fn, cfg: cfg,
		log:     cfg.Log.With("env", id),
		hello:   make(chan guestproto.Hello, 1),
		initEnd: make(chan guestproto.Frame, 1),
		results: make(chan guestproto.Frame, 1),
		idle:    make(chan string, 1),
		gone:    make(chan struct{}),
		exited:  make(chan struct{}),
		state:   StateBooting,
		tail:    tailBuffer{max: 4096},
	}
	if err := e.boot(ctx, img); err != nil {
		_ = e.Close(context.Background())
		return nil, err
	}
	e.setState(StateReady)
	return e, nil
}

func (e *Env) boot(ctx context.Context, img Image) error {
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return err
	}
	spec := vmm.MachineSpec{
		ID:        e.id,
		Dir:       e.dir,
		Kernel:    img.Kernel.Path,
		Initrd:    img.Initrd,
		ACPI:      img.Kernel.ACPI,
		MemoryMiB: e.fn.MemoryMB,
		VCPUs:     VCPUs(e.fn.MemoryMB),
		Accel:     e.cfg.Accel,
		Detached:  e.cfg.Detached,
	}
	t0 := time.Now()
	m, err := e.cfg.VMM.Boot(ctx, spec)
	if err != nil {
		return fmt.Errorf("boot %s: %w", e.id, err)
	}
	e.machine = m
	e.out = guestproto.NewWriter(m.Agent())
	go e.read()
	t1 := time.Now()
	e.timings.VMMStart = t1.Sub(t0)
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", e.id, err)
	}
	var hello guestproto.Hello
	select {
	case hello = <-e.hello:
	case <-e.gone:
		return fmt.Errorf("%s: the microVM stopped before its agent answered%s", e.id, e.consoleTail())
	case <-time.After(e.cfg.BootTimeout):
		return fmt.Errorf("%s: no answer from the agent after %s%s", e.id, e.cfg.BootTimeout, e.consoleTail())
	case <-ctx.Done():
		return ctx.Err()
	}
	t2 := time.Now()
	e.timings.KernelBoot = t2.Sub(t1)
	e.timings.GuestAgent = ms(hello.AgentMs)
	e.timings.GuestKernel = max(ms(hello.UptimeMs)-e.timings.GuestAgent, 0)

	entropy := make([]byte, 64)
	_, _ = rand.Read(entropy)
	initMsg := guestproto.Init{
		FunctionName: e.fn.Name, FunctionVersion: e.fn.Version, FunctionARN: e.fn.ARN(),
		MemoryMB: e.fn.MemoryMB, Handler: e.fn.Handler, Region: e.fn.Region,
		LogGroup: "/aws/lambda/" + e.fn.Name, LogStream: time.Now().UTC().Format("2006/01/02") + "/[" + e.fn.Version + "]" + e.id,
		Env: e.fn.Env, LogLimit: e.fn.LogLimit, UnixNano: time.Now().UnixNano(),
	}
	if err := e.out.Write(guestproto.TypeInit, initMsg, entropy); err != nil {
		return fmt.Errorf("%s: init: %w", e.id, err)
	}
	select {
	case f := <-e.initEnd:
		if f.Type == guestproto.TypeInitError {
			return initError(f.Body)
		}
		var r guestproto.Ready
		_ = f.Decode(&r)
		e.timings.RuntimeInit = time.Since(t2)
		return nil
	case <-e.gone:
		return fmt.Errorf("%s: the microVM stopped during init%s", e.id, e.consoleTail())
	case <-time.After(e.cfg.InitTimeout):
		return &InitError{Object: guestproto.ErrorObject{
			ErrorType:    "Runtime.Unknown",
			ErrorMessage: fmt.Sprintf("Task timed out after %.2f seconds (init did not finish)", e.cfg.InitTimeout.Seconds()),
		}}
	case <-ctx.Done():
		return ctx.Err()
	}
}

func initError(body []byte) *InitError {
	ie := &InitError{Raw: body}
	if err := jsonUnmarshal(body, &ie.Object); err != nil || ie.Object.ErrorType == "" {
		ie.Object = guestproto.ErrorObject{ErrorType: "Runtime.Unknown", ErrorMessage: string(body)}
	}
	return ie
}

// read dispatches the agent's frames until the channel ends.
func (e *Env) read() {
	defer close(e.gone)
	r := guestproto.NewReader(e.machine.Agent())
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
			e.hello <- h
		case guestproto.TypeReady, guestproto.TypeInitError:
			select {
			case e.initEnd <- f:
			default:
			}
		case guestproto.TypeResponse, guestproto.TypeFunctionError:
			select {
			case e.results <- f:
			default:
				e.log.Warn("result with nobody waiting", "type", f.Type)
			}
		case guestproto.TypeLog:
			e.writeLog(f.Body)
		case guestproto.TypeExit:
			var x guestproto.Exit
			_ = f.Decode(&x)
			e.mu.Lock()
			e.exitState = x.Status
			e.mu.Unlock()
			close(e.exited)
		case guestproto.TypeIdle:
			var idle guestproto.Idle
			_ = f.Decode(&idle)
			select {
			case e.idle <- idle.After:
			default:
			}
		case guestproto.TypePong:
		default:
			e.log.Warn("unexpected frame from agent", "type", f.Type)
		}
	}
}

func (e *Env) writeLog(b []byte) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.tail.Write(b)
	_, _ = e.cfg.Logs.Write(b)
}

// ID is the environment's id.
func (e *Env) ID() string { return e.id }

// PID is its VMM's process id.
func (e *Env) PID() int { return e.machine.PID() }

// Dir is its state folder.
func (e *Env) Dir() string { return e.dir }

// Timings are its boot's phases.
func (e *Env) Timings() BootTimings { return e.timings }

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

// Close stops the machine and removes the environment's folder.
func (e *Env) Close(ctx context.Context) error {
	var err error
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.state = StateDead
		e.mu.Unlock()
		if e.machine != nil {
			err = e.machine.Stop(ctx)
		}
		if rmErr := os.RemoveAll(e.dir); rmErr != nil && err == nil {
			err = rmErr
		}
	})
	return err
}

// consoleTail is the end of the guest's console, to explain a failed boot.
func (e *Env) consoleTail() string {
	if e.machine == nil {
		return ""
	}
	b, err := os.ReadFile(e.machine.ConsolePath())
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
