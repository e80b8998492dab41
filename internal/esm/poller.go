package esm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// How a poller waits after a failure: from the first to the longest
// pause, doubling.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	// throttleRetryFor is how long a throttled batch is retried before
	// it is left to return to the queue.
	throttleRetryFor = 10 * time.Second
	// deleteTimeout bounds the deletes after an invocation, which run
	// even once the pollers are stopped.
	deleteTimeout = 10 * time.Second
)

// runner runs one mapping's pollers and scales them.
type runner struct {
	m      *Manager
	rec    store.EventSourceMapping
	filter *Filter
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	mu sync.Mutex
	// queue is the queue's name, resolved from the mapping's ARN.
	queue     string
	active    int
	target    int
	throttled bool
	wg        sync.WaitGroup
}

func (r *runner) pollers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// run starts one poller, then counts pollers against the backlog every
// tick until the mapping stops; it returns once its pollers have.
func (r *runner) run() {
	defer r.wg.Wait()
	if !r.resolve() {
		return
	}
	r.mu.Lock()
	r.target = 1
	r.mu.Unlock()
	r.spawn()
	tick := time.NewTicker(r.m.cfg.ScaleEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
			r.scale()
		}
	}
}

// resolve finds the mapping's queue, retrying while it is not there (a
// mapping outlives its queue, as in Lambda; it polls again once a queue
// of that name is back).
func (r *runner) resolve() bool {
	backoff := firstBackoff
	for {
		name, err := r.m.cfg.Queues.NameOf(r.rec.EventSourceArn)
		if err == nil {
			r.mu.Lock()
			r.queue = name
			r.mu.Unlock()
			return true
		}
		if backoff == firstBackoff {
			r.log.Warn("esm: the mapping's queue", "arn", r.rec.EventSourceArn, "err", err)
		}
		if !r.sleep(backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// scale sets the target from the queue's backlog and starts pollers up
// to it; pollers over it end before their next receive.
func (r *runner) scale() {
	stats, err := r.m.cfg.Queues.Stats(r.ctx, r.queueName())
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Debug("esm: queue stats", "err", err)
		}
		return
	}
	limit := r.capacity()
	r.mu.Lock()
	r.target = decide(scaleInput{Current: r.active, Visible: stats.Visible, BatchSize: r.rec.BatchSize, Cap: limit, Throttled: r.throttled})
	r.throttled = false
	more := r.target - r.active
	r.mu.Unlock()
	for range more {
		r.spawn()
	}
}

// capacity is the most pollers the mapping may run: its
// MaximumConcurrency or the host's bound, under the function's reserved
// concurrency.
func (r *runner) capacity() int {
	limit := r.m.cfg.DefaultConcurrency
	if r.rec.MaximumConcurrency > 0 {
		limit = r.rec.MaximumConcurrency
	}
	if f := r.m.cfg.Functions; f != nil {
		if n, err := f.Concurrency(r.ctx, r.rec.Function); err == nil && n != nil {
			limit = min(limit, *n)
		}
	}
	return limit
}

func (r *runner) queueName() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queue
}

func (r *runner) spawn() {
	r.mu.Lock()
	r.active++
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.poll()
	}()
}

// surplus says whether this poller is one too many, and if so counts it
// out.
func (r *runner) surplus() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active > max(r.target, 1) {
		r.active--
		return true
	}
	return false
}

