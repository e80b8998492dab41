package scheduler

import (
	"context"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Limits bound what the environments of this host may hold. A zero or
// negative bound is no bound.
type Limits struct {
	// MaxEnvironments bounds the environments alive: booting, busy, warm
	// and suspended.
	MaxEnvironments int
	// MaxMemoryMB bounds the guest memory committed: the memory sizes of
	// the environments that hold a VMM (booting, busy, warm) added up. A
	// suspended environment holds none.
	MaxMemoryMB int
	// MaxSnapshotBytes bounds the disk that snapshots hold: suspended
	// environments' folders and templates.
	MaxSnapshotBytes int64
	// MaxBootsInFlight bounds the machines booting at once (cold boots,
	// clones, templates); the others wait their turn in order, for at most
	// BootQueueTimeout (zero: as long as their caller waits).
	MaxBootsInFlight int
	BootQueueTimeout time.Duration
	// BootRetries is how many more times a cold boot is tried, each on a
	// fresh machine, when the machine fails rather than the function.
	BootRetries int
}

// Throttling reasons of Hearth's own host limits. Lambda has no reason for
// a host being full (its ThrottleReason values are per account and per
// function), so these are Hearth's, named as Lambda names its reasons; the
// SDKs read Reason as an open string and retry a 429 as any throttle.
const (
	ReasonHostEnvironments = "HostEnvironmentLimitExceeded"
	ReasonHostMemory       = "HostMemoryLimitExceeded"
	ReasonBootQueue        = "ConcurrentBootLimitExceeded"
)

// snapshotSlack is added to a guest's memory size to bound what its
// snapshot may hold on disk: the device state, the manifest, its logs.
const snapshotSlack = 8 << 20

// Usage is what the host's environments hold against its limits, and
// what the limits made the scheduler do.
type Usage struct {
	Limits        Limits
	Environments  int
	MemoryMB      int
	SnapshotBytes int64
	BootsInFlight int
	BootsWaiting  int
	// BootRetries counts boots tried again after their machine failed.
	BootRetries int64
	// Handed counts calls that took an environment released while they
	// waited for their boot's turn (their boot given up).
	Handed int64
	// Retaken counts calls moved to another environment because the one
	// they took had stopped before their event reached it.
	Retaken int64
	// Suspended counts warm environments suspended to free memory;
	// Deleted environments ended to free room (the oldest suspended
	// first).
	Suspended, Deleted int64
	// SuspendsRefused counts environments ended rather than suspended, for
	// want of room for their snapshot; SuspendsFailed those ended because
	// their suspend failed.
	SuspendsRefused, SuspendsFailed int64
}

// Usage is a snapshot of the host's usage.
func (s *Scheduler) Usage() Usage {
	inFlight, waiting := s.gate.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.usage
	u.Limits = s.cfg.Limits
	u.Environments, u.MemoryMB, u.SnapshotBytes = s.envs, s.memMB, s.disk
	u.BootsInFlight, u.BootsWaiting = inFlight, waiting
	return u
}

// evictKind is what is done to an environment evicted for room.
type evictKind int

const (
	evictSuspend evictKind = iota // a warm one is suspended: frees memory
	evictDelete                   // it ends: frees its place and all it held
)

// reserve makes room for an environment to hold a VMM of memMB: a new one
// (newEnv) also takes a place among the environments, a suspended one
// resuming only its memory. With evict set it evicts what it must, in this
// order: the least recently used warm environment is suspended (it frees
// memory), the oldest suspended is deleted (it frees a place and disk),
// and when there is none of those the least recently used warm one is
// ended. When nothing more can go it answers a 429 that says which limit
// was reached.
func (s *Scheduler) reserve(ctx context.Context, memMB int, newEnv, evict bool) error {
	lim := s.cfg.Limits
	if lim.MaxMemoryMB > 0 && memMB > lim.MaxMemoryMB {
		return lambdaerr.TooManyRequests(ReasonHostMemory,
			"Rate Exceeded: this host commits at most %d MB of guest memory, less than the function's %d MB", lim.MaxMemoryMB, memMB)
	}
	waitUntil := time.Now().Add(time.Second)
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return lambdaerr.Service("Hearth is shutting down")
		}
		envShort := newEnv && lim.MaxEnvironments > 0 && s.envs+1 > lim.MaxEnvironments
		memShort := lim.MaxMemoryMB > 0 && s.memMB+memMB > lim.MaxMemoryMB
		if !envShort && !memShort {
			if newEnv {
				s.envs++
			}
			s.memMB += memMB
			s.mu.Unlock()
			return nil
		}
		var e *entry
		var kind evictKind
		if evict {
			e, kind = s.victim(envShort, memShort)
		}
		if e == nil {
			// Room may be on its way: an eviction or suspend under way
			// frees it in a moment.
			freeing := s.freeing
			s.mu.Unlock()
			if evict && freeing > 0 && time.Now().Before(waitUntil) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if envShort {
				return s.full(ReasonHostEnvironments, memMB)
			}
			return s.full(ReasonHostMemory, memMB)
		}
		s.freeing++
		s.mu.Unlock()
		s.evict(e, kind)
	}
}

