package async

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/invoke"
)

// A broker on dir, and a queue on it with short delays.
func openQueue(t *testing.T, ctx context.Context, dir string, ackWait time.Duration) (*broker.Broker, *Queue) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.New(ctx, broker.Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(ctx, Config{JetStream: b.JetStream(), Workers: 4, RetryDelays: []time.Duration{time.Second},
		BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, AckWait: ackWait, Region: "us-east-1", Log: log})
	if err != nil {
		b.Shutdown(ctx)
		t.Fatal(err)
	}
	return b, q
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An event enqueued (and acknowledged to its caller) is run after the
// broker restarts, once; the stream is empty after it.
func TestEnqueuedEventSurvivesARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	b, q := openQueue(t, ctx, dir, time.Second)
	if err := q.Enqueue(ctx, invoke.QueuedEvent{RequestID: "req-1", Function: "f", Payload: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(ctx)

	b, q = openQueue(t, ctx, dir, time.Second)
	defer b.Shutdown(ctx)
	if n, err := q.Depth(ctx); err != nil || n != 1 {
		t.Fatalf("depth after the restart %d %v, want 1", n, err)
	}
	inv := &fakeInvoker{answer: ok(`1`)}
	qs := &fakeQueues{}
	q.Start(ctx, Deps{Invoker: inv, Functions: fakeFunctions{cfg: destinations(destQ, "", nil, nil)}, Queues: qs})
	defer q.Stop(ctx)
	waitFor(t, "the OnSuccess record", func() bool { return len(qs.to("dest")) == 1 })
	waitFor(t, "an empty stream", func() bool { n, _ := q.Depth(ctx); return n == 0 })
	if calls := inv.attempts(); len(calls) != 1 || calls[0].RequestID != "req-1" || string(calls[0].Payload) != `{"n":1}` {
		t.Fatalf("attempts %+v, want the event once", calls)
	}
}

// blockingInvoker signals its first attempt and holds it until released.
type blockingInvoker struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingInvoker) Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error) {
	b.once.Do(func() { close(b.started) })
	<-b.release
	return &invoke.Result{Version: "$LATEST"}, nil
}

// An event whose attempt was running when the daemon died, and one
// waiting for its retry, both run after the restart.
func TestEventsInFlightAndInRetryRunAfterACrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	b, q := openQueue(t, ctx, dir, time.Second)
	// One event fails once (then waits 1 s for its retry); the other's
	// attempt hangs.
	failer := &fakeInvoker{answer: failing}
	blocker := &blockingInvoker{started: make(chan struct{}), release: make(chan struct{})}
	defer close(blocker.release)
	route := invokerFunc(func(ctx context.Context, req invoke.Request) (*invoke.Result, error) {
		if req.Function == "hang" {
			return blocker.Invoke(ctx, req)
		}
		return failer.Invoke(ctx, req)
	})
	funcs := fakeFunctions{cfg: destinations("", destQ, intp(1), nil)}
	q.Start(ctx, Deps{Invoker: route, Functions: funcs, Queues: &fakeQueues{}})
	for _, fn := range []string{"hang", "fail"} {
		if err := q.Enqueue(ctx, invoke.QueuedEvent{RequestID: "req-" + fn, Function: fn}); err != nil {
			t.Fatal(err)
		}
	}
	<-blocker.started
	waitFor(t, "the first failure", func() bool { return len(failer.attempts()) == 1 })
	// The retry is stored before the first message is acknowledged: wait
	// until only the two events are left.
	waitFor(t, "the retry stored", func() bool { n, _ := q.Depth(ctx); return n == 2 })
	// The daemon dies: the broker stops under the running attempt.
	b.Shutdown(ctx)
	stop, cancelStop := context.WithTimeout(ctx, 100*time.Millisecond)
	q.Stop(stop) // its hung attempt stays hung: the old daemon is dead
	cancelStop()

	b, q = openQueue(t, ctx, dir, time.Second)
	defer b.Shutdown(ctx)
	inv := &fakeInvoker{answer: func(n int) (*invoke.Result, error) { return failing(n) }}
	qs := &fakeQueues{}
	q.Start(ctx, Deps{Invoker: inv, Functions: funcs, Queues: qs})
	defer q.Stop(ctx)
	waitFor(t, "both events' OnFailure records", func() bool { return len(qs.to("dest")) == 2 })
	byFn := map[string]int{}
	for _, c := range inv.attempts() {
		byFn[c.Function]++
	}
	// "fail" had one attempt before the crash and one after (1 retry);
	// "hang" never finished before, so it runs its first and second here.
	if byFn["fail"] != 1 || byFn["hang"] != 2 {
		t.Fatalf("attempts after the restart %v, want fail 1, hang 2", byFn)
	}
	waitFor(t, "an empty stream", func() bool { n, _ := q.Depth(ctx); return n == 0 })
}

type invokerFunc func(ctx context.Context, req invoke.Request) (*invoke.Result, error)

func (f invokerFunc) Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error) {
	return f(ctx, req)
}
