package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// fixture is a scheduler over the fake VMM, with a real store.
type fixture struct {
	s     *Scheduler
	vm    *fakevmm.VMM
	store *store.Store
	cfg   Config
}

type images struct{ img sandbox.Image }

func (i images) Image(context.Context, string, []string) (sandbox.Image, error) { return i.img, nil }

func newFixture(t *testing.T, vm *fakevmm.VMM, dir string, maxConcurrency int) fixture {
	t.Helper()
	if vm == nil {
		vm = fakevmm.New()
	}
	return newFixtureWith(t, vm, vm, dir, func(c *Config) { c.MaxConcurrency = maxConcurrency })
}

// newFixtureWith is a scheduler whose environments run on machines of
// sbxVMM (vm, or a wrapper of it), its configuration set by configure.
func newFixtureWith(t *testing.T, vm *fakevmm.VMM, sbxVMM sandbox.VMM, dir string, configure func(*Config)) fixture {
	t.Helper()
	if sbxVMM == nil {
		sbxVMM = vm
	}
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	cfg := Config{
		Sandbox: sandbox.Config{VMM: sbxVMM, Dir: filepath.Join(dir, "envs"), Accel: vmm.AccelTCG},
		Images:  images{img}, Records: st, MaxConcurrency: 8,
	}
	configure(&cfg)
	s := New(cfg)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return fixture{s: s, vm: vm, store: st, cfg: cfg}
}

func fn(name string, keepWarm int) Function {
	return Function{Function: sandbox.Function{Name: name, Version: "$LATEST", MemoryMB: 128, Timeout: 5 * time.Second},
		Revision: "rev-1", CodeDigest: "00", KeepWarm: time.Duration(keepWarm) * time.Second, KeepSuspended: time.Hour}
}

