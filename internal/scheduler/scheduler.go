// Package scheduler keeps a pool of execution environments per function
// version: an invocation takes a warm environment, else resumes a suspended
// one, else boots a new one; one invocation per environment at a time;
// per-function and global concurrency limits answer 429 rather than queue.
// An idle environment is suspended after its function's keep-warm time and
// deleted after its keep-suspended time: a function nobody calls costs
// nothing.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Images builds (or finds) what a function's code boots.
type Images interface {
	Image(ctx context.Context, codeDigest string) (sandbox.Image, error)
}

// Records keeps the scheduler's environments on disk, so a restarted daemon
// knows them.
type Records interface {
	PutEnv(ctx context.Context, e store.EnvRecord) error
	DeleteEnv(ctx context.Context, id string) error
}

// Meter records usage: each invocation, and the lives and suspensions of
// environments (for the without-suspend and storage figures).
type Meter interface {
	Invoked(rec meter.Record)
	EnvStarted(id, function string, memoryMB int, at time.Time)
	EnvEnded(id string)
	Suspended(id, function string, bytes int64, took time.Duration)
	Resumed(id string)
}

type noMeter struct{}

func (noMeter) Invoked(meter.Record)                           {}
func (noMeter) EnvStarted(string, string, int, time.Time)      {}
func (noMeter) EnvEnded(string)                                {}
func (noMeter) Suspended(string, string, int64, time.Duration) {}
func (noMeter) Resumed(string)                                 {}

// Logs gives each function's log.
type Logs interface {
	Writer(function string) io.Writer
}

// Config is how the scheduler runs.
type Config struct {
	Sandbox sandbox.Config
	Images  Images
	Records Records
	// Logs receives each function's output and its START, END and REPORT
	// lines; nil discards them.
	Logs Logs
	// Meter records usage; nil records nothing.
	Meter Meter
	// MaxConcurrency bounds the invocations in flight on this host.
	MaxConcurrency int
	// TemplatesDir, when set, turns snap-start on: after a function
	// revision's first cold boot, a template is made in the background, and
	// environments beyond the warm and suspended ones are cloned from it.
	TemplatesDir string
	Log          *slog.Logger
}

// Scheduler runs invocations on pooled environments.
type Scheduler struct {
	cfg Config

	mu     sync.Mutex
	pools  map[string]*pool // by poolKey
	fnBusy map[string]int   // in-flight invocations per function name
	busy   int              // in flight on this host
	closed bool
}

type pool struct {
	key, function string
	idle          []*entry // warm, most recently used last
	suspended     []*entry
	template      string // folder of the template to clone, if made
	templating    bool   // a template is being made
}

type entry struct {
	env   *sandbox.Env
	timer *time.Timer
}

// New returns a scheduler.
func New(cfg Config) *Scheduler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 64
	}
	if cfg.Meter == nil {
		cfg.Meter = noMeter{}
	}
	return &Scheduler{cfg: cfg, pools: map[string]*pool{}, fnBusy: map[string]int{}}
}

// poolKey names the pool of a function at a version and revision: a change
// of code or configuration makes a new revision, and new environments.
func poolKey(fn store.Function) string {
	return fn.FunctionName + "@" + fn.Version + "#" + fn.RevisionID
}

func (s *Scheduler) pool(fn store.Function) *pool {
	k := poolKey(fn)
	p := s.pools[k]
	if p == nil {
		p = &pool{key: k, function: fn.FunctionName}
		s.pools[k] = p
	}
	return p
}

// sandboxFunction is what an environment of fn runs.
func sandboxFunction(fn store.Function) sandbox.Function {
	f := sandbox.Function{Name: fn.FunctionName, Version: fn.Version, MemoryMB: fn.MemorySize,
		Timeout: time.Duration(fn.Timeout) * time.Second, Handler: fn.Handler}
	if fn.Environment != nil {
		f.Env = fn.Environment.Variables
	}
	return f
}

