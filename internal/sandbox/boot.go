package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// InitError is returned by Boot when the function's init failed; the
// environment is closed.
type InitError struct {
	Object guestproto.ErrorObject
	Raw    []byte
}

func (e *InitError) Error() string {
	return fmt.Sprintf("function init failed: %s: %s", e.Object.ErrorType, e.Object.ErrorMessage)
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
// On an error the machine may still run: the caller closes the environment.
func (e *Env) boot(ctx context.Context) error {
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return err
	}
	e.mu.Lock()
	e.guest = newGuest()
	e.mu.Unlock()
	// A fresh /tmp: a cold boot in a folder that had a snapshot (a
	// refused one) must not find the old environment's files.
	if err := makeTmpDisk(ctx, filepath.Join(e.dir, tmpDiskFile), tmpMB(e.fn)); err != nil {
		return fmt.Errorf("%s: %w", e.id, err)
	}
	if err := e.attachNetwork(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	m, err := e.cfg.VMM.Boot(ctx, e.spec)
	if err != nil {
		return fmt.Errorf("boot %s: %w", e.id, err)
	}
	c := e.connect(m, true)
	t1 := time.Now()
	var tm BootTimings
	tm.VMMStart = t1.Sub(t0)
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w: %w", e.id, ErrMachineFailed, err)
	}
	var hello guestproto.Hello
	bootTimer := time.NewTimer(e.cfg.BootTimeout)
	defer bootTimer.Stop()
	select {
	case hello = <-c.hello:
	case <-c.gone:
		return fmt.Errorf("%s: %w: the microVM stopped before its agent answered%s", e.id, ErrMachineFailed, e.consoleTail())
	case <-bootTimer.C:
		return fmt.Errorf("%s: %w: no answer from the agent after %s%s", e.id, ErrMachineFailed, e.cfg.BootTimeout, e.consoleTail())
	case <-ctx.Done():
		return ctx.Err()
	}
	t2 := time.Now()
	tm.KernelBoot = t2.Sub(t1)
	// The agent is up: the session its services listener needs, before
	// the function's init may use it.
	e.startServices(c)
	// The guest's account of its boot is bounded by the host's measure.
	tm.GuestAgent = msIn(hello.AgentMs, tm.KernelBoot)
	tm.GuestKernel = min(max(msIn(hello.UptimeMs, tm.KernelBoot)-tm.GuestAgent, 0), tm.KernelBoot-tm.GuestAgent)

	initMsg := guestproto.Init{
		FunctionName: e.fn.Name, FunctionVersion: e.fn.Version, FunctionARN: e.fn.ARN(),
		MemoryMB: e.fn.MemoryMB, Handler: e.fn.Handler, Region: e.fn.Region,
		LogGroup: "/aws/lambda/" + e.fn.Name, LogStream: time.Now().UTC().Format("2006/01/02") + "/[" + e.fn.Version + "]" + e.id,
		Env: e.fn.Env, LogLimit: e.fn.LogLimit, UnixNano: time.Now().UnixNano(),
		InitType: e.initType, EnvID: e.id, EphemeralStorageMB: e.fn.EphemeralStorageMB,
		Root: guestRoot(e.fn), TmpDisk: tmpSerial, Net: e.guestNet(), Service: e.fn.Service,
	}
	if e.servesGuests() {
		initMsg.ServicesPort = e.fn.ServicesPort
	}
	// The init phase's output is counted from here, against its own limit.
	e.logs.reset()
	initBudget := e.initBudget()
	initDeadline := time.Now().Add(initBudget)
	initTimedOut := &InitError{Object: guestproto.ErrorObject{
		ErrorType:    "Runtime.Unknown",
		ErrorMessage: fmt.Sprintf("Task timed out after %.2f seconds (init did not finish)", initBudget.Seconds()),
	}}
	if err := c.send(ctx, initDeadline, guestproto.TypeInit, initMsg, entropy()); err != nil {
		if errors.Is(err, errGuestDeadline) {
			return initTimedOut
		}
		return fmt.Errorf("%s: init: %w", e.id, err)
	}
	timer := time.NewTimer(time.Until(initDeadline))
	defer timer.Stop()
	select {
	case f := <-c.initEnd:
		if f.Type == guestproto.TypeInitError {
			return initError(f.Body)
		}
		tm.RuntimeInit = time.Since(t2)
	case <-c.gone:
		return fmt.Errorf("%s: %w: the microVM stopped during init%s", e.id, ErrMachineFailed, e.consoleTail())
	case <-timer.C:
		return initTimedOut
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-c.gone:
		// The channel broke as the init ended: the VMM is stopped.
		return fmt.Errorf("%s: the agent channel broke after init: %w", e.id, c.err())
	default:
	}
	e.timings, e.ready = tm, readiness{start: StartCold}
	if e.state != StateDead {
		e.state = StateReady
	}
	return nil
}

// msIn is a duration in milliseconds a guest reported, within [0, limit].
func msIn(f float64, limit time.Duration) time.Duration {
	if !(f > 0) { // negative, zero or NaN
		return 0
	}
	if f >= float64(limit)/float64(time.Millisecond) {
		return limit
	}
	return ms(f)
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

// initBudget is how long the runtime's init may take. Lambda gives init
// 10 s and, when that is not enough, runs it again within the first
// invocation under the function's own timeout; letting the init that is
// already running go on for that long gives the same answer without
// throwing its progress away (a heavy runtime on a loaded host can need
// more than 10 s).
func (e *Env) initBudget() time.Duration {
	return e.cfg.InitTimeout + max(e.fn.Timeout, 0)
}
