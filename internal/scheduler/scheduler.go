// Package scheduler keeps a pool of execution environments per function
// version: an invocation takes a warm environment, else resumes a suspended
// one, else boots a new one; one invocation per environment at a time;
// per-function and global concurrency limits answer 429 rather than queue.
// An idle environment is paused after its function's keep-warm time (its
// vCPUs stopped, its guest memory out of host RAM, its VMM kept), suspended
// after its keep-paused time and deleted after its keep-suspended time: a
// function nobody calls costs nothing.
package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
)

// Images builds (or finds) what a function's code boots: the code package
// with the layer zips unpacked into /opt in their order.
type Images interface {
	Image(ctx context.Context, codeDigest string, layerDigests []string) (sandbox.Image, error)
}

// Records keeps the scheduler's environments on disk, so a restarted daemon
// knows them.
type Records interface {
	PutEnv(ctx context.Context, e store.EnvRecord) error
	DeleteEnv(ctx context.Context, id string) error
}

// Meter records the lives and suspensions of environments (for the
// without-suspend and storage figures); invocations are metered by the
// caller.
type Meter interface {
	EnvStarted(id, function string, memoryMB int, at time.Time)
	EnvEnded(id string)
	Suspended(id, function string, bytes int64, took time.Duration)
	Resumed(id string)
}

type noMeter struct{}

func (noMeter) EnvStarted(string, string, int, time.Time)      {}
func (noMeter) EnvEnded(string)                                {}
func (noMeter) Suspended(string, string, int64, time.Duration) {}
func (noMeter) Resumed(string)                                 {}

// Logs gives each function's log, where its environments' output goes.
type Logs interface {
	Writer(function string) io.Writer
}

// Function is what the scheduler needs of a function at one version: what
// its environments run, which pool they belong to, and its limits and idle
// policy.
type Function struct {
	sandbox.Function
	// Revision changes with the code or the configuration: a new revision
	// gets new environments.
	Revision string
	// CodeDigest names the code package, for Images.
	CodeDigest string
	// LayerDigests name the zips of the function's layers, in order, for
	// Images.
	LayerDigests []string
	// Reserved is the function's reserved concurrency; nil for none.
	Reserved *int
	// KeepWarm is how long an idle environment stays warm before it is
	// paused; KeepPaused how long it stays paused before it is suspended
	// (0: it is suspended at once, as before there was a paused tier);
	// KeepSuspended how long a suspended one is kept.
	KeepWarm, KeepPaused, KeepSuspended time.Duration
	// SnapStart makes a template after the revision's first cold boot (when
	// the scheduler has a TemplatesDir) and clones further environments
	// from it.
	SnapStart bool
}

// Config is how the scheduler runs.
type Config struct {
	Sandbox sandbox.Config
	Images  Images
	Records Records
	// Logs receives each function's output; nil discards it.
	Logs Logs
	// Meter records usage; nil records nothing.
	Meter Meter
	// MaxConcurrency bounds the invocations in flight on this host.
	MaxConcurrency int
	// Limits bound the environments, guest memory and snapshot disk of
	// this host, and the boots at once.
	Limits Limits
	// TemplatesDir holds templates: for a function with SnapStart, after a
	// revision's first cold boot, a template is made there in the
	// background, and environments beyond the warm and suspended ones are
	// cloned from it. Empty turns templates off.
	TemplatesDir string
	Log          *slog.Logger
}

// Scheduler runs invocations on pooled environments.
type Scheduler struct {
	cfg  Config
	gate *gate

	// recorded is what was last written for each environment (an
	// *envRecord by id): a warm call's release changes nothing in its
	// record, and writes nothing.
	recorded sync.Map

	mu     sync.Mutex
	pools  map[string]*pool // by poolKey
	fnBusy map[string]int   // in-flight invocations per function name
	busy   int              // in flight on this host
	closed bool

	// What the environments hold against the host's limits.
	envs        int   // alive: booting, busy, warm, suspended
	memMB       int   // guest memory of those holding a VMM
	disk        int64 // bytes of suspended environments and templates
	diskPending int64 // bytes reserved for snapshots being written
	freeing     int   // evictions under way
	usage       Usage // counters
}

