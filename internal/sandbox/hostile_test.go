package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// Tests against a hostile agent (fakevmm's modes) over the real framing:
// whatever the guest does, the host's calls return in bounded time, leave
// no VMM running without an owner, and buffer and report only what
// Lambda's limits allow.

// syncBuffer is a log sink safe for the agent reader's goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type hostile struct {
	v    *fakevmm.VMM
	cfg  sandbox.Config
	img  sandbox.Image
	logs *syncBuffer
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &hostile{v: fakevmm.New(), logs: &syncBuffer{}}
	h.img = sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	h.cfg = sandbox.Config{VMM: h.v, Dir: filepath.Join(dir, "envs"), Logs: h.logs,
		BootTimeout: 300 * time.Millisecond, InitTimeout: 300 * time.Millisecond, StreamStall: 100 * time.Millisecond}
	t.Cleanup(func() {
		// Nothing a test left may run on: a machine still running here is
		// one no environment owns.
		eventually(t, "every fake machine stopped", func() bool { return h.v.Running() == 0 })
		if n := h.v.Overlaps.Load(); n != 0 {
			t.Errorf("%d machines were started on a memory file a running machine used", n)
		}
	})
	return h
}

func fn(env map[string]string) sandbox.Function {
	return sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 2 * time.Second, Env: env}
}

// boot boots fn; the environment is closed when the test ends.
func (h *hostile) boot(t *testing.T, f sandbox.Function) (*sandbox.Env, error) {
	t.Helper()
	var env *sandbox.Env
	var err error
	within(t, 5*time.Second, "Boot", func() { env, err = sandbox.Boot(context.Background(), h.cfg, f, h.img) })
	if env != nil {
		t.Cleanup(func() { _ = env.Close(context.Background()) })
	}
	return env, err
}

func (h *hostile) mustBoot(t *testing.T, f sandbox.Function) *sandbox.Env {
	t.Helper()
	env, err := h.boot(t, f)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	return env
}

// invoke runs one invocation, which must return within d.
func invokeWithin(t *testing.T, d time.Duration, env *sandbox.Env, req sandbox.Request) (*sandbox.Result, error) {
	t.Helper()
	var res *sandbox.Result
	var err error
	within(t, d, "Invoke", func() { res, err = env.Invoke(context.Background(), req) })
	return res, err
}

func event(s string) sandbox.Request { return sandbox.Request{Payload: []byte(s)} }

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still blocked after %s", what, d)
	}
}

// eventually polls cond for up to 3 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("not so after 3s: %s", what)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func errorType(res *sandbox.Result) string {
	if res == nil || res.Error == nil {
		return ""
	}
	return res.Error.ErrorType
}

