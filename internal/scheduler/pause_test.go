package scheduler

import (
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// An idle environment goes warm → paused (after keep-warm) → suspended
// (after keep-paused); a call to a paused one continues the same VMM, with
// its memory, and one to a suspended one resumes it. Stats follow.
func TestWarmPausedSuspended(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("counter", 0)
	f.KeepWarm, f.KeepPaused = 30*time.Millisecond, time.Hour
	stats := func() Stats { return fx.s.Stats() }

	if res, n := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartCold || n != 1 {
		t.Fatalf("first call: %s count %d, want cold 1", res.StartType, n)
	}
	waitFor(t, "the idle environment to pause", func() bool { return stats().Paused == 1 })
	if st := stats(); st.Warm != 0 || st.Suspended != 0 || fx.vm.Pauses.Load() != 1 || fx.vm.Running() != 1 {
		t.Fatalf("stats %+v, pauses %d, running %d: want 1 paused with its VMM", st, fx.vm.Pauses.Load(), fx.vm.Running())
	}
	res, n := call(t, fx.s, f, `{}`)
	if res.StartType != sandbox.StartPaused || n != 2 || fx.vm.Unpauses.Load() != 1 {
		t.Fatalf("call to a paused env: %s count %d unpauses %d, want paused 2 1", res.StartType, n, fx.vm.Unpauses.Load())
	}
	if fx.vm.Boots.Load() != 1 || fx.vm.Restores.Load() != 0 {
		t.Errorf("boots %d restores %d, want the same VMM", fx.vm.Boots.Load(), fx.vm.Restores.Load())
	}

	// Now paused again, then suspended after keep-paused.
	f.KeepPaused = 30 * time.Millisecond
	if res, n := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartWarm || n != 3 {
		t.Fatalf("third call: %s count %d, want warm 3", res.StartType, n)
	}
	waitFor(t, "the idle environment to be suspended", func() bool { return stats().Suspended == 1 })
	if st := stats(); st.Paused != 0 || st.Warm != 0 || fx.vm.Pauses.Load() != 2 || fx.vm.Running() != 0 {
		t.Fatalf("stats %+v pauses %d running %d: want suspended after a pause, no VMM", st, fx.vm.Pauses.Load(), fx.vm.Running())
	}
	if res, n := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartResume || n != 4 {
		t.Fatalf("call to a suspended env: %s count %d, want resume 4", res.StartType, n)
	}
}

// With no keep-paused time an idle environment is suspended straight from
// warm, as before the paused tier.
func TestNoKeepPausedSuspendsAtOnce(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("counter", 0)
	f.KeepWarm = 20 * time.Millisecond
	call(t, fx.s, f, `{}`)
	waitFor(t, "the idle environment to be suspended", func() bool { return fx.s.Stats().Suspended == 1 })
	if p := fx.vm.Pauses.Load(); p != 0 {
		t.Errorf("%d pauses, want none", p)
	}
}

// A paused environment is found by a call that comes while its pause is
// under way or after it; concurrent calls each get an environment, and
// the paused one is used only when no warm one is left.
func TestWarmBeforePaused(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("counter", 0)
	f.KeepWarm, f.KeepPaused = 30*time.Millisecond, time.Hour
	call(t, fx.s, f, `{}`)
	waitFor(t, "the idle environment to pause", func() bool { return fx.s.Stats().Paused == 1 })
	// A second environment, warm: two calls at once make it.
	l1, err := fx.s.Acquire(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	f2 := f
	f2.KeepWarm = time.Hour
	l2, err := fx.s.Acquire(t.Context(), f2)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := l1.Invoke(t.Context(), sandbox.Request{Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l2.Invoke(t.Context(), sandbox.Request{Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	l1.Release()
	if r1.StartType != sandbox.StartPaused || r2.StartType != sandbox.StartCold {
		t.Fatalf("starts %s, %s: want the paused one, then a cold one", r1.StartType, r2.StartType)
	}
	l2.Release() // most recently used: warm for an hour
	waitFor(t, "the first to pause again", func() bool { st := fx.s.Stats(); return st.Paused == 1 && st.Warm == 1 })
	if res, _ := call(t, fx.s, f2, `{}`); res.StartType != sandbox.StartWarm || res.EnvID != r2.EnvID {
		t.Errorf("with a warm and a paused env: %s on %s, want warm on %s", res.StartType, res.EnvID, r2.EnvID)
	}
}