// Invoke runs req on an environment of fn. limit is the function's reserved
// concurrency (nil: none).
func (s *Scheduler) Invoke(ctx context.Context, fn store.Function, limit *int, req sandbox.Request) (*sandbox.Result, error) {
	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	log := s.logs(fn.FunctionName)
	fmt.Fprintf(log, "START RequestId: %s Version: %s\n", req.RequestID, fn.Version)
	env, err := s.acquire(ctx, fn, limit)
	if err != nil {
		fmt.Fprintf(log, "END RequestId: %s\n", req.RequestID)
		var ie *sandbox.InitError
		if errors.As(err, &ie) {
			// As Lambda: a failed init is the invocation's function error.
			b, _ := json.Marshal(ie.Object)
			return &sandbox.Result{Payload: b, Error: &ie.Object, StartType: sandbox.StartCold}, nil
		}
		return nil, err
	}
	res, err := env.Invoke(ctx, req)
	s.release(fn, env)
	fmt.Fprintf(log, "END RequestId: %s\n", req.RequestID)
	if res != nil {
		fmt.Fprintln(log, res.Report(sandboxFunction(fn)))
		s.cfg.Meter.Invoked(record(fn, res))
	}
	return res, err
}

// record is an invocation's meter record.
func record(fn store.Function, res *sandbox.Result) meter.Record {
	r := meter.Record{Time: time.Now().UTC(), Function: fn.FunctionName, Version: fn.Version, EnvID: res.EnvID,
		StartType: string(res.StartType), DurationMs: float64(res.Duration.Microseconds()) / 1000,
		MemoryMB: fn.MemorySize, MaxMemMB: int((res.MaxRSSKiB + 1023) / 1024), Error: res.Error != nil}
	switch res.StartType {
	case sandbox.StartCold:
		r.InitMs, r.PlatformInitMs = meter.Ms(res.Init.RuntimeInit), meter.Ms(res.Init.PlatformInit())
	case sandbox.StartResume, sandbox.StartClone:
		r.RestoreMs = float64(res.Restore.Microseconds()) / 1000
	}
	return r
}

func (s *Scheduler) logs(function string) io.Writer {
	if s.cfg.Logs == nil {
		return io.Discard
	}
	return s.cfg.Logs.Writer(function)
}

// sandboxConfig is the environments' configuration, their output going to
// the function's log.
func (s *Scheduler) sandboxConfig(function string) sandbox.Config {
	c := s.cfg.Sandbox
	c.Logs = s.logs(function)
	return c
}

