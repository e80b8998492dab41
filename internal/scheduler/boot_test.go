package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// A machine that dies before its agent answers is the platform's failure:
// the boot is tried again on a fresh machine, a bounded number of times.
// The function's own init failure is not retried.
func TestBootRetries(t *testing.T) {
	tests := []struct {
		name      string
		dying     int // boots that die before hello
		failInit  bool
		wantBoots int64
		wantErr   string // "" for success, "init" for the function's error, "platform"
	}{
		{"dies twice, third boot serves", 2, false, 3, ""},
		{"dies every time: bounded", 5, false, 3, "platform"},
		{"the function's init fails: not retried", 0, true, 1, "init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm := fakevmm.New()
			fx := newFixtureWith(t, vm, fakevmm.DieBeforeHello(vm, tt.dying), t.TempDir(), func(c *Config) {
				c.Limits.BootRetries = 2
			})
			f := fn("f", 3600)
			if tt.failInit {
				f.Env = map[string]string{"FAIL_INIT": "yes"}
			}
			l, err := fx.s.Acquire(context.Background(), f)
			var ie *sandbox.InitError
			switch tt.wantErr {
			case "":
				if err != nil {
					t.Fatal(err)
				}
				res, err := l.Invoke(context.Background(), sandbox.Request{Payload: []byte(`{}`)})
				l.Release()
				if err != nil || res.StartType != sandbox.StartCold || res.Error != nil {
					t.Fatalf("invoke: %+v %v", res, err)
				}
			case "init":
				if !errors.As(err, &ie) {
					t.Fatalf("got %v, want the function's init error", err)
				}
			case "platform":
				if err == nil || errors.As(err, &ie) {
					t.Fatalf("got %v, want the platform's failure", err)
				}
			}
			if b := vm.Boots.Load(); b != tt.wantBoots {
				t.Errorf("%d boots, want %d", b, tt.wantBoots)
			}
			if u := fx.s.Usage(); u.BootRetries != tt.wantBoots-1 {
				t.Errorf("%d retries counted, want %d", u.BootRetries, tt.wantBoots-1)
			}
			if tt.wantErr != "" {
				if u := fx.s.Usage(); u.Environments != 0 || u.MemoryMB != 0 || fx.s.Stats().Busy != 0 {
					t.Errorf("a failed boot left %+v, busy %d", u, fx.s.Stats().Busy)
				}
			}
		})
	}
}

// heldVMM holds each boot until the test lets it go, and tells which boot
// started (by its memory size) and how many were in the VMM at once.
type heldVMM struct {
	*fakevmm.VMM
	started  chan int
	proceed  chan struct{}
	inVMM    atomic.Int64
	maxInVMM atomic.Int64
}

func (h *heldVMM) Boot(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	n := h.inVMM.Add(1)
	defer h.inVMM.Add(-1)
	for {
		m := h.maxInVMM.Load()
		if n <= m || h.maxInVMM.CompareAndSwap(m, n) {
			break
		}
	}
	h.started <- spec.MemoryMiB
	select {
	case <-h.proceed:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.VMM.Boot(ctx, spec)
}

// A burst of boots beyond the bound waits, first come first served: no
// more than the bound are ever booting, and every call is served.
func TestBootBurstIsQueuedInOrder(t *testing.T) {
	const limit, n = 2, 7
	vm := fakevmm.New()
	h := &heldVMM{VMM: vm, started: make(chan int, n), proceed: make(chan struct{})}
	fx := newFixtureWith(t, vm, h, t.TempDir(), func(c *Config) {
		c.Limits.MaxBootsInFlight = limit
		c.MaxConcurrency = 64
	})
	t.Cleanup(func() { close(h.proceed) }) // a failed test lets every boot go
	// Call i is a function of 128+i MB: its boot says which call it is.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var order []int
	for i := 0; i < n; i++ {
		f := fn(fmt.Sprintf("f%d", i), 3600)
		f.MemoryMB = 128 + i
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := invoke(fx.s, f, sandbox.Request{Payload: []byte(`{}`)}); err != nil {
				errs <- err
			}
		}()
		if i < limit {
			order = append(order, <-h.started-128)
			continue
		}
		waitFor(t, fmt.Sprintf("call %d to queue", i), func() bool { return fx.s.Usage().BootsWaiting == i-limit+1 })
	}
	if u := fx.s.Usage(); u.BootsInFlight != limit || u.BootsWaiting != n-limit {
		t.Fatalf("%d booting and %d waiting, want %d and %d", u.BootsInFlight, u.BootsWaiting, limit, n-limit)
	}
	for range n - limit {
		h.proceed <- struct{}{}
		select {
		case m := <-h.started:
			order = append(order, m-128)
		case <-time.After(10 * time.Second):
			t.Fatal("the next boot did not start when a slot was freed")
		}
	}
	for range limit {
		h.proceed <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("boots started in order %v, want first come first served", order)
		}
	}
	if m := h.maxInVMM.Load(); m > limit {
		t.Errorf("%d boots at once, want at most %d", m, limit)
	}
	if u := fx.s.Usage(); u.BootsInFlight != 0 || u.BootsWaiting != 0 {
		t.Errorf("after the burst: %d booting, %d waiting", u.BootsInFlight, u.BootsWaiting)
	}
}