func call(t *testing.T, s *Scheduler, f Function, payload string) (*sandbox.Result, int) {
	t.Helper()
	res, err := invoke(s, f, sandbox.Request{Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Count int }
	_ = json.Unmarshal(res.Payload, &out)
	return res, out.Count
}

// invoke runs one invocation as the invocation path does: acquire, invoke,
// release.
func invoke(s *Scheduler, f Function, req sandbox.Request) (*sandbox.Result, error) {
	l, err := s.Acquire(context.Background(), f)
	if err != nil {
		var ie *sandbox.InitError
		if errors.As(err, &ie) {
			return &sandbox.Result{Error: &ie.Object, StartType: sandbox.StartCold}, nil
		}
		return nil, err
	}
	defer l.Release()
	return l.Invoke(context.Background(), req)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWarmThenSuspendedThenResumed(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("counter", 1)
	steps := []struct {
		wantStart sandbox.StartType
		wantCount int
		before    func()
	}{
		{sandbox.StartCold, 1, nil},
		{sandbox.StartWarm, 2, nil},
		{sandbox.StartResume, 3, func() {
			waitFor(t, "the idle env to be suspended", func() bool { return fx.s.Stats().Suspended == 1 })
		}},
		{sandbox.StartWarm, 4, nil},
	}
	for i, st := range steps {
		if st.before != nil {
			st.before()
		}
		res, n := call(t, fx.s, f, `{}`)
		if res.StartType != st.wantStart || n != st.wantCount {
			t.Errorf("call %d: %s count %d, want %s %d", i+1, res.StartType, n, st.wantStart, st.wantCount)
		}
	}
	if b, r := fx.vm.Boots.Load(), fx.vm.Restores.Load(); b != 1 || r != 1 {
		t.Errorf("boots %d restores %d, want 1 and 1", b, r)
	}
}

func TestLimits(t *testing.T) {
	zero, one := 0, 1
	tests := []struct {
		name       string
		limit      *int
		maxGlobal  int
		busyFirst  bool
		wantReason string
	}{
		{"reserved concurrency 0 throttles every call", &zero, 8, false, "ReservedFunctionConcurrentInvocationLimitExceeded"},
		{"reserved concurrency reached", &one, 8, true, "ReservedFunctionConcurrentInvocationLimitExceeded"},
		{"host limit reached", nil, 1, true, "ConcurrentInvocationLimitExceeded"},
		{"under the limits", &one, 8, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil, t.TempDir(), tt.maxGlobal)
			f := fn("f", 60)
			f.Reserved = tt.limit
			done := make(chan error, 1)
			if tt.busyFirst {
				go func() {
					_, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{"sleepMs":300}`)})
					done <- err
				}()
				waitFor(t, "the first call to be in flight", func() bool { return fx.s.Stats().Busy == 1 })
			}
			_, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{}`)})
			var th *lambdaerr.Throttled
			switch {
			case tt.wantReason == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantReason != "" && (!errors.As(err, &th) || th.Reason != tt.wantReason || th.Err.Status != 429):
				t.Fatalf("got %v, want 429 %s", err, tt.wantReason)
			}
			if tt.busyFirst {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestRetireEndsEnvironments(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("f", 60)
	call(t, fx.s, f, `{}`)
	call(t, fx.s, f, `{}`)
	fx.s.Retire(context.Background(), "f")
	if st := fx.s.Stats(); st.Warm != 0 || st.Suspended != 0 {
		t.Fatalf("after retire: %+v", st)
	}
	envs, _ := fx.store.Envs(context.Background())
	if len(envs) != 0 {
		t.Errorf("records left: %+v", envs)
	}
	if res, n := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartCold || n != 1 {
		t.Errorf("after retire: %s %d, want a fresh cold env", res.StartType, n)
	}
}

func TestNewRevisionGetsNewEnvironments(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("f", 60)
	call(t, fx.s, f, `{}`)
	f.Revision = "rev-2"
	if res, n := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartCold || n != 1 {
		t.Errorf("new revision: %s %d, want cold 1", res.StartType, n)
	}
}

func TestInitErrorIsAFunctionError(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("f", 60)
	f.Env = map[string]string{"FAIL_INIT": "yes"}
	res, err := invoke(fx.s, f, sandbox.Request{})
	if err != nil || res.Error == nil || res.Error.ErrorType != "Fake.InitError" {
		t.Fatalf("got %+v %v", res, err)
	}
	if st := fx.s.Stats(); st.Busy != 0 || st.Warm != 0 {
		t.Errorf("a failed init left %+v", st)
	}
}

// A shutdown suspends warm environments; a new scheduler adopts them from
// the records and resumes them.
func TestShutdownThenAdopt(t *testing.T) {
	dir := t.TempDir()
	vm := fakevmm.New()
	fx := newFixture(t, vm, dir, 8)
	f := fn("f", 60)
	call(t, fx.s, f, `{}`)
	fx.s.Shutdown(context.Background())
	recs, err := fx.store.Envs(context.Background())
	if err != nil || len(recs) != 1 || recs[0].State != string(sandbox.StateSuspended) {
		t.Fatalf("records after shutdown: %+v %v", recs, err)
	}
	next := New(fx.cfg)
	defer next.Shutdown(context.Background())
	if err := next.Adopt(context.Background(), f, recs[0]); err != nil {
		t.Fatal(err)
	}
	if res, n := call(t, next, f, `{}`); res.StartType != sandbox.StartResume || n != 2 {
		t.Errorf("after adoption: %s %d, want resume 2", res.StartType, n)
	}
}

// With snap-start on, the first cold boot leaves a template behind, and an
// environment beyond the warm ones is cloned from it, not booted.
func TestCloneFromTemplate(t *testing.T) {
	dir := t.TempDir()
	fx := newFixture(t, nil, dir, 8)
	fx.s.cfg.TemplatesDir = filepath.Join(dir, "templates")
	f := fn("f", 60)
	f.SnapStart = true
	if res, _ := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartCold {
		t.Fatalf("first: %s", res.StartType)
	}
	waitFor(t, "the template", func() bool {
		fx.s.mu.Lock()
		defer fx.s.mu.Unlock()
		return fx.s.pools[poolKey(f)].template != ""
	})
	// Two calls at once: one takes the warm env, the other needs a new one.
	results := make(chan *sandbox.Result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			res, _ := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{"sleepMs":100}`)})
			results <- res
		}()
	}
	starts := map[sandbox.StartType]int{}
	for i := 0; i < 2; i++ {
		starts[(<-results).StartType]++
	}
	if starts[sandbox.StartWarm] != 1 || starts[sandbox.StartClone] != 1 {
		t.Errorf("start types %v, want one warm and one clone", starts)
	}
	fx.s.Retire(context.Background(), "f")
	if left, _ := os.ReadDir(fx.s.cfg.TemplatesDir); len(left) != 0 {
		t.Errorf("retire left templates: %v", left)
	}
}

// An environment busy when its function is retired (new code, say) ends
// when its invocation does: its pool is not brought back, and the next
// invocation of the new revision gets a new environment.
func TestRetireWhileBusy(t *testing.T) {
	fx := newFixture(t, nil, t.TempDir(), 8)
	f := fn("f", 60)
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{"sleepMs":300}`)})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, "the call to be in flight", func() bool { return fx.s.Stats().Busy == 1 })
	fx.s.Retire(context.Background(), "f")
	old := <-done
	if old == nil {
		t.Fatal("no result")
	}
	waitFor(t, "the old environment to end", func() bool {
		envs, _ := fx.store.Envs(context.Background())
		return len(envs) == 0
	})
	fx.s.mu.Lock()
	pools := len(fx.s.pools)
	fx.s.mu.Unlock()
	if st := fx.s.Stats(); st.Warm != 0 || pools != 0 {
		t.Fatalf("after the retired env's release: %+v, %d pools (want none)", st, pools)
	}
	f.Revision = "rev-2"
	res, n := call(t, fx.s, f, `{}`)
	if res.StartType != sandbox.StartCold || n != 1 || res.EnvID == old.EnvID {
		t.Errorf("new revision: %s count %d env %s (old %s), want a cold new env", res.StartType, n, res.EnvID, old.EnvID)
	}
}

// Environments a hostile guest broke are never handed out again: one whose
// link broke while it was idle is skipped (and ended), and one whose
// resume failed is not put back.
func TestBrokenEnvironmentsAreNotReused(t *testing.T) {
	t.Run("link broken while idle", func(t *testing.T) {
		fx := newFixture(t, nil, t.TempDir(), 8)
		f := fn("f", 60)
		res, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{"hostile":"answer-then-oversized"}`)})
		if err != nil || res.Error != nil {
			t.Fatalf("first call: %+v %v", res, err)
		}
		// Ended: its machine stopped and the sandbox has marked it dead
		// (the second follows the first by a moment).
		waitFor(t, "the broken env to be ended", func() bool {
			fx.s.mu.Lock()
			defer fx.s.mu.Unlock()
			for _, p := range fx.s.pools {
				for _, e := range p.idle {
					if e.env.State() != sandbox.StateDead {
						return false
					}
				}
			}
			return fx.vm.Running() == 0
		})
		res, n := call(t, fx.s, f, `{}`)
		if res.StartType != sandbox.StartCold || n != 1 {
			t.Errorf("after the break: %s count %d, want a cold new env", res.StartType, n)
		}
	})
	t.Run("stopped after it was taken", func(t *testing.T) {
		// A guest may break its link in the moment between its env being
		// taken and the event sent: nothing ran, so the call moves on.
		fx := newFixture(t, nil, t.TempDir(), 8)
		f := fn("f", 60)
		call(t, fx.s, f, `{}`)
		l, err := fx.s.Acquire(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.env.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		res, err := l.Invoke(context.Background(), sandbox.Request{Payload: []byte(`{}`)})
		l.Release()
		if err != nil || res.Error != nil || res.StartType != sandbox.StartCold {
			t.Fatalf("call on a stopped env: %+v %v, want it served cold by another", res, err)
		}
		if u, st := fx.s.Usage(), fx.s.Stats(); u.Retaken != 1 || u.Environments != 1 || st.Warm != 1 || st.Busy != 0 {
			t.Errorf("after: %+v %+v, want one retake and the new env warm", u, st)
		}
	})
	t.Run("resume fails", func(t *testing.T) {
		fx := newFixture(t, nil, t.TempDir(), 8)
		fx.s.cfg.Sandbox.BootTimeout = 300 * time.Millisecond // bounds the wait on the silent resume
		f := fn("f", 0)
		f.Env = map[string]string{"FAKE_RESUME": "silent"}
		call(t, fx.s, f, `{}`)
		waitFor(t, "the idle env to be suspended", func() bool { return fx.s.Stats().Suspended == 1 })
		if _, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{}`)}); err == nil {
			t.Fatal("a resume the guest never answers succeeded")
		}
		if st := fx.s.Stats(); st.Warm != 0 || st.Suspended != 0 || fx.vm.Running() != 0 {
			t.Errorf("after the failed resume: %+v, %d machines running; want the env ended", st, fx.vm.Running())
		}
	})
}