// acquire reserves a slot and returns an environment for fn.
func (s *Scheduler) acquire(ctx context.Context, fn store.Function, limit *int) (*sandbox.Env, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, lambdaerr.Service("Hearth is shutting down")
	}
	if limit != nil && s.fnBusy[fn.FunctionName] >= *limit {
		s.mu.Unlock()
		return nil, lambdaerr.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	if s.busy >= s.cfg.MaxConcurrency {
		s.mu.Unlock()
		return nil, lambdaerr.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	s.busy++
	s.fnBusy[fn.FunctionName]++
	p := s.pool(fn)
	var e *entry
	switch {
	case len(p.idle) > 0:
		e, p.idle = p.idle[len(p.idle)-1], p.idle[:len(p.idle)-1]
	case len(p.suspended) > 0:
		// The invocation resumes it.
		e, p.suspended = p.suspended[len(p.suspended)-1], p.suspended[:len(p.suspended)-1]
	}
	tpl := p.template
	s.mu.Unlock()
	if e != nil {
		e.timer.Stop()
		if e.env.State() == sandbox.StateSuspended {
			s.cfg.Meter.Resumed(e.env.ID())
		}
		return e.env, nil
	}
	if tpl != "" {
		t0 := time.Now()
		env, err := sandbox.Clone(ctx, s.sandboxConfig(fn.FunctionName), tpl)
		if err == nil {
			s.record(env, fn)
			s.cfg.Meter.EnvStarted(env.ID(), fn.FunctionName, fn.MemorySize, t0)
			return env, nil
		}
		s.cfg.Log.Warn("clone failed; booting instead", "function", fn.FunctionName, "err", err)
		s.dropTemplate(p, tpl)
	}
	env, err := s.boot(ctx, fn)
	if err != nil {
		s.done(fn)
		return nil, err
	}
	s.maybeTemplate(fn, p)
	return env, nil
}

// maybeTemplate starts making p's template in the background, once.
func (s *Scheduler) maybeTemplate(fn store.Function, p *pool) {
	if s.cfg.TemplatesDir == "" {
		return
	}
	s.mu.Lock()
	if p.template != "" || p.templating || s.closed {
		s.mu.Unlock()
		return
	}
	p.templating = true
	s.mu.Unlock()
	go func() {
		ctx := context.Background()
		var dir string
		img, err := s.cfg.Images.Image(ctx, fn.CodeDigest())
		if err == nil {
			cfg := s.sandboxConfig(fn.FunctionName)
			cfg.Dir = s.cfg.TemplatesDir
			var tpl *sandbox.Template
			if tpl, err = sandbox.NewTemplate(ctx, cfg, sandboxFunction(fn), img); err == nil {
				dir = tpl.Dir
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		p.templating = false
		switch {
		case err != nil:
			s.cfg.Log.Warn("making a template failed", "function", fn.FunctionName, "err", err)
		case s.closed || s.pools[p.key] != p:
			_ = os.RemoveAll(dir) // retired meanwhile
		default:
			p.template = dir
			s.cfg.Log.Info("template ready", "function", fn.FunctionName, "dir", dir)
		}
	}()
}

func (s *Scheduler) dropTemplate(p *pool, dir string) {
	s.mu.Lock()
	if p.template == dir {
		p.template = ""
	}
	s.mu.Unlock()
	_ = os.RemoveAll(dir)
}

func (s *Scheduler) boot(ctx context.Context, fn store.Function) (*sandbox.Env, error) {
	img, err := s.cfg.Images.Image(ctx, fn.CodeDigest())
	if err != nil {
		return nil, err
	}
	t0 := time.Now() // its memory is held from the start of its boot
	env, err := sandbox.Boot(ctx, s.sandboxConfig(fn.FunctionName), sandboxFunction(fn), img)
	if err != nil {
		return nil, err
	}
	s.record(env, fn)
	s.cfg.Meter.EnvStarted(env.ID(), fn.FunctionName, fn.MemorySize, t0)
	return env, nil
}

func (s *Scheduler) record(env *sandbox.Env, fn store.Function) {
	rec := store.EnvRecord{ID: env.ID(), Function: fn.FunctionName, Version: fn.Version, Digest: fn.RevisionID,
		Dir: env.Dir(), State: string(env.State()), PID: env.PID()}
	if err := s.cfg.Records.PutEnv(context.Background(), rec); err != nil {
		s.cfg.Log.Warn("record env", "env", env.ID(), "err", err)
	}
}

func (s *Scheduler) forget(env *sandbox.Env) {
	s.cfg.Meter.EnvEnded(env.ID())
	if err := s.cfg.Records.DeleteEnv(context.Background(), env.ID()); err != nil {
		s.cfg.Log.Warn("forget env", "env", env.ID(), "err", err)
	}
}

func (s *Scheduler) done(fn store.Function) {
	s.mu.Lock()
	s.busy--
	s.fnBusy[fn.FunctionName]--
	s.mu.Unlock()
}

// release returns an environment after an invocation: a live one goes back
// to the pool with its keep-warm timer; a dead one is forgotten.
func (s *Scheduler) release(fn store.Function, env *sandbox.Env) {
	s.done(fn)
	if env.State() == sandbox.StateDead {
		s.forget(env)
		return
	}
	s.record(env, fn)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pool(fn)
	if s.closed || s.pools[p.key] != p {
		go s.closeEnv(env)
		return
	}
	e := &entry{env: env}
	e.timer = time.AfterFunc(time.Duration(fn.IdlePolicy.KeepWarmSeconds)*time.Second, func() { s.suspendIdle(fn, p, e) })
	p.idle = append(p.idle, e)
}

// take removes e from list, reporting whether it was there.
func take(list *[]*entry, e *entry) bool {
	for i, x := range *list {
		if x == e {
			*list = append((*list)[:i], (*list)[i+1:]...)
			return true
		}
	}
	return false
}

// suspendIdle suspends an environment that stayed idle for its keep-warm
// time, and schedules its deletion after the keep-suspended time.
func (s *Scheduler) suspendIdle(fn store.Function, p *pool, e *entry) {
	s.mu.Lock()
	ok := take(&p.idle, e)
	s.mu.Unlock()
	if !ok {
		return // taken by an invocation meanwhile
	}
	info, err := e.env.Suspend(context.Background())
	if err != nil {
		s.cfg.Log.Warn("suspend failed; ending the environment", "env", e.env.ID(), "err", err)
		s.closeEnv(e.env)
		return
	}
	s.cfg.Meter.Suspended(e.env.ID(), fn.FunctionName, info.StateBytes+info.MemoryDiskBytes, info.Duration)
	s.record(e.env, fn)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.pools[p.key] != p {
		go s.closeEnv(e.env)
		return
	}
	s.keepSuspended(fn, p, e)
}

// keepSuspended adds a suspended entry with its deletion timer; s.mu held.
func (s *Scheduler) keepSuspended(fn store.Function, p *pool, e *entry) {
	keep := time.Duration(fn.IdlePolicy.KeepSuspendedHours) * time.Hour
	if keep <= 0 {
		keep = 24 * time.Hour
	}
	e.timer = time.AfterFunc(keep, func() {
		s.mu.Lock()
		ok := take(&p.suspended, e)
		s.mu.Unlock()
		if ok {
			s.closeEnv(e.env)
		}
	})
	p.suspended = append(p.suspended, e)
}

func (s *Scheduler) closeEnv(env *sandbox.Env) {
	if err := env.Close(context.Background()); err != nil {
		s.cfg.Log.Warn("close env", "env", env.ID(), "err", err)
	}
	s.forget(env)
}

// Retire ends the idle and suspended environments of a function: its code
// or configuration changed, or it was deleted. Busy ones end when released.
func (s *Scheduler) Retire(ctx context.Context, function string) {
	var envs []*sandbox.Env
	s.mu.Lock()
	for k, p := range s.pools {
		if p.function != function {
			continue
		}
		for _, e := range append(p.idle, p.suspended...) {
			e.timer.Stop()
			envs = append(envs, e.env)
		}
		if p.template != "" {
			_ = os.RemoveAll(p.template)
		}
		delete(s.pools, k)
	}
	s.mu.Unlock()
	for _, env := range envs {
		s.closeEnv(env)
	}
}

// Adopt takes over an environment a previous daemon suspended.
func (s *Scheduler) Adopt(ctx context.Context, fn store.Function, rec store.EnvRecord) error {
	env, err := sandbox.Open(ctx, s.sandboxConfig(fn.FunctionName), rec.Dir)
	if err != nil {
		return err
	}
	if env.State() != sandbox.StateSuspended {
		_ = env.Close(ctx)
		return errors.New("not suspended")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pool(fn)
	s.keepSuspended(fn, p, &entry{env: env})
	return nil
}

// Stats counts environments by state.
type Stats struct {
	Busy, Warm, Suspended int
	// Templates counts the revisions with a template ready to clone.
	Templates int
}

// Stats is a snapshot of the pools.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Busy: s.busy}
	for _, p := range s.pools {
		st.Warm += len(p.idle)
		st.Suspended += len(p.suspended)
		if p.template != "" {
			st.Templates++
		}
	}
	return st
}

// StatsByFunction counts environments by state for each function.
func (s *Scheduler) StatsByFunction() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Stats{}
	for _, p := range s.pools {
		st := out[p.function]
		st.Warm += len(p.idle)
		st.Suspended += len(p.suspended)
		out[p.function] = st
	}
	for fn, n := range s.fnBusy {
		if n > 0 {
			st := out[fn]
			st.Busy = n
			out[fn] = st
		}
	}
	return out
}

// Shutdown stops taking invocations, waits for those in flight (until ctx
// ends) and suspends every warm environment, so that the next daemon
// resumes them.
func (s *Scheduler) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for {
		s.mu.Lock()
		busy := s.busy
		s.mu.Unlock()
		if busy == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	var warm []*entry
	for _, p := range s.pools {
		for _, e := range p.idle {
			e.timer.Stop()
			warm = append(warm, e)
		}
		for _, e := range p.suspended {
			e.timer.Stop()
		}
		p.idle = nil
	}
	s.mu.Unlock()
	for _, e := range warm {
		info, err := e.env.Suspend(ctx)
		if err != nil {
			s.cfg.Log.Warn("suspend at shutdown failed", "env", e.env.ID(), "err", err)
			s.closeEnv(e.env)
			continue
		}
		s.cfg.Meter.Suspended(e.env.ID(), e.env.Function().Name, info.StateBytes+info.MemoryDiskBytes, info.Duration)
		if err := s.cfg.Records.PutEnv(ctx, store.EnvRecord{ID: e.env.ID(), Function: e.env.Function().Name,
			Version: e.env.Function().Version, Dir: e.env.Dir(), State: string(sandbox.StateSuspended)}); err != nil {
			s.cfg.Log.Warn("record env", "env", e.env.ID(), "err", err)
		}
	}
}
