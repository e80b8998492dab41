package scheduler

import (
	"slices"
	"time"
)

// A drained host moves its suspended environments to other hosts: it
// lists them (SuspendedEnvs), takes one out of its pool while its folder
// is shipped (Take), and ends it once another host adopted it (Moved) or
// puts it back (Return).

// SuspendedEnv is a suspended environment, for a move.
type SuspendedEnv struct {
	ID, Dir  string
	Function Function
	// Since is when it was suspended.
	Since time.Time
}

// SuspendedEnvs lists the suspended environments, oldest first.
func (s *Scheduler) SuspendedEnvs() []SuspendedEnv {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SuspendedEnv
	for _, p := range s.pools {
		for _, e := range p.suspended {
			out = append(out, SuspendedEnv{ID: e.env.ID(), Dir: e.env.Dir(), Function: e.fn, Since: e.since})
		}
	}
	slices.SortFunc(out, func(a, b SuspendedEnv) int { return a.Since.Compare(b.Since) })
	return out
}

// Taken is a suspended environment out of its pool: no invocation resumes
// it and no timer deletes it until it is Moved or Returned.
type Taken struct {
	s *Scheduler
	e *entry
}

// Take takes the suspended environment id out of its pool; false when it
// is not suspended here (resumed or deleted meanwhile).
func (s *Scheduler) Take(id string) (*Taken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	for _, p := range s.pools {
		for _, e := range p.suspended {
			if e.env.ID() == id {
				take(&p.suspended, e)
				e.timer.Stop()
				return &Taken{s: s, e: e}, true
			}
		}
	}
	return nil, false
}

// Env is the environment taken.
func (t *Taken) Env() SuspendedEnv {
	return SuspendedEnv{ID: t.e.env.ID(), Dir: t.e.env.Dir(), Function: t.e.fn, Since: t.e.since}
}

// Moved ends the environment here, its folder and record included:
// another host adopted it.
func (t *Taken) Moved() { t.s.end(t.e) }

// Return puts the environment back in its pool. When the daemon is
// shutting down it is left as it is on disk, recorded, for the next
// daemon to adopt; when its function changed meanwhile it is ended.
func (t *Taken) Return() {
	s := t.s
	s.mu.Lock()
	if s.closed {
		s.envs--
		s.disk -= t.e.disk
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.shelve(t.e)
}