// poll is one poller: gather a batch, hand it to the function, settle its
// messages; until the mapping stops or there are too many pollers.
func (r *runner) poll() {
	backoff := firstBackoff
	for {
		if r.ctx.Err() != nil {
			r.mu.Lock()
			r.active--
			r.mu.Unlock()
			return
		}
		if r.surplus() {
			return
		}
		batch, err := r.gather()
		if len(batch) > 0 {
			if perr := r.process(batch); perr != nil && err == nil {
				// The function is not there, or the host failed: its
				// messages come back after their visibility timeout; this
				// poller waits before it takes more.
				r.sleep(backoff)
				backoff = min(2*backoff, maxBackoff)
				continue
			}
		}
		if err != nil && r.ctx.Err() == nil {
			if backoff == firstBackoff {
				r.log.Warn("esm: receiving", "err", err)
			}
			if errors.Is(err, ErrNoQueue) {
				r.resolve()
			}
			r.sleep(backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = firstBackoff
	}
}

// gather receives a batch: it long-polls for the first messages, then,
// with a batching window, keeps receiving until the batch is full, the
// window since the first message has passed, or the batch is as large as
// an invocation may be.
func (r *runner) gather() ([]Message, error) {
	var batch []Message
	var deadline time.Time
	size, window := r.rec.BatchSize, time.Duration(r.rec.MaximumBatchingWindowInSeconds)*time.Second
	bytes := 0
	for len(batch) < size && bytes < batchBudget {
		wait := r.m.cfg.IdleWait
		if len(batch) > 0 {
			if window == 0 {
				break
			}
			if wait = deadline.Sub(r.m.cfg.Now()); wait <= 0 {
				break
			}
		}
		msgs, err := r.m.cfg.Queues.Receive(r.ctx, r.queueName(), min(maxReceive, size-len(batch)), wait, 0)
		if err != nil {
			return batch, err
		}
		if err := r.ctx.Err(); err != nil {
			// A receive cut short by the stop may answer nothing and no
			// error: the batch ends here.
			return batch, err
		}
		if len(msgs) > 0 && len(batch) == 0 {
			deadline = r.m.cfg.Now().Add(window)
		}
		for _, m := range msgs {
			bytes += len(m.Body)
		}
		batch = append(batch, msgs...)
	}
	return batch, nil
}

// process drops (deletes) what the filter rejects, invokes the function
// with the rest and deletes what it processed. Its error is the
// invocation's refusal or the platform's failure.
func (r *runner) process(msgs []Message) error {
	res := BatchResult{Function: r.rec.Function}
	defer func() {
		if o := r.m.cfg.Observer; o != nil {
			o.Batch(r.rec.UUID, res)
		}
	}()
	var batch []events.SQSMessage
	var dropped []string
	for _, m := range msgs {
		rec := record(m, r.rec.EventSourceArn, r.m.cfg.Region)
		if r.filter.Match(filterView(rec)) {
			batch = append(batch, rec)
		} else {
			dropped = append(dropped, m.ReceiptHandle)
		}
	}
	// As Lambda: a message no filter passes is deleted, never delivered.
	res.Filtered = len(dropped)
	r.delete(dropped)
	if len(batch) == 0 {
		return nil
	}
	res.Messages = len(batch)
	payload, err := json.Marshal(events.SQSEvent{Records: batch})
	if err != nil {
		res.Failed, res.Err = len(batch), err
		return err
	}
	out, err := r.invoke(payload)
	if err != nil {
		// Refused or failed by the platform: the messages return to the
		// queue after their visibility timeout.
		res.Failed, res.Err = len(batch), err
		if r.ctx.Err() == nil {
			r.log.Warn("esm: invoking", "err", err)
		}
		return err
	}
	o := outcome(batch, out.Payload, out.Error != nil, r.rec.ReportBatchItemFailures)
	if o.Invalid != "" {
		r.log.Warn("esm: the function's batchItemFailures are not valid: the whole batch failed", "reason", o.Invalid)
	}
	res.Failed = o.Failed
	r.delete(o.Delete)
	return nil
}

// invoke runs the function on a batch, retrying throttles with back-off
// for a while: the batch's messages stay hidden meanwhile.
func (r *runner) invoke(payload []byte) (*invoke.Result, error) {
	req := invoke.Request{Function: r.rec.Function, Qualifier: r.rec.Qualifier, Type: invoke.RequestResponse, Payload: payload}
	start := r.m.cfg.Now()
	backoff := firstBackoff
	for {
		// Not r.ctx: a stopped mapping lets its invocation in flight end
		// (invoke.Service runs it to its end anyway).
		res, err := r.m.cfg.Invoker.Invoke(context.WithoutCancel(r.ctx), req)
		var th *lambdaerr.Throttled
		if !errors.As(err, &th) {
			return res, err
		}
		r.mu.Lock()
		r.throttled = true
		r.mu.Unlock()
		if r.m.cfg.Now().Sub(start) >= throttleRetryFor || !r.sleep(backoff) {
			return nil, err
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// delete deletes messages by their receipt handles, even once the mapping
// is stopped: a processed message must not come back.
func (r *runner) delete(handles []string) {
	if len(handles) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), deleteTimeout)
	defer cancel()
	name := r.queueName()
	for _, h := range handles {
		if err := r.m.cfg.Queues.Delete(ctx, name, h); err != nil {
			r.log.Warn("esm: deleting a message", "err", err)
		}
	}
}

// sleep waits d, or less when the mapping stops; false when it stopped.
func (r *runner) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
