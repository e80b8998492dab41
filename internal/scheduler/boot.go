package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// start makes a new environment for fn: a clone of the revision's
// template when there is one, else a cold boot. Room for it is reserved
// by the caller.
func (s *Scheduler) start(ctx context.Context, fn Function, p *pool, tpl string) (*sandbox.Env, error) {
	if tpl != "" {
		env, err := s.clone(ctx, fn, tpl)
		if err == nil {
			return env, nil
		}
		var th *lambdaerr.Throttled
		if errors.As(err, &th) || ctx.Err() != nil {
			return nil, err
		}
		s.cfg.Log.Warn("clone failed; booting instead", "function", fn.Name, "err", err)
		s.dropTemplate(p, tpl)
	}
	env, err := s.boot(ctx, fn)
	if err != nil {
		return nil, err
	}
	s.maybeTemplate(fn, p)
	return env, nil
}

// errHanded ends a boot whose call was handed a released environment
// while it waited for its turn.
var errHanded = errors.New("the call took an environment released meanwhile")

// turn waits for a slot among the boots in flight, in order; past the
// queue's bound it answers a 429.
func (s *Scheduler) turn(ctx context.Context) (func(), error) {
	release, err := s.gate.wait(ctx, s.cfg.Limits.BootQueueTimeout)
	if err == nil {
		if !s.booting(ctx) {
			// An environment was handed to the call meanwhile.
			release()
			return nil, errHanded
		}
		return release, nil
	}
	var gt errGateTimeout
	if errors.As(err, &gt) {
		return nil, lambdaerr.TooManyRequests(ReasonBootQueue,
			"Rate Exceeded: %d microVMs are booting on this host, and this one waited %s for its turn",
			s.cfg.Limits.MaxBootsInFlight, gt.waited)
	}
	return nil, err
}

func (s *Scheduler) clone(ctx context.Context, fn Function, tpl string) (*sandbox.Env, error) {
	release, err := s.turn(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	t0 := time.Now()
	env, err := sandbox.Clone(ctx, s.sandboxConfig(fn.Name), tpl)
	if err != nil {
		return nil, err
	}
	s.record(env, fn)
	s.cfg.Meter.EnvStarted(env.ID(), fn.Name, fn.MemoryMB, t0)
	return env, nil
}

// boot cold-boots an environment. When the machine fails rather than the
// function, the boot is tried again on a fresh machine, up to BootRetries
// times, keeping its turn among the boots.
func (s *Scheduler) boot(ctx context.Context, fn Function) (*sandbox.Env, error) {
	img, err := s.cfg.Images.Image(ctx, fn.CodeDigest, fn.LayerDigests)
	if err != nil {
		return nil, err
	}
	queued := time.Now()
	release, err := s.turn(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	for attempt := 0; ; attempt++ {
		t0 := time.Now() // its memory is held from the start of its boot
		env, err := sandbox.Boot(ctx, s.sandboxConfig(fn.Name), fn.Function, img)
		if err == nil {
			s.record(env, fn)
			s.cfg.Meter.EnvStarted(env.ID(), fn.Name, fn.MemoryMB, t0)
			s.cfg.Log.Debug("booted", "function", fn.Name, "env", env.ID(), "attempts", attempt+1,
				"queued", t0.Sub(queued), "boot", time.Since(t0))
			return env, nil
		}
		if !platformFailure(ctx, err) {
			return nil, err
		}
		if attempt >= s.cfg.Limits.BootRetries {
			if attempt > 0 {
				return nil, fmt.Errorf("%d boots failed; the last: %w", attempt+1, err)
			}
			return nil, err
		}
		s.count(&s.usage.BootRetries)
		s.cfg.Log.Warn("the microVM failed before the function ran; booting a fresh one",
			"function", fn.Name, "attempt", attempt+1, "err", err)
	}
}

// platformFailure tells a boot that failed because of the platform (the
// machine died or went silent: a guest kernel that panics at boot on a
// starved vCPU, a VMM that does not answer in time: sandbox's
// ErrMachineFailed) from any other failure. The agent reports every
// failure of the function's init (its process exits, errors or outlasts
// the init timeout) as an *sandbox.InitError: that is the function's, and
// booting it again would fail again; a host that cannot start a VMM at all
// would fail again too. A caller that gave up is not retried either.
func platformFailure(ctx context.Context, err error) bool {
	var ie *sandbox.InitError
	return errors.Is(err, sandbox.ErrMachineFailed) && !errors.As(err, &ie) && ctx.Err() == nil
}

// Prepare starts making fn's template ahead of its first invocation, when
// fn uses SnapStart, as Lambda snapshots a version when it is published.
func (s *Scheduler) Prepare(fn Function) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	p := s.pool(fn, true)
	s.mu.Unlock()
	s.maybeTemplate(fn, p)
}

// maybeTemplate starts making p's template in the background, once.
func (s *Scheduler) maybeTemplate(fn Function, p *pool) {
	if s.cfg.TemplatesDir == "" || !fn.SnapStart {
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
		dir, held, err := s.makeTemplate(context.Background(), fn)
		s.mu.Lock()
		defer s.mu.Unlock()
		p.templating = false
		switch {
		case err != nil:
			s.cfg.Log.Warn("making a template failed", "function", fn.Name, "err", err)
		case s.closed || s.pools[p.key] != p:
			_ = os.RemoveAll(dir) // retired meanwhile
			s.disk -= held
		default:
			p.template, p.templateBytes = dir, held
			s.cfg.Log.Info("template ready", "function", fn.Name, "dir", dir)
		}
	}()
}

// makeTemplate makes a template of fn, within the host's limits but
// evicting nothing: a template only speeds up later starts. The disk it
// holds is counted.
func (s *Scheduler) makeTemplate(ctx context.Context, fn Function) (string, int64, error) {
	img, err := s.cfg.Images.Image(ctx, fn.CodeDigest, fn.LayerDigests)
	if err != nil {
		return "", 0, err
	}
	if err := s.reserve(ctx, fn.MemoryMB, false, false); err != nil {
		return "", 0, err
	}
	defer s.unreserve(fn.MemoryMB, false)
	est := int64(fn.MemoryMB)<<20 + snapshotSlack
	if !s.diskRoom(est, false) {
		return "", 0, errors.New("no room for a template within the host's snapshot limit")
	}
	release, err := s.turn(ctx)
	if err != nil {
		s.mu.Lock()
		s.diskPending -= est
		s.mu.Unlock()
		return "", 0, err
	}
	cfg := s.sandboxConfig(fn.Name)
	cfg.Dir = s.cfg.TemplatesDir
	tpl, err := sandbox.NewTemplate(ctx, cfg, fn.Function, img)
	release()
	var dir string
	var held int64
	if err == nil {
		dir, held = tpl.Dir, dirBytes(tpl.Dir)
	}
	s.mu.Lock()
	s.diskPending -= est
	s.disk += held
	s.mu.Unlock()
	return dir, held, err
}

func (s *Scheduler) dropTemplate(p *pool, dir string) {
	s.mu.Lock()
	if p.template == dir {
		p.template = ""
		s.disk -= p.templateBytes
		p.templateBytes = 0
	}
	s.mu.Unlock()
	_ = os.RemoveAll(dir)
}