// unreserve gives back what reserve took for an environment that did not
// come to be.
func (s *Scheduler) unreserve(memMB int, newEnv bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if newEnv {
		s.envs--
	}
	s.memMB -= memMB
}

// full is the 429 for a host limit reached.
func (s *Scheduler) full(reason string, memMB int) error {
	u := s.Usage()
	switch reason {
	case ReasonHostEnvironments:
		return lambdaerr.TooManyRequests(reason,
			"Rate Exceeded: this host holds its limit of %d environments, all of them busy", u.Limits.MaxEnvironments)
	default:
		return lambdaerr.TooManyRequests(reason,
			"Rate Exceeded: this host cannot commit %d MB more of guest memory (%d of %d MB committed, none of it idle)",
			memMB, u.MemoryMB, u.Limits.MaxMemoryMB)
	}
}

// victim picks, and takes out of its pool, the environment to evict for
// the room that is short; s.mu held. Nil when nothing can go.
func (s *Scheduler) victim(envShort, memShort bool) (*entry, evictKind) {
	if envShort {
		if e := s.oldestSuspended(); e != nil {
			return e, evictDelete
		}
		if e := s.lruWarm(); e != nil {
			return e, evictDelete
		}
		return nil, 0
	}
	if memShort {
		if e := s.lruWarm(); e != nil {
			return e, evictSuspend
		}
	}
	return nil, 0
}

// lruWarm takes out the warm environment used least recently; s.mu held.
func (s *Scheduler) lruWarm() *entry {
	var best *entry
	for _, p := range s.pools {
		for _, e := range p.idle {
			if best == nil || e.since.Before(best.since) {
				best = e
			}
		}
	}
	if best != nil {
		take(&best.p.idle, best)
		best.timer.Stop()
	}
	return best
}

// oldestSuspended takes out the environment suspended longest ago; s.mu
// held.
func (s *Scheduler) oldestSuspended() *entry {
	var best *entry
	for _, p := range s.pools {
		for _, e := range p.suspended {
			if best == nil || e.since.Before(best.since) {
				best = e
			}
		}
	}
	if best != nil {
		take(&best.p.suspended, best)
		best.timer.Stop()
	}
	return best
}

// evict suspends or ends an environment taken out of its pool for room.
func (s *Scheduler) evict(e *entry, kind evictKind) {
	defer func() {
		s.mu.Lock()
		s.freeing--
		s.mu.Unlock()
	}()
	if kind == evictDelete {
		s.cfg.Log.Info("deleting an environment to make room", "env", e.env.ID(), "function", e.fn.Name, "suspended", e.memMB == 0)
		s.count(&s.usage.Deleted)
		s.end(e)
		return
	}
	s.cfg.Log.Info("suspending the least recently used environment to free memory", "env", e.env.ID(), "function", e.fn.Name)
	s.count(&s.usage.Suspended)
	if s.suspend(context.Background(), e) {
		s.shelve(e)
	}
}