type pool struct {
	key, function string
	idle          []*entry // warm or paused, most recently used last
	suspended     []*entry
	// waiting are the calls whose new environment still waits for its
	// turn to boot, first come first: an environment released meanwhile
	// goes to the first of them, whose boot is then given up.
	waiting       []*waiter
	template      string // folder of the template to clone, if made
	templateBytes int64  // the disk it holds
	templating    bool   // a template is being made
}

// entry is an environment in a pool: warm (it holds a VMM and memMB of
// guest memory) or suspended (it holds disk bytes).
type entry struct {
	env   *sandbox.Env
	fn    Function
	p     *pool
	timer *time.Timer
	// since is when a warm environment was last released, or when a
	// suspended one was suspended: the eviction order.
	since time.Time
	memMB int
	disk  int64
	// paused is set (s.mu held) when an idle environment was paused: it
	// still holds its VMM and memMB against the limits, but little host RAM.
	paused bool
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
	return &Scheduler{cfg: cfg, gate: newGate(cfg.Limits.MaxBootsInFlight), pools: map[string]*pool{}, fnBusy: map[string]int{}}
}

// poolKey names the pool of a function at a version and revision: a change
// of code or configuration makes a new revision, and new environments.
func poolKey(fn Function) string {
	return fn.Name + "@" + fn.Version + "#" + fn.Revision
}

// pool returns fn's pool, making it if create is set; s.mu held. Only an
// acquire creates pools: an environment released after its pool was
// retired must not bring the pool back.
func (s *Scheduler) pool(fn Function, create bool) *pool {
	k := poolKey(fn)
	p := s.pools[k]
	if p == nil && create {
		p = &pool{key: k, function: fn.Name}
		s.pools[k] = p
	}
	return p
}

// Lease is an environment acquired for one invocation. Its holder runs the
// invocation, then releases it: the environment goes back to its pool, or
// ends.
type Lease struct {
	s   *Scheduler
	fn  Function
	env *sandbox.Env
}

// Acquire reserves a slot within the host's and the function's limits and
// returns an environment of fn: a warm one, else a suspended one (resumed
// by its first invocation), else a clone of the revision's template, else a
// new one booted. A failed init is an *sandbox.InitError; a limit reached
// is a *lambdaerr.Throttled.
func (s *Scheduler) Acquire(ctx context.Context, fn Function) (*Lease, error) {
	env, err := s.acquire(ctx, fn)
	if err != nil {
		return nil, err
	}
	return &Lease{s: s, fn: fn, env: env}, nil
}

// maxRetakes bounds how many other environments one call may be moved to
// after the one it held stopped before the event reached it.
const maxRetakes = 2

// Invoke runs one invocation on the leased environment. An environment
// whose guest broke its link while idle is seen dead only when it is
// taken (sandbox.ErrDead: the event never reached it, nothing ran): the
// call then moves to another environment of its function, as if the dead
// one had never been handed out. A failed cold start on the way is an
// *sandbox.InitError, as from Acquire.
func (l *Lease) Invoke(ctx context.Context, req sandbox.Request) (*sandbox.Result, error) {
	for retakes := 0; ; retakes++ {
		res, err := l.env.Invoke(ctx, req)
		if res != nil || !errors.Is(err, sandbox.ErrDead) || retakes == maxRetakes || ctx.Err() != nil {
			return res, err
		}
		l.s.cfg.Log.Info("the environment stopped before the call reached it; another serves it",
			"env", l.env.ID(), "function", l.fn.Name, "err", err)
		l.s.count(&l.s.usage.Retaken)
		l.s.release(l.fn, l.env)
		env, err := l.s.acquire(ctx, l.fn)
		if err != nil {
			l.env = nil
			return nil, err
		}
		l.env = env
	}
}

