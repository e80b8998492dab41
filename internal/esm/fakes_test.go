package esm

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
)

const testARN = "arn:aws:sqs:local:000000000000:jobs"

// fakeQueue is one queue in memory, with SQS's visibility timeout and
// receive counts, on the real clock.
type fakeQueue struct {
	mu         sync.Mutex
	msgs       []*fakeMsg
	visibility time.Duration
	changed    chan struct{} // closed and renewed at each send
	seq        int
	receives   int
	deleted    map[string]int // body → deletes
	// clock, when set, is a fake clock an empty long poll advances by its
	// wait, instead of waiting.
	clock *fakeClock
}

type fakeMsg struct {
	id, body, receipt string
	visibleAt         time.Time
	received          int
}

func newFakeQueue(visibility time.Duration) *fakeQueue {
	return &fakeQueue{visibility: visibility, changed: make(chan struct{}), deleted: map[string]int{}}
}

func (q *fakeQueue) send(bodies ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, b := range bodies {
		q.seq++
		q.msgs = append(q.msgs, &fakeMsg{id: fmt.Sprintf("m%04d", q.seq), body: b})
	}
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *fakeQueue) NameOf(arn string) (string, error) {
	if arn != testARN {
		return "", fmt.Errorf("%s: %w", arn, ErrNoQueue)
	}
	return "jobs", nil
}

func (q *fakeQueue) Receive(ctx context.Context, name string, max int, wait, visibility time.Duration) ([]Message, error) {
	if max < 1 || max > 10 {
		return nil, fmt.Errorf("max %d out of 1..10", max)
	}
	end := time.Now().Add(wait)
	for {
		q.mu.Lock()
		q.receives++
		now := time.Now()
		var out []Message
		for _, m := range q.msgs {
			if len(out) == max {
				break
			}
			if m.visibleAt.After(now) {
				continue
			}
			m.received++
			m.receipt = fmt.Sprintf("%s-r%d", m.id, m.received)
			m.visibleAt = now.Add(q.visibility)
			out = append(out, Message{MessageID: m.id, ReceiptHandle: m.receipt, Body: m.body, MD5OfBody: "md5",
				Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(m.received)}})
		}
		changed := q.changed
		q.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		if q.clock != nil {
			q.clock.advance(wait)
			return nil, nil
		}
		left := time.Until(end)
		if left <= 0 {
			return nil, nil
		}
		t := time.NewTimer(min(left, 20*time.Millisecond)) // wakes for messages made visible again
		select {
		case <-ctx.Done():
			// As queue.Service: a stop ends the wait without an error.
			t.Stop()
			return nil, nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (q *fakeQueue) Delete(ctx context.Context, name, receipt string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, m := range q.msgs {
		if m.receipt == receipt {
			q.deleted[m.body]++
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("receipt %s: no such message", receipt)
}

func (q *fakeQueue) ChangeVisibility(ctx context.Context, name, receipt string, d time.Duration) error {
	return nil
}

func (q *fakeQueue) Stats(ctx context.Context, name string) (QueueStats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var s QueueStats
	now := time.Now()
	for _, m := range q.msgs {
		if m.visibleAt.After(now) {
			s.InFlight++
		} else {
			s.Visible++
		}
	}
	return s, nil
}

// processed is how many times the message with this body was deleted.
func (q *fakeQueue) processed(body string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted[body]
}

func (q *fakeQueue) left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeFunction is the function behind the invocation path: it answers
// each batch with handle, and counts what it saw.
type fakeFunction struct {
	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	invocations int
	batches     [][]events.SQSMessage
	seen        map[string]int // body → times given
	delay       time.Duration
	// handle answers a batch: its payload, a function error, or the
	// platform's error.
	handle func(ev events.SQSEvent) ([]byte, bool, error)
}

func newFakeFunction(handle func(events.SQSEvent) ([]byte, bool, error)) *fakeFunction {
	return &fakeFunction{seen: map[string]int{}, handle: handle}
}

func (f *fakeFunction) Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error) {
	var ev events.SQSEvent
	if err := json.Unmarshal(req.Payload, &ev); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.inFlight++
	f.invocations++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.batches = append(f.batches, ev.Records)
	for _, r := range ev.Records {
		f.seen[r.Body]++
	}
	f.mu.Unlock()
	time.Sleep(f.delay)
	payload, funcErr, err := f.handle(ev)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight--
	if err != nil {
		return nil, err
	}
	res := &invoke.Result{RequestID: "req", Version: "$LATEST", Payload: payload}
	if funcErr {
		res.Error = &guestproto.ErrorObject{ErrorType: "Failed", ErrorMessage: "failed"}
	}
	return res, nil
}

func (f *fakeFunction) stats() (invocations, maxInFlight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.invocations, f.maxInFlight
}

// failOnce reports a message whose body starts with "fail" as failed the
// first time it is received.
func failOnce(ev events.SQSEvent) ([]byte, bool, error) {
	var resp events.SQSEventResponse
	resp.BatchItemFailures = []events.SQSBatchItemFailure{}
	for _, r := range ev.Records {
		if strings.HasPrefix(r.Body, "fail") && r.Attributes["ApproximateReceiveCount"] == "1" {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	b, err := json.Marshal(resp)
	return b, false, err
}

func throttled() error {
	return lambdaerr.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
}

type countingObserver struct {
	mu                                        sync.Mutex
	batches, messages, failed, filtered, errs int
}

func (o *countingObserver) Batch(mapping string, b BatchResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches++
	o.messages += b.Messages
	o.failed += b.Failed
	o.filtered += b.Filtered
	if b.Err != nil {
		o.errs++
	}
}

type fixedConcurrency struct{ n *int }

func (f fixedConcurrency) Concurrency(ctx context.Context, function string) (*int, error) {
	return f.n, nil
}
