package esm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/store"
)

type harness struct {
	st  *store.Store
	q   *fakeQueue
	fn  *fakeFunction
	obs *countingObserver
	m   *Manager
}

func newHarness(t *testing.T, q *fakeQueue, fn *fakeFunction, cfg Config) *harness {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{st: st, q: q, fn: fn, obs: &countingObserver{}}
	cfg.Mappings, cfg.Queues, cfg.Invoker, cfg.Observer, cfg.Region = st, q, fn, h.obs, "local"
	if cfg.ScaleEvery == 0 {
		cfg.ScaleEvery = 10 * time.Millisecond
	}
	if cfg.IdleWait == 0 {
		cfg.IdleWait = 50 * time.Millisecond
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	h.m = New(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		st.Close()
	})
	return h
}

func (h *harness) create(t *testing.T, m store.EventSourceMapping) store.EventSourceMapping {
	t.Helper()
	ctx := context.Background()
	if m.UUID == "" {
		m.UUID = "esm-1"
	}
	m.Function, m.EventSourceArn, m.State, m.LastModified = "fn", testARN, StateCreating, time.Now()
	if m.BatchSize == 0 {
		m.BatchSize = 10
	}
	if err := h.st.CreateEventSourceMapping(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Changed(ctx, m.UUID); err != nil {
		t.Fatal(err)
	}
	got, err := h.st.GetEventSourceMapping(ctx, m.UUID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every message is processed once its batch succeeds; the messages the
// function reports failed come back (after the visibility timeout) and are
// processed then; none is lost; a message the filter rejects is deleted
// without an invocation.
func TestPartialBatchFailuresAndFilter(t *testing.T) {
	q := newFakeQueue(150 * time.Millisecond)
	fn := newFakeFunction(failOnce)
	h := newHarness(t, q, fn, Config{})
	var bodies []string
	for i := range 200 {
		switch {
		case i%7 == 0:
			bodies = append(bodies, fmt.Sprintf(`fail {"n":%d}`, i))
		case i == 13:
			bodies = append(bodies, `{"skip":true}`)
		default:
			bodies = append(bodies, fmt.Sprintf(`{"n":%d}`, i))
		}
	}
	q.send(bodies...)
	rec := h.create(t, store.EventSourceMapping{BatchSize: 10, ReportBatchItemFailures: true, Enabled: true, MaximumConcurrency: 3,
		Filters: []string{`{"body":{"n":[{"exists":true}]}}`, `{"body":[{"prefix":"fail"}]}`}})
	if rec.State != StateEnabled {
		t.Errorf("state %s after Changed, want Enabled", rec.State)
	}
	waitFor(t, "the queue to empty", 20*time.Second, func() bool { return q.left() == 0 })
	fn.mu.Lock()
	defer fn.mu.Unlock()
	for _, b := range bodies {
		switch {
		case b == `{"skip":true}`:
			if fn.seen[b] != 0 || q.processed(b) != 1 {
				t.Errorf("the filtered message was given to the function %d times, deleted %d times; want 0 and 1", fn.seen[b], q.processed(b))
			}
		case q.processed(b) != 1:
			t.Errorf("%s processed %d times, want 1", b, q.processed(b))
		}
		if b[:4] == "fail" && fn.seen[b] != 2 {
			t.Errorf("%s given %d times, want 2 (failed, then processed)", b, fn.seen[b])
		}
	}
	for _, batch := range fn.batches {
		if len(batch) > 10 {
			t.Errorf("a batch of %d records, BatchSize is 10", len(batch))
		}
		for _, r := range batch {
			if r.EventSource != "aws:sqs" || r.EventSourceARN != testARN || r.AWSRegion != "local" || r.ReceiptHandle == "" {
				t.Fatalf("record %+v", r)
			}
		}
	}
	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	if h.obs.filtered != 1 || h.obs.failed != 29 || h.obs.messages != 199+29 {
		t.Errorf("observed %d messages, %d failed, %d filtered; want 228, 29, 1", h.obs.messages, h.obs.failed, h.obs.filtered)
	}
}

// A function error returns the whole batch; so does an invalid
// batchItemFailures answer; with neither, the batch is deleted.
func TestWholeBatchFailures(t *testing.T) {
	tests := []struct {
		name   string
		report bool
		answer func(events.SQSEvent) ([]byte, bool, error)
	}{
		{"a function error", false, func(events.SQSEvent) ([]byte, bool, error) { return []byte(`{"errorMessage":"no"}`), true, nil }},
		{"an unknown itemIdentifier", true, func(events.SQSEvent) ([]byte, bool, error) {
			return []byte(`{"batchItemFailures":[{"itemIdentifier":"nope"}]}`), false, nil
		}},
		{"the platform's error", false, func(events.SQSEvent) ([]byte, bool, error) { return nil, false, errors.New("host broke") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue(100 * time.Millisecond)
			calls := 0
			fn := newFakeFunction(func(ev events.SQSEvent) ([]byte, bool, error) {
				calls++
				if calls == 1 {
					return tt.answer(ev)
				}
				return []byte(`null`), false, nil
			})
			h := newHarness(t, q, fn, Config{})
			q.send("a", "b", "c")
			h.create(t, store.EventSourceMapping{BatchSize: 10, ReportBatchItemFailures: tt.report, Enabled: true})
			waitFor(t, "the queue to empty", 10*time.Second, func() bool { return q.left() == 0 })
			fn.mu.Lock()
			defer fn.mu.Unlock()
			for _, b := range []string{"a", "b", "c"} {
				if fn.seen[b] != 2 || q.processed(b) != 1 {
					t.Errorf("%s seen %d, processed %d; want 2 and 1 (the first batch failed whole)", b, fn.seen[b], q.processed(b))
				}
			}
		})
	}
}

// A throttled batch is retried (its messages stay hidden) and the pollers
// back off.
func TestThrottledBatchRetried(t *testing.T) {
	q := newFakeQueue(time.Minute) // a message that came back would take a minute
	calls := 0
	fn := newFakeFunction(func(ev events.SQSEvent) ([]byte, bool, error) {
		calls++
		if calls <= 2 {
			return nil, false, throttled()
		}
		return nil, false, nil
	})
	h := newHarness(t, q, fn, Config{})
	q.send("x")
	h.create(t, store.EventSourceMapping{BatchSize: 10, Enabled: true})
	waitFor(t, "the queue to empty", 5*time.Second, func() bool { return q.left() == 0 })
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.seen["x"] != 3 || q.processed("x") != 1 {
		t.Errorf("x given %d times, processed %d; want 3 (two throttled) and 1", fn.seen["x"], q.processed("x"))
	}
}

// With a batching window the poller keeps receiving until the batch is
// full or the window has passed since the first message (a fake clock
// that an empty long poll advances).
func TestGatherBatchingWindow(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		window    int
		queued    int
		wantBatch int
		wantCalls int
	}{
		{"no window: what one receive gets", 10, 0, 25, 10, 1},
		{"no window, fewer than a batch", 10, 0, 4, 4, 1},
		{"a window fills a large batch", 25, 5, 60, 25, 3},
		{"a window ends a partial batch", 100, 2, 12, 12, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue(time.Minute)
			q.clock = &fakeClock{now: time.Unix(1_700_000_000, 0)}
			for i := range tt.queued {
				q.send(fmt.Sprint(i))
			}
			m := New(Config{Queues: q, IdleWait: time.Second, Now: q.clock.Now})
			r := &runner{m: m, ctx: context.Background(), queue: "jobs",
				rec: store.EventSourceMapping{BatchSize: tt.size, MaximumBatchingWindowInSeconds: tt.window}}
			start := q.clock.Now()
			batch, err := r.gather()
			if err != nil || len(batch) != tt.wantBatch || q.receives != tt.wantCalls {
				t.Fatalf("gather: %d messages in %d receives (%v), want %d in %d", len(batch), q.receives, err, tt.wantBatch, tt.wantCalls)
			}
			if waited := q.clock.Now().Sub(start); tt.name == "a window ends a partial batch" && waited != time.Duration(tt.window)*time.Second {
				t.Errorf("waited %v, want the window", waited)
			}
		})
	}
}

// Pollers grow with the backlog up to MaximumConcurrency, never beyond,
// and fall back to one once the queue is empty.
func TestScalesWithBacklog(t *testing.T) {
	q := newFakeQueue(5 * time.Second)
	fn := newFakeFunction(func(events.SQSEvent) ([]byte, bool, error) { return nil, false, nil })
	fn.delay = 30 * time.Millisecond
	h := newHarness(t, q, fn, Config{DefaultConcurrency: 50})
	for i := range 400 {
		q.send(fmt.Sprint(i))
	}
	h.create(t, store.EventSourceMapping{BatchSize: 5, Enabled: true, MaximumConcurrency: 4})
	peak := 0
	waitFor(t, "the queue to empty", 20*time.Second, func() bool {
		peak = max(peak, h.m.Pollers("esm-1"))
		return q.left() == 0
	})
	_, maxInFlight := fn.stats()
	if maxInFlight != 4 || peak > 4 {
		t.Errorf("%d invocations at once at most, %d pollers at most; want 4 and at most 4", maxInFlight, peak)
	}
	waitFor(t, "one poller on the empty queue", 5*time.Second, func() bool { return h.m.Pollers("esm-1") == 1 })
}

// The function's reserved concurrency caps the pollers under the
// mapping's MaximumConcurrency.
func TestReservedConcurrencyCaps(t *testing.T) {
	q := newFakeQueue(5 * time.Second)
	fn := newFakeFunction(func(events.SQSEvent) ([]byte, bool, error) { return nil, false, nil })
	fn.delay = 20 * time.Millisecond
	two := 2
	h := newHarness(t, q, fn, Config{Functions: fixedConcurrency{&two}})
	for i := range 200 {
		q.send(fmt.Sprint(i))
	}
	h.create(t, store.EventSourceMapping{BatchSize: 5, Enabled: true, MaximumConcurrency: 10})
	waitFor(t, "the queue to empty", 20*time.Second, func() bool { return q.left() == 0 })
	if _, maxInFlight := fn.stats(); maxInFlight != 2 {
		t.Errorf("%d invocations at once at most, want 2 (the reserved concurrency)", maxInFlight)
	}
}

// Disabling stops the pollers, enabling restarts them, deleting removes
// the row; Start brings back the enabled mappings' pollers.
func TestStates(t *testing.T) {
	ctx := context.Background()
	q := newFakeQueue(time.Second)
	fn := newFakeFunction(func(events.SQSEvent) ([]byte, bool, error) { return nil, false, nil })
	h := newHarness(t, q, fn, Config{})
	h.create(t, store.EventSourceMapping{Enabled: true})
	waitFor(t, "a poller", time.Second, func() bool { return h.m.Pollers("esm-1") == 1 })
	set := func(enabled bool, state string) store.EventSourceMapping {
		t.Helper()
		if _, err := h.st.UpdateEventSourceMapping(ctx, "esm-1", func(m *store.EventSourceMapping) error {
			m.Enabled, m.State, m.LastModified = enabled, state, time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Changed(ctx, "esm-1"); err != nil {
			t.Fatal(err)
		}
		got, _ := h.st.GetEventSourceMapping(ctx, "esm-1")
		return got
	}
	if got := set(false, StateDisabling); got.State != StateDisabled || h.m.Pollers("esm-1") != 0 {
		t.Errorf("disabled: state %s, %d pollers", got.State, h.m.Pollers("esm-1"))
	}
	q.send("while disabled")
	time.Sleep(100 * time.Millisecond)
	if inv, _ := fn.stats(); inv != 0 {
		t.Errorf("%d invocations while disabled", inv)
	}
	if got := set(true, StateEnabling); got.State != StateEnabled {
		t.Errorf("enabled: state %s", got.State)
	}
	waitFor(t, "the message after enabling", 5*time.Second, func() bool { return q.left() == 0 })

	// A new manager (the daemon restarted) on the same store.
	m2 := New(Config{Mappings: h.st, Queues: q, Invoker: fn, ScaleEvery: 10 * time.Millisecond, IdleWait: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer m2.Shutdown(ctx)
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted manager's poller", time.Second, func() bool { return m2.Pollers("esm-1") == 1 })
	if err := m2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	set(true, StateDeleting)
	if _, err := h.st.GetEventSourceMapping(ctx, "esm-1"); !errors.Is(err, store.ErrNotFound) || h.m.Pollers("esm-1") != 0 {
		t.Errorf("after deleting: %v, %d pollers", err, h.m.Pollers("esm-1"))
	}
}