// Release gives the environment back; the lease is spent.
func (l *Lease) Release() {
	if l.env != nil { // nil: a retake found no environment
		l.s.release(l.fn, l.env)
	}
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
func (s *Scheduler) acquire(ctx context.Context, fn Function) (*sandbox.Env, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, lambdaerr.Service("Hearth is shutting down")
	}
	if fn.Reserved != nil && s.fnBusy[fn.Name] >= *fn.Reserved {
		s.mu.Unlock()
		return nil, lambdaerr.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	if s.busy >= s.cfg.MaxConcurrency {
		s.mu.Unlock()
		return nil, lambdaerr.TooManyRequests("ConcurrentInvocationLimitExceeded", "Rate Exceeded.")
	}
	s.busy++
	s.fnBusy[fn.Name]++
	p := s.pool(fn, true)
	var e *entry
	var dead []*entry
	for e == nil && len(p.idle) > 0 {
		e, p.idle = p.idle[len(p.idle)-1], p.idle[:len(p.idle)-1]
		if e.env.State() == sandbox.StateDead {
			// Its guest broke the link while it was idle: the sandbox
			// ended its VMM; forget it and look further.
			dead, e = append(dead, e), nil
		}
	}
	if e == nil && len(p.suspended) > 0 {
		// The invocation resumes it.
		e, p.suspended = p.suspended[len(p.suspended)-1], p.suspended[:len(p.suspended)-1]
	}
	tpl := p.template
	if e != nil {
		e.timer.Stop()
	}
	s.mu.Unlock()
	for _, d := range dead {
		d.timer.Stop()
		s.end(d)
	}
	if e != nil {
		if e.memMB == 0 {
			// Suspended: its resume takes a VMM again, and memory.
			if err := s.reserve(ctx, fn.MemoryMB, false, true); err != nil {
				s.shelve(e)
				s.done(fn)
				return nil, err
			}
			s.mu.Lock()
			s.disk -= e.disk
			s.mu.Unlock()
			s.cfg.Meter.Resumed(e.env.ID())
		}
		return e.env, nil
	}
	if err := s.reserve(ctx, fn.MemoryMB, true, true); err != nil {
		s.done(fn)
		return nil, err
	}
	w := &waiter{p: p}
	bctx, cancel := context.WithCancel(withWaiter(ctx, w))
	defer cancel()
	w.cancel = cancel
	s.mu.Lock()
	p.waiting = append(p.waiting, w)
	s.mu.Unlock()
	env, err := s.start(bctx, fn, p, tpl)
	s.mu.Lock()
	handed := w.handed
	s.withdrawLocked(w)
	s.mu.Unlock()
	if handed != nil {
		// An environment freed while this call waited for its boot's
		// turn: the call runs there, and the boot was given up.
		s.unreserve(fn.MemoryMB, true)
		if env != nil {
			s.release(fn, env) // a boot that got through anyway: idle
			s.mu.Lock()
			s.busy++ // release counted this call done; it is not
			s.fnBusy[fn.Name]++
			s.mu.Unlock()
		}
		return handed.env, nil
	}
	if err != nil {
		s.unreserve(fn.MemoryMB, true)
		s.done(fn)
		return nil, err
	}
	return env, nil
}

// waiter is a call whose new environment waits for its turn to boot.
type waiter struct {
	p      *pool
	cancel context.CancelFunc // gives the boot up
	// handed is the environment released to it, booting that it started
	// (both s.mu held): a booting waiter is handed nothing.
	handed  *entry
	booting bool
}

type waiterKey struct{}

func withWaiter(ctx context.Context, w *waiter) context.Context {
	return context.WithValue(ctx, waiterKey{}, w)
}

// booting tells a call's waiter, if ctx has one, that its boot has its
// turn and starts: from now on it takes no released environment. False
// when one was handed to it first (the boot is then not to start).
func (s *Scheduler) booting(ctx context.Context) bool {
	w, _ := ctx.Value(waiterKey{}).(*waiter)
	if w == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.handed != nil {
		return false
	}
	w.booting = true
	s.withdrawLocked(w)
	return true
}

// withdrawLocked takes w off its pool's list; s.mu held.
func (s *Scheduler) withdrawLocked(w *waiter) {
	for i, x := range w.p.waiting {
		if x == w {
			w.p.waiting = append(w.p.waiting[:i], w.p.waiting[i+1:]...)
			return
		}
	}
}

// handLocked gives e to the first call of its pool still waiting for its
// boot's turn, reporting whether there was one; s.mu held.
func (s *Scheduler) handLocked(e *entry) bool {
	for len(e.p.waiting) > 0 {
		w := e.p.waiting[0]
		e.p.waiting = e.p.waiting[1:]
		if w.booting || w.handed != nil {
			continue
		}
		w.handed = e
		w.cancel()
		return true
	}
	return false
}

// envRecord is the record last written for one environment; its lock
// orders that environment's writes, so what it holds is what the store
// holds.
type envRecord struct {
	mu      sync.Mutex
	last    store.EnvRecord
	written bool
}

// record writes env's record when it differs from the one last written.
func (s *Scheduler) record(env *sandbox.Env, fn Function) {
	rec := store.EnvRecord{ID: env.ID(), Function: fn.Name, Version: fn.Version, Digest: fn.Revision,
		Dir: env.Dir(), State: string(env.State()), PID: env.PID()}
	v, _ := s.recorded.LoadOrStore(rec.ID, &envRecord{})
	r := v.(*envRecord)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written && r.last == rec {
		return
	}
	if err := s.cfg.Records.PutEnv(context.Background(), rec); err != nil {
		r.written = false
		s.cfg.Log.Warn("record env", "env", env.ID(), "err", err)
		return
	}
	r.last, r.written = rec, true
}

func (s *Scheduler) forget(env *sandbox.Env) {
	s.recorded.Delete(env.ID())
	s.cfg.Meter.EnvEnded(env.ID())
	if err := s.cfg.Records.DeleteEnv(context.Background(), env.ID()); err != nil {
		s.cfg.Log.Warn("forget env", "env", env.ID(), "err", err)
	}
}

func (s *Scheduler) done(fn Function) {
	s.mu.Lock()
	s.busy--
	s.fnBusy[fn.Name]--
	s.mu.Unlock()
}

// release returns an environment after an invocation: a live one goes back
// to its pool with its keep-warm timer; a dead one is forgotten, and one
// whose pool was retired meanwhile (new code or configuration, or the
// function deleted) is ended: it must never serve another revision; and
// so is one whose resume failed.
func (s *Scheduler) release(fn Function, env *sandbox.Env) {
	s.done(fn)
	e := &entry{env: env, fn: fn, memMB: fn.MemoryMB, since: time.Now()}
	switch env.State() {
	case sandbox.StateDead:
		s.forget(env)
		s.mu.Lock()
		s.envs--
		s.memMB -= e.memMB
		s.mu.Unlock()
		return
	case sandbox.StateSuspended:
		// Its resume failed: it holds no VMM, and a snapshot that did not
		// resume once is not trusted to resume later.
		s.end(e)
		return
	}
	s.mu.Lock()
	e.p = s.pool(fn, false)
	if s.closed || e.p == nil {
		s.mu.Unlock()
		s.end(e)
		return
	}
	if s.handLocked(e) {
		s.mu.Unlock()
		s.count(&s.usage.Handed)
		return
	}
	if fn.KeepPaused > 0 {
		e.timer = time.AfterFunc(fn.KeepWarm, func() { s.pauseIdle(e) })
	} else {
		e.timer = time.AfterFunc(fn.KeepWarm, func() { s.suspendIdle(e) })
	}
	e.p.idle = append(e.p.idle, e)
	s.mu.Unlock()
	s.record(env, fn)
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

// pauseIdle pauses an environment that stayed warm for its keep-warm time,
// and schedules its suspend after the keep-paused time. It is out of the
// pool while the pause is under way, so that no invocation finds it busy,
// and goes back first in line for eviction, last for reuse (it is the
// least recently used). One that fails to pause is suspended at once.
func (s *Scheduler) pauseIdle(e *entry) {
	s.mu.Lock()
	ok := take(&e.p.idle, e)
	s.mu.Unlock()
	if !ok {
		return // taken by an invocation, or evicted, meanwhile
	}
	if _, err := e.env.Pause(context.Background()); err != nil {
		s.cfg.Log.Warn("pause idle env; suspending it", "env", e.env.ID(), "err", err)
		s.mu.Lock()
		e.p.idle = append([]*entry{e}, e.p.idle...)
		s.mu.Unlock()
		s.suspendIdle(e)
		return
	}
	s.mu.Lock()
	if s.closed || s.pools[e.p.key] != e.p {
		// Retired or shut down while it paused: no pool to go back to.
		s.mu.Unlock()
		s.end(e)
		return
	}
	e.paused = true
	e.timer = time.AfterFunc(e.fn.KeepPaused, func() { s.suspendIdle(e) })
	e.p.idle = append([]*entry{e}, e.p.idle...)
	s.mu.Unlock()
	s.record(e.env, e.fn)
}

// suspendIdle suspends an environment that stayed idle for its keep-warm
// (and keep-paused) time, and schedules its deletion after the
// keep-suspended time.
func (s *Scheduler) suspendIdle(e *entry) {
	s.mu.Lock()
	ok := take(&e.p.idle, e)
	if ok {
		s.freeing++
	}
	s.mu.Unlock()
	if !ok {
		return // taken by an invocation, or evicted, meanwhile
	}
	defer func() {
		s.mu.Lock()
		s.freeing--
		s.mu.Unlock()
	}()
	if s.suspend(context.Background(), e) {
		s.shelve(e)
	}
}

// keepSuspended adds a suspended entry with its deletion timer; s.mu held.
func (s *Scheduler) keepSuspended(e *entry) {
	keep := e.fn.KeepSuspended
	if keep <= 0 {
		keep = 24 * time.Hour
	}
	if e.since.IsZero() {
		e.since = time.Now()
	}
	e.timer = time.AfterFunc(keep, func() {
		s.mu.Lock()
		ok := take(&e.p.suspended, e)
		s.mu.Unlock()
		if ok {
			s.end(e)
		}
	})
	e.p.suspended = append(e.p.suspended, e)
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
	var ended []*entry
	s.mu.Lock()
	for k, p := range s.pools {
		if p.function != function {
			continue
		}
		for _, e := range append(p.idle, p.suspended...) {
			e.timer.Stop()
			ended = append(ended, e)
		}
		p.idle, p.suspended = nil, nil
		if p.template != "" {
			_ = os.RemoveAll(p.template)
			s.disk -= p.templateBytes
			p.template, p.templateBytes = "", 0
		}
		delete(s.pools, k)
	}
	s.mu.Unlock()
	for _, e := range ended {
		s.end(e)
	}
}

// Adopt takes over an environment a previous daemon suspended. When the
// host then holds more than its limits allow, the oldest suspended
// environments are deleted.
func (s *Scheduler) Adopt(ctx context.Context, fn Function, rec store.EnvRecord) error {
	env, err := sandbox.Open(ctx, s.sandboxConfig(fn.Name), rec.Dir)
	if err != nil {
		return err
	}
	if env.State() != sandbox.StateSuspended {
		_ = env.Close(ctx)
		return errors.New("not suspended")
	}
	e := &entry{env: env, fn: fn, since: time.Now(), disk: dirBytes(rec.Dir)}
	if fi, err := os.Stat(rec.Dir); err == nil {
		e.since = fi.ModTime() // about when it was suspended
	}
	s.mu.Lock()
	e.p = s.pool(fn, true)
	s.envs++
	s.disk += e.disk
	s.keepSuspended(e)
	s.mu.Unlock()
	s.trim()
	return nil
}

// Stats counts environments by state.
type Stats struct {
	// Warm counts the idle environments running; Paused the idle ones
	// whose VMM is paused.
	Busy, Warm, Paused, Suspended int
	// Templates counts the revisions with a template ready to clone.
	Templates int
}

// add counts p's idle and suspended environments; s.mu held.
func (st *Stats) add(p *pool) {
	for _, e := range p.idle {
		if e.paused {
			st.Paused++
		} else {
			st.Warm++
		}
	}
	st.Suspended += len(p.suspended)
}

// Stats is a snapshot of the pools.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Busy: s.busy}
	for _, p := range s.pools {
		st.add(p)
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
		st.add(p)
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
// ends) and suspends every warm environment within the snapshot budget,
// so that the next daemon resumes them.
func (s *Scheduler) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// Calls end, and suspends and evictions under way (an idle
	// environment's keep-warm may have just run out) finish, before the
	// daemon closes the store their records go to.
	for {
		s.mu.Lock()
		busy, freeing := s.busy, s.freeing
		s.mu.Unlock()
		if (busy == 0 && freeing == 0) || ctx.Err() != nil {
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
		_ = s.suspend(ctx, e)
	}
}