// countingRecords counts the writes of environment records.
type countingRecords struct {
	*store.Store
	puts atomic.Int64
}

func (c *countingRecords) PutEnv(ctx context.Context, e store.EnvRecord) error {
	c.puts.Add(1)
	return c.Store.PutEnv(ctx, e)
}

// A warm call changes nothing in its environment's record and writes
// nothing; a suspend and a resume, which change it, are written.
func TestWarmCallsWriteNoRecord(t *testing.T) {
	dir := t.TempDir()
	var rec *countingRecords
	fx := newFixtureWith(t, fakevmm.New(), nil, dir, func(c *Config) {
		rec = &countingRecords{Store: c.Records.(*store.Store)}
		c.Records = rec
	})
	f := fn("counter", 1)
	call(t, fx.s, f, `{}`) // cold
	afterCold := rec.puts.Load()
	if afterCold == 0 {
		t.Fatal("a cold start wrote no record")
	}
	for range 5 {
		if res, _ := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartWarm {
			t.Fatalf("start %s, want warm", res.StartType)
		}
	}
	if n := rec.puts.Load() - afterCold; n != 0 {
		t.Errorf("5 warm calls wrote %d records, want 0", n)
	}
	waitFor(t, "the idle env to be suspended", func() bool { return fx.s.Stats().Suspended == 1 })
	envs, err := fx.store.Envs(context.Background())
	if err != nil || len(envs) != 1 || envs[0].State != string(sandbox.StateSuspended) {
		t.Fatalf("after the suspend the store holds %+v, %v; want one suspended env", envs, err)
	}
	beforeResume := rec.puts.Load()
	if res, _ := call(t, fx.s, f, `{}`); res.StartType != sandbox.StartResume {
		t.Fatalf("start %s, want resume", res.StartType)
	}
	if rec.puts.Load() == beforeResume {
		t.Error("a resume wrote no record")
	}
	envs, _ = fx.store.Envs(context.Background())
	if len(envs) != 1 || envs[0].State == string(sandbox.StateSuspended) {
		t.Errorf("after the resume the store holds %+v; want it not suspended", envs)
	}
}