// A boot that waits too long for its turn gets a 429 that says why; one
// whose caller gives up while waiting leaves the queue.
func TestBootQueueBounded(t *testing.T) {
	vm := fakevmm.New()
	h := &heldVMM{VMM: vm, started: make(chan int, 3), proceed: make(chan struct{})}
	fx := newFixtureWith(t, vm, h, t.TempDir(), func(c *Config) {
		c.Limits.MaxBootsInFlight = 1
		c.Limits.BootQueueTimeout = 50 * time.Millisecond
	})
	t.Cleanup(func() { close(h.proceed) })
	first := make(chan error, 1)
	go func() {
		_, err := invoke(fx.s, fn("a", 3600), sandbox.Request{})
		first <- err
	}()
	<-h.started
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer bcancel()
	_, err := fx.s.Acquire(bctx, fn("b", 3600))
	wantThrottled(t, err, ReasonBootQueue)

	ctx, cancel := context.WithCancel(context.Background())
	fx.s.cfg.Limits.BootQueueTimeout = 0
	gone := make(chan error, 1)
	go func() {
		_, err := fx.s.Acquire(ctx, fn("c", 3600))
		gone <- err
	}()
	waitFor(t, "the call to queue", func() bool { return fx.s.Usage().BootsWaiting == 1 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("a caller gone while queued: %v, want context.Canceled", err)
	}
	h.proceed <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if u := fx.s.Usage(); u.BootsWaiting != 0 || u.BootsInFlight != 0 || u.Environments != 1 || fx.s.Stats().Busy != 0 {
		t.Errorf("after: %+v, busy %d; want only a's environment", u, fx.s.Stats().Busy)
	}
}

// A call that waits for its boot's turn takes an environment released
// meanwhile, and its boot is given up: a burst is served by the
// environments there are as they free up, not only by new ones.
func TestWaitingCallTakesAReleasedEnvironment(t *testing.T) {
	vm := fakevmm.New()
	// Room for every boot's start: a failed test's boots never block.
	h := &heldVMM{VMM: vm, started: make(chan int, 16), proceed: make(chan struct{})}
	fx := newFixtureWith(t, vm, h, t.TempDir(), func(c *Config) {
		c.Limits.MaxBootsInFlight = 1
		c.MaxConcurrency = 64
	})
	f := fn("f", 3600)
	// A failed test still ends: every boot goes, every lease not given
	// back is, before the fixture shuts the scheduler down.
	var (
		mu       sync.Mutex
		leases   []*Lease
		released = map[*Lease]bool{}
		calls    sync.WaitGroup
	)
	release := func(l *Lease) {
		mu.Lock()
		released[l] = true
		mu.Unlock()
		l.Release()
	}
	t.Cleanup(func() {
		close(h.proceed)
		calls.Wait()
		for _, l := range leases {
			if !released[l] {
				l.Release()
			}
		}
	})
	acquire := func() chan *Lease {
		out := make(chan *Lease, 1)
		calls.Add(1)
		go func() {
			defer calls.Done()
			l, err := fx.s.Acquire(context.Background(), f)
			if err != nil {
				t.Error(err)
			}
			if l != nil {
				mu.Lock()
				leases = append(leases, l)
				mu.Unlock()
			}
			out <- l
		}()
		return out
	}
	// a: the first environment, booted and busy.
	aDone := acquire()
	<-h.started
	h.proceed <- struct{}{}
	a := <-aDone
	// c: no idle environment: its boot takes the one slot (held).
	cDone := acquire()
	<-h.started
	// b: waits for a turn to boot.
	bDone := acquire()
	waitFor(t, "b to wait for its turn", func() bool { return fx.s.Usage().BootsWaiting == 1 })
	release(a)
	var b *Lease
	select {
	case b = <-bDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call was not handed the released environment")
	}
	if b == nil || b.env != a.env {
		t.Fatalf("b got %v, want a's released environment", b)
	}
	if u := fx.s.Usage(); u.Handed != 1 || u.BootsWaiting != 0 || u.Environments != 2 {
		t.Errorf("after the hand-over: %+v; want 1 handed, none waiting, 2 environments (a's, c's booting)", u)
	}
	h.proceed <- struct{}{}
	c := <-cDone
	if c == nil || c.env == a.env {
		t.Fatalf("c got %v, want its own new environment", c)
	}
	release(b)
	release(c)
	if u, busy := fx.s.Usage(), fx.s.Stats().Busy; u.Environments != 2 || u.MemoryMB != 256 || busy != 0 || vm.Boots.Load() != 2 {
		t.Errorf("after: %+v, busy %d, %d boots; want 2 environments of 128 MB, none busy, 2 boots", u, busy, vm.Boots.Load())
	}
}