// Item 1: whatever breaks the agent's link, at a boot, a resume or a
// clone, or right after one, ends the VMM that was started; later
// invocations never start a second VMM on the same memory file.
func TestBrokenLinkEndsTheVMM(t *testing.T) {
	suspended := func(t *testing.T, h *hostile, env map[string]string) *sandbox.Env {
		t.Helper()
		e := h.mustBoot(t, fn(env))
		if _, err := e.Suspend(context.Background()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	// resumeFails resumes, through Invoke as the scheduler does: it fails
	// and leaves no VMM. The snapshot is spent once its guest ran, so a
	// second invocation never resumes it again: it cold-starts.
	resumeFails := func(t *testing.T, h *hostile, e *sandbox.Env) {
		t.Helper()
		res, err := invokeWithin(t, 3*time.Second, e, event(`{}`))
		if err == nil {
			t.Fatalf("invoke resumed a hostile guest: %s", res.Payload)
		}
		if s := e.State(); s != sandbox.StateSuspended {
			t.Fatalf("state %s after a failed resume, want suspended", s)
		}
		eventually(t, "no VMM after a failed resume", func() bool { return h.v.Running() == 0 && e.PID() == 0 })
		res, err = invokeWithin(t, 3*time.Second, e, event(`{}`))
		if err == nil && (res.StartType != sandbox.StartCold || res.Fallback == "") {
			t.Fatalf("second invoke after a failed resume: %s start, fallback %q; want a cold start", res.StartType, res.Fallback)
		}
		_ = e.Close(context.Background())
	}
	// ended checks that the VMM whose link broke is gone, and that the
	// environment is dead, or (when the link broke as the resume ended)
	// still suspended, and serves nothing.
	ended := func(t *testing.T, h *hostile, e *sandbox.Env) {
		t.Helper()
		eventually(t, "the VMM whose link broke ended", func() bool { return h.v.Running() == 0 })
		eventually(t, "the environment is dead or suspended", func() bool {
			s := e.State()
			return s == sandbox.StateDead || s == sandbox.StateSuspended
		})
		if res, err := invokeWithin(t, 3*time.Second, e, event(`{}`)); err == nil {
			t.Fatalf("invoke after the link broke: %s", brief(res))
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h *hostile)
	}{
		{"boot: oversized frame instead of the hello", func(t *testing.T, h *hostile) {
			h.v.BootMode = fakevmm.Oversized
			if _, err := h.boot(t, fn(nil)); err == nil {
				t.Fatal("boot succeeded")
			}
		}},
		{"boot: agent never reads its init", func(t *testing.T, h *hostile) {
			h.v.BootMode = fakevmm.StopReading
			if _, err := h.boot(t, fn(nil)); err == nil {
				t.Fatal("boot succeeded")
			}
		}},
		{"init: oversized frame instead of ready", func(t *testing.T, h *hostile) {
			if _, err := h.boot(t, fn(map[string]string{"FAKE_INIT": string(fakevmm.Oversized)})); err == nil {
				t.Fatal("boot succeeded")
			}
		}},
		{"init: oversized frame right after ready", func(t *testing.T, h *hostile) {
			e, err := h.boot(t, fn(map[string]string{"FAKE_INIT": string(fakevmm.AnswerThenOversized)}))
			if err == nil {
				ended(t, h, e)
			}
		}},
		{"resume: oversized frame instead of resumed", func(t *testing.T, h *hostile) {
			resumeFails(t, h, suspended(t, h, map[string]string{"FAKE_RESUME": string(fakevmm.Oversized)}))
		}},
		{"resume: agent never answers", func(t *testing.T, h *hostile) {
			resumeFails(t, h, suspended(t, h, map[string]string{"FAKE_RESUME": string(fakevmm.Silent)}))
		}},
		{"resume: agent never reads", func(t *testing.T, h *hostile) {
			resumeFails(t, h, suspended(t, h, map[string]string{"FAKE_RESUME": string(fakevmm.StopReading)}))
		}},
		{"resume: oversized frame right after resumed", func(t *testing.T, h *hostile) {
			e := suspended(t, h, map[string]string{"FAKE_RESUME": string(fakevmm.AnswerThenOversized)})
			within(t, 3*time.Second, "Resume", func() { _ = e.Resume(context.Background()) })
			ended(t, h, e)
		}},
		{"clone: oversized frame instead of resumed", func(t *testing.T, h *hostile) {
			tpl, err := sandbox.NewTemplate(context.Background(), h.cfg, fn(map[string]string{"FAKE_RESUME": string(fakevmm.Oversized)}), h.img)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				within(t, 3*time.Second, "Clone", func() {
					if e, err := sandbox.Clone(context.Background(), h.cfg, tpl.Dir); err == nil {
						_ = e.Close(context.Background())
						t.Error("clone of a hostile template succeeded")
					}
				})
			}
		}},
		{"clone: oversized frame right after resumed", func(t *testing.T, h *hostile) {
			tpl, err := sandbox.NewTemplate(context.Background(), h.cfg, fn(map[string]string{"FAKE_RESUME": string(fakevmm.AnswerThenOversized)}), h.img)
			if err != nil {
				t.Fatal(err)
			}
			var e *sandbox.Env
			within(t, 3*time.Second, "Clone", func() { e, err = sandbox.Clone(context.Background(), h.cfg, tpl.Dir) })
			if err == nil {
				t.Cleanup(func() { _ = e.Close(context.Background()) })
				ended(t, h, e)
			}
		}},
		{"invoke: oversized frame right after the response", func(t *testing.T, h *hostile) {
			e := h.mustBoot(t, fn(nil))
			res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"answer-then-oversized"}`))
			if err != nil || res.Error != nil {
				t.Fatalf("invoke: %v %s", err, brief(res))
			}
			ended(t, h, e)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			tt.run(t, h)
			eventually(t, "no VMM left running", func() bool { return h.v.Running() == 0 })
		})
	}
}

// Item 2: a guest that stops reading holds no invocation past its
// deadline: the invocation ends with Lambda's timeout, the environment and
// its VMM end, and the caller (and its slot) is free.
func TestGuestThatStopsReading(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		h := newHostile(t)
		f := fn(nil)
		f.Timeout = 200 * time.Millisecond
		e := h.mustBoot(t, f)
		if res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"answer-then-stop-reading"}`)); err != nil || res.Error != nil {
			t.Fatalf("first invoke: %v %s", err, brief(res))
		}
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"big":"`+strings.Repeat("x", 1<<20)+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if errorType(res) != "Sandbox.Timedout" || !strings.Contains(res.Error.ErrorMessage, "Task timed out after 0.20 seconds") {
			t.Fatalf("got %+v, want Lambda's timeout", res.Error)
		}
		eventually(t, "the environment is dead", func() bool { return e.State() == sandbox.StateDead })
	})
	t.Run("caller goes away", func(t *testing.T) {
		h := newHostile(t)
		e := h.mustBoot(t, fn(nil))
		if res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"answer-then-stop-reading"}`)); err != nil || res.Error != nil {
			t.Fatalf("first invoke: %v %s", err, brief(res))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		var err error
		within(t, 3*time.Second, "Invoke", func() { _, err = e.Invoke(ctx, event(`{}`)) })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the caller's context error", err)
		}
		eventually(t, "the environment is dead", func() bool { return e.State() == sandbox.StateDead })
	})
	t.Run("truncated response", func(t *testing.T) {
		h := newHostile(t)
		f := fn(nil)
		f.Timeout = 200 * time.Millisecond
		e := h.mustBoot(t, f)
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"truncated"}`))
		if err != nil || errorType(res) != "Sandbox.Timedout" {
			t.Fatalf("got %v %+v, want Lambda's timeout", err, res.Error)
		}
	})
}