// shelve puts a suspended entry back in its pool, or ends it if its pool
// was retired meanwhile.
func (s *Scheduler) shelve(e *entry) {
	s.mu.Lock()
	if s.closed {
		// Suspended as the daemon stops: kept on disk, with its record,
		// for the next daemon to adopt (ending it would lose it).
		s.mu.Unlock()
		return
	}
	if s.pools[e.p.key] != e.p {
		s.mu.Unlock()
		s.end(e)
		return
	}
	s.keepSuspended(e)
	s.mu.Unlock()
}

// diskRoom reserves room in the snapshot budget for est bytes, deleting
// the oldest suspended environments first when evict is set; false when
// it cannot. The caller gives the reservation back with s.diskPending.
func (s *Scheduler) diskRoom(est int64, evict bool) bool {
	limit := s.cfg.Limits.MaxSnapshotBytes
	for {
		s.mu.Lock()
		if limit <= 0 || s.disk+s.diskPending+est <= limit {
			s.diskPending += est
			s.mu.Unlock()
			return true
		}
		var e *entry
		if evict && est <= limit {
			e = s.oldestSuspended()
		}
		if e == nil {
			s.mu.Unlock()
			return false
		}
		s.freeing++
		s.mu.Unlock()
		s.evict(e, evictDelete)
	}
}

// trim deletes the oldest suspended environments while the host holds
// more environments or snapshot bytes than its limits allow (after
// adopting a previous daemon's, say).
func (s *Scheduler) trim() {
	lim := s.cfg.Limits
	for {
		s.mu.Lock()
		over := (lim.MaxEnvironments > 0 && s.envs > lim.MaxEnvironments) ||
			(lim.MaxSnapshotBytes > 0 && s.disk > lim.MaxSnapshotBytes)
		var e *entry
		if over {
			e = s.oldestSuspended()
		}
		if e == nil {
			s.mu.Unlock()
			return
		}
		s.freeing++
		s.mu.Unlock()
		s.evict(e, evictDelete)
	}
}

// suspend saves a warm environment, taken out of its pool, to disk: when
// the snapshot budget has room for it (after deleting the oldest suspended
// environments if need be). Without room, or when the suspend fails, the
// environment is ended instead: a snapshot that may not be whole is never
// kept. It reports whether the environment is suspended.
func (s *Scheduler) suspend(ctx context.Context, e *entry) bool {
	est := int64(e.fn.MemoryMB)<<20 + snapshotSlack
	if !s.diskRoom(est, true) {
		s.cfg.Log.Warn("no room for a snapshot within the host's limit; ending the environment", "env", e.env.ID(),
			"function", e.fn.Name, "need", est, "limit", s.cfg.Limits.MaxSnapshotBytes)
		s.count(&s.usage.SuspendsRefused)
		s.end(e)
		return false
	}
	info, err := e.env.Suspend(ctx)
	var held int64
	if err == nil {
		held = dirBytes(e.env.Dir())
	}
	s.mu.Lock()
	s.diskPending -= est
	s.mu.Unlock()
	if err != nil {
		s.cfg.Log.Warn("suspend failed; ending the environment", "env", e.env.ID(), "err", err)
		s.count(&s.usage.SuspendsFailed)
		s.end(e)
		return false
	}
	s.cfg.Meter.Suspended(e.env.ID(), e.fn.Name, info.StateBytes+info.MemoryDiskBytes, info.Duration)
	s.record(e.env, e.fn)
	s.mu.Lock()
	s.memMB -= e.memMB
	s.disk += held
	e.memMB, e.disk, e.since = 0, held, time.Now()
	s.mu.Unlock()
	return true
}

// end closes an environment and gives back what it held: its place, its
// memory if it held a VMM, its disk if it was suspended.
func (s *Scheduler) end(e *entry) {
	s.closeEnv(e.env)
	s.mu.Lock()
	s.envs--
	s.memMB -= e.memMB
	s.disk -= e.disk
	e.memMB, e.disk = 0, 0
	s.mu.Unlock()
}

func (s *Scheduler) count(n *int64) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// dirBytes is the disk space the files under dir take (sparse files
// count what they hold, not their length).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n += vmm.DiskBytes(path)
		}
		return nil
	})
	return n
}
