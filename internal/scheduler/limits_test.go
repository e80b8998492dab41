package scheduler

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// fatVMM boots fake machines whose guests touched 1 MiB of their memory,
// so that a suspended environment holds that much disk.
type fatVMM struct{ *fakevmm.VMM }

const touched = 1 << 20

func (v fatVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	m, err := v.VMM.Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(spec.MemoryFile(), os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteAt(bytes.Repeat([]byte{1}, touched), 0)
		f.Close()
	}
	if err != nil {
		_ = m.Stop(ctx)
		return nil, err
	}
	return m, nil
}

// pools is what the pools hold per function: warm and suspended
// environments.
type pools map[string][2]int

func poolsOf(s *Scheduler) pools {
	out := pools{}
	for name, st := range s.StatsByFunction() {
		if st.Warm+st.Suspended > 0 {
			out[name] = [2]int{st.Warm, st.Suspended}
		}
	}
	return out
}

// limitStep calls a function (kept warm for keep after the call), and
// then expects the pools to settle as want: which environments were
// suspended or deleted to make room.
type limitStep struct {
	call      string
	keep      time.Duration
	wantStart sandbox.StartType
	want      pools
}

func runSteps(t *testing.T, fx fixture, steps []limitStep) {
	t.Helper()
	for i, st := range steps {
		f := fn(st.call, 0)
		f.KeepWarm = st.keep
		res, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{}`)})
		if err != nil {
			t.Fatalf("step %d (%s): %v", i+1, st.call, err)
		}
		if res.StartType != st.wantStart {
			t.Errorf("step %d (%s): start %s, want %s", i+1, st.call, res.StartType, st.wantStart)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !maps.Equal(poolsOf(fx.s), st.want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := poolsOf(fx.s); !maps.Equal(got, st.want) {
			t.Fatalf("step %d (%s): pools {warm, suspended} %v, want %v", i+1, st.call, got, st.want)
		}
	}
}

// busy holds n invocations in flight on the warm environments of the
// functions named, until the test ends.
func busy(t *testing.T, s *Scheduler, names ...string) {
	t.Helper()
	before := s.Stats().Busy
	done := make(chan error, len(names))
	for _, name := range names {
		go func() {
			_, err := invoke(s, fn(name, 3600), sandbox.Request{Payload: []byte(`{"sleepMs":400}`)})
			done <- err
		}()
	}
	waitFor(t, "the calls to be in flight", func() bool { return s.Stats().Busy == before+len(names) })
	t.Cleanup(func() {
		for range names {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
}

func wantThrottled(t *testing.T, err error, reason string) {
	t.Helper()
	var th *lambdaerr.Throttled
	if !errors.As(err, &th) || th.Reason != reason || th.Err.Status != 429 || th.Err.Type != "TooManyRequestsException" {
		t.Fatalf("got %v, want a 429 TooManyRequestsException %s", err, reason)
	}
}

// wantNothingHeld checks that once every function is retired the host's
// accounts are back to zero: nothing leaked.
func wantNothingHeld(t *testing.T, s *Scheduler, names ...string) {
	t.Helper()
	waitFor(t, "the calls in flight to end", func() bool { return s.Stats().Busy == 0 })
	for _, name := range names {
		s.Retire(context.Background(), name)
	}
	if u := s.Usage(); u.Environments != 0 || u.MemoryMB != 0 || u.SnapshotBytes != 0 {
		t.Errorf("after retiring everything the host still holds %d environments, %d MB, %d snapshot bytes",
			u.Environments, u.MemoryMB, u.SnapshotBytes)
	}
}

const hour = time.Hour

// The environment limit counts every environment; a new one takes the
// place of the oldest suspended, then of the least recently used warm one;
// when all are busy the caller gets a 429 that says so.
func TestEnvironmentLimit(t *testing.T) {
	fx := newFixtureWith(t, fakevmm.New(), nil, t.TempDir(), func(c *Config) { c.Limits.MaxEnvironments = 2 })
	runSteps(t, fx, []limitStep{
		{"a", 0, sandbox.StartCold, pools{"a": {0, 1}}},
		{"b", 0, sandbox.StartCold, pools{"a": {0, 1}, "b": {0, 1}}},
		{"c", hour, sandbox.StartCold, pools{"b": {0, 1}, "c": {1, 0}}}, // a, the oldest suspended, deleted
		{"d", hour, sandbox.StartCold, pools{"c": {1, 0}, "d": {1, 0}}}, // then b
		{"d", hour, sandbox.StartWarm, pools{"c": {1, 0}, "d": {1, 0}}},
		{"e", hour, sandbox.StartCold, pools{"d": {1, 0}, "e": {1, 0}}}, // none suspended: c, used least recently, ended
	})
	if u := fx.s.Usage(); u.Deleted != 3 || u.Environments != 2 {
		t.Errorf("usage %+v, want 3 deleted and 2 environments", u)
	}
	if recs, _ := fx.store.Envs(context.Background()); len(recs) != 2 {
		t.Errorf("records %+v, want the 2 environments left", recs)
	}
	busy(t, fx.s, "d", "e")
	_, err := invoke(fx.s, fn("f", 3600), sandbox.Request{})
	wantThrottled(t, err, ReasonHostEnvironments)
	wantNothingHeld(t, fx.s, "a", "b", "c", "d", "e", "f")
}

// The memory limit counts the environments that hold a VMM; a new one, or
// a resume, suspends the least recently used warm environment; when none
// is idle the caller gets a 429, and a suspended environment it wanted
// stays suspended.
func TestMemoryLimit(t *testing.T) {
	fx := newFixtureWith(t, fakevmm.New(), nil, t.TempDir(), func(c *Config) { c.Limits.MaxMemoryMB = 256 })
	runSteps(t, fx, []limitStep{
		{"a", hour, sandbox.StartCold, pools{"a": {1, 0}}},
		{"b", hour, sandbox.StartCold, pools{"a": {1, 0}, "b": {1, 0}}},
		{"a", hour, sandbox.StartWarm, pools{"a": {1, 0}, "b": {1, 0}}},
		{"c", hour, sandbox.StartCold, pools{"a": {1, 0}, "b": {0, 1}, "c": {1, 0}}},   // b, used least recently, suspended
		{"b", hour, sandbox.StartResume, pools{"a": {0, 1}, "b": {1, 0}, "c": {1, 0}}}, // its resume suspends a
	})
	if u := fx.s.Usage(); u.Suspended != 2 || u.MemoryMB != 256 || u.Environments != 3 {
		t.Errorf("usage %+v, want 2 suspended for memory, 256 MB, 3 environments", u)
	}
	busy(t, fx.s, "b", "c")
	_, err := invoke(fx.s, fn("d", 3600), sandbox.Request{})
	wantThrottled(t, err, ReasonHostMemory)
	_, err = invoke(fx.s, fn("a", 3600), sandbox.Request{})
	wantThrottled(t, err, ReasonHostMemory)
	if got := poolsOf(fx.s)["a"]; got != [2]int{0, 1} {
		t.Errorf("a after its refused resume: %v, want still suspended", got)
	}
	// A function larger than the whole limit can never be served.
	big := fn("big", 3600)
	big.MemoryMB = 512
	_, err = invoke(fx.s, big, sandbox.Request{})
	wantThrottled(t, err, ReasonHostMemory)
	wantNothingHeld(t, fx.s, "a", "b", "c", "d", "big")
}

// The snapshot limit counts the disk that suspended environments hold: a
// suspend that needs room deletes the oldest suspended first; one that
// cannot fit at all ends its environment instead, leaving no snapshot.
func TestSnapshotDiskLimit(t *testing.T) {
	est := int64(128)<<20 + snapshotSlack // what a 128 MB guest's snapshot may hold
	t.Run("oldest suspended deleted for room", func(t *testing.T) {
		vm := fakevmm.New()
		fx := newFixtureWith(t, vm, fatVMM{vm}, t.TempDir(), func(c *Config) {
			// Room for a snapshot being written and one more held.
			c.Limits.MaxSnapshotBytes = est + touched + touched/2
		})
		runSteps(t, fx, []limitStep{
			{"a", 0, sandbox.StartCold, pools{"a": {0, 1}}},
			{"b", 0, sandbox.StartCold, pools{"a": {0, 1}, "b": {0, 1}}},
			{"c", 0, sandbox.StartCold, pools{"b": {0, 1}, "c": {0, 1}}}, // a deleted for c's snapshot
		})
		u := fx.s.Usage()
		if u.Deleted != 1 || u.SnapshotBytes < 2*touched || u.SnapshotBytes > u.Limits.MaxSnapshotBytes {
			t.Errorf("usage %+v, want 1 deleted and two snapshots of over 1 MiB held", u)
		}
		wantNothingHeld(t, fx.s, "a", "b", "c")
	})
	t.Run("no room at all: ended, not suspended", func(t *testing.T) {
		vm := fakevmm.New()
		dir := t.TempDir()
		fx := newFixtureWith(t, vm, fatVMM{vm}, dir, func(c *Config) { c.Limits.MaxSnapshotBytes = est - 1 })
		runSteps(t, fx, []limitStep{{"a", 0, sandbox.StartCold, pools{}}})
		waitFor(t, "the environment to end", func() bool {
			recs, _ := fx.store.Envs(context.Background())
			return len(recs) == 0
		})
		if u := fx.s.Usage(); u.SuspendsRefused != 1 || u.Environments != 0 || u.MemoryMB != 0 || u.SnapshotBytes != 0 {
			t.Errorf("usage %+v, want 1 suspend refused and nothing held", u)
		}
		if left, _ := os.ReadDir(fx.cfg.Sandbox.Dir); len(left) != 0 {
			t.Errorf("folders left: %v", left)
		}
		if res, n := call(t, fx.s, fn("a", 3600), `{}`); res.StartType != sandbox.StartCold || n != 1 {
			t.Errorf("next call: %s %d, want a fresh cold environment", res.StartType, n)
		}
		wantNothingHeld(t, fx.s, "a")
	})
}

// Environments adopted from a previous daemon count against the limits;
// past them the oldest are deleted.
func TestAdoptTrimsToLimits(t *testing.T) {
	dir := t.TempDir()
	vm := fakevmm.New()
	fx := newFixture(t, vm, dir, 8)
	for _, name := range []string{"a", "b", "c"} {
		call(t, fx.s, fn(name, 3600), `{}`)
	}
	fx.s.Shutdown(context.Background())
	recs, err := fx.store.Envs(context.Background())
	if err != nil || len(recs) != 3 {
		t.Fatalf("records after shutdown: %+v %v", recs, err)
	}
	cfg := fx.cfg
	cfg.Limits.MaxEnvironments = 2
	next := New(cfg)
	defer next.Shutdown(context.Background())
	for _, rec := range recs {
		if err := next.Adopt(context.Background(), fn(rec.Function, 3600), rec); err != nil {
			t.Fatal(err)
		}
	}
	if u := next.Usage(); u.Environments != 2 || u.Deleted != 1 {
		t.Errorf("after adopting 3 with a limit of 2: %+v", u)
	}
	if left, _ := fx.store.Envs(context.Background()); len(left) != 2 {
		t.Errorf("records %+v, want 2", left)
	}
}