// blockedStream is a response stream whose consumer never takes a byte.
type blockedStream struct {
	begun   chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *blockedStream) Begin(string) { s.once.Do(func() { close(s.begun) }) }
func (s *blockedStream) Write(b []byte) (int, error) {
	<-s.release
	return len(b), nil
}

// countingStream counts what it is given.
type countingStream struct {
	mu sync.Mutex
	n  int
}

func (s *countingStream) Begin(string) {}
func (s *countingStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	s.n += len(b)
	s.mu.Unlock()
	return len(b), nil
}

// Item 3: a streamed response whose consumer never reads is abandoned
// after the stream's stall time: the invocation ends, the environment stays
// healthy and serves the next one.
func TestStreamConsumerThatNeverReads(t *testing.T) {
	h := newHostile(t)
	f := fn(nil)
	f.Timeout = 10 * time.Second
	e := h.mustBoot(t, f)
	st := &blockedStream{begun: make(chan struct{}), release: make(chan struct{})}
	defer close(st.release)
	res, err := invokeWithin(t, 3*time.Second, e, sandbox.Request{Stream: st,
		Payload: []byte(`{"hostile":"stream","bytes":8388608,"chunk":32768}`)})
	if err != nil || res.Error != nil {
		t.Fatalf("invoke: %v %s", err, brief(res))
	}
	if s := e.State(); s != sandbox.StateReady {
		t.Fatalf("state %s after an abandoned stream, want ready", s)
	}
	res, err = invokeWithin(t, 3*time.Second, e, event(`{}`))
	if err != nil || res.Error != nil || !strings.Contains(string(res.Payload), `"count":2`) {
		t.Fatalf("next invoke: %v %s", err, brief(res))
	}
}

// Item 6: Lambda's limits hold on the host, whatever the agent says.
func TestLambdaLimitsOnTheHost(t *testing.T) {
	t.Run("buffered response over 6 MB", func(t *testing.T) {
		h := newHostile(t)
		e := h.mustBoot(t, fn(nil))
		res, err := invokeWithin(t, 3*time.Second, e, event(fmt.Sprintf(`{"hostile":"big-response","bytes":%d}`, guestproto.MaxResponseBytes+1)))
		if err != nil || errorType(res) != "Function.ResponseSizeTooLarge" ||
			res.Error.ErrorMessage != "Response payload size exceeded maximum allowed payload size (6291556 bytes)." {
			t.Fatalf("got %v %+v (payload %d bytes), want Function.ResponseSizeTooLarge", err, res.Error, len(res.Payload))
		}
		if len(res.Payload) > 1024 {
			t.Fatalf("payload of %d bytes passed on", len(res.Payload))
		}
	})
	t.Run("buffered response at 6 MB", func(t *testing.T) {
		h := newHostile(t)
		e := h.mustBoot(t, fn(nil))
		res, err := invokeWithin(t, 3*time.Second, e, event(fmt.Sprintf(`{"hostile":"big-response","bytes":%d}`, guestproto.MaxResponseBytes)))
		if err != nil || res.Error != nil || len(res.Payload) != guestproto.MaxResponseBytes {
			t.Fatalf("got %v %+v, want the whole payload", err, res.Error)
		}
	})
	t.Run("streamed response over 200 MB", func(t *testing.T) {
		h := newHostile(t)
		f := fn(nil)
		f.Timeout = 20 * time.Second
		e := h.mustBoot(t, f)
		st := &countingStream{}
		res, err := invokeWithin(t, 20*time.Second, e, sandbox.Request{Stream: st,
			Payload: []byte(fmt.Sprintf(`{"hostile":"stream","bytes":%d,"chunk":1048576}`, guestproto.MaxStreamBytes+(2<<20)))})
		if err != nil || errorType(res) != "Function.ResponseSizeTooLarge" {
			t.Fatalf("got %v %+v (payload %d bytes), want Function.ResponseSizeTooLarge", err, res.Error, len(res.Payload))
		}
		if st.n > guestproto.MaxStreamBytes {
			t.Fatalf("%d bytes streamed, over the %d limit", st.n, guestproto.MaxStreamBytes)
		}
		if s := e.State(); s != sandbox.StateReady {
			t.Fatalf("state %s, want ready", s)
		}
	})
	t.Run("output over the log limit", func(t *testing.T) {
		h := newHostile(t)
		f := fn(nil)
		f.LogLimit = 64 << 10
		e := h.mustBoot(t, f)
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"flood-logs","bytes":1048576}`))
		if err != nil || res.Error != nil {
			t.Fatalf("invoke: %v %s", err, brief(res))
		}
		if n := h.logs.Len(); n > 64<<10+256 {
			t.Fatalf("host passed on %d bytes of output, over the 64 KiB limit", n)
		}
		if !strings.Contains(h.logs.String(), "[hearth] output over 65536 bytes") {
			t.Fatalf("no notice of dropped output: %q", h.logs.String()[max(0, h.logs.Len()-200):])
		}
		if res.LogDropped < 1<<20-64<<10 {
			t.Fatalf("LogDropped %d, want the %d bytes over the limit", res.LogDropped, 1<<20-64<<10)
		}
		// The next invocation is a new phase.
		before := h.logs.Len()
		if _, err := invokeWithin(t, 3*time.Second, e, event(`{"print":"next phase"}`)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(h.logs.String()[before:], "next phase") {
			t.Fatal("output of the next invocation dropped")
		}
	})
	t.Run("absurd figures in a result", func(t *testing.T) {
		h := newHostile(t)
		e := h.mustBoot(t, fn(nil))
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"lie"}`))
		if err != nil || res.Error != nil {
			t.Fatalf("invoke: %v %s", err, brief(res))
		}
		if res.MaxRSSKiB < 0 || res.MaxRSSKiB > 128<<10 || res.LogDropped < 0 {
			t.Fatalf("MaxRSSKiB %d, LogDropped %d: want within [0, 128 MiB] and >= 0", res.MaxRSSKiB, res.LogDropped)
		}
		if r := res.Report(e.Function()); !strings.Contains(r, "\tMax Memory Used: 128 MB\t") {
			t.Fatalf("report %q", r)
		}
	})
	t.Run("absurd boot times in the hello", func(t *testing.T) {
		h := newHostile(t)
		h.v.BootMode = fakevmm.Lie
		e := h.mustBoot(t, fn(nil))
		tm := e.Timings()
		if tm.GuestKernel < 0 || tm.GuestAgent < 0 || tm.GuestKernel+tm.GuestAgent > tm.KernelBoot {
			t.Fatalf("guest-reported times %v + %v, beyond the %v measured", tm.GuestKernel, tm.GuestAgent, tm.KernelBoot)
		}
	})
}

// Item 7: what the guest sends that nobody asked for is dropped, and a
// control frame cannot announce a large body.
func TestHostBuffersLittle(t *testing.T) {
	t.Run("stale results first", func(t *testing.T) {
		h := newHostile(t)
		e := h.mustBoot(t, fn(nil))
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"stale","count":8,"bytes":1048576}`))
		if err != nil || res.Error != nil || !strings.Contains(string(res.Payload), `"count":1`) {
			t.Fatalf("got %v %+v %.100s, want the invocation's own answer", err, res.Error, res.Payload)
		}
	})
	t.Run("control frame announcing 6 MB", func(t *testing.T) {
		h := newHostile(t)
		f := fn(nil)
		f.Timeout = 10 * time.Second
		e := h.mustBoot(t, f)
		start := time.Now()
		res, err := invokeWithin(t, 3*time.Second, e, event(`{"hostile":"big-control"}`))
		if err != nil || res.Error == nil || errorType(res) == "Sandbox.Timedout" {
			t.Fatalf("got %v %+v, want the invocation failed at once", err, res.Error)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s: the host waited for the announced frame", d)
		}
		eventually(t, "the environment is dead", func() bool { return e.State() == sandbox.StateDead })
	})
}

// brief describes a result for a failure message.
func brief(res *sandbox.Result) string {
	if res == nil {
		return "no result"
	}
	return fmt.Sprintf("error %+v, payload %.100q (%d bytes)", res.Error, res.Payload, len(res.Payload))
}
