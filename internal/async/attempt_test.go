package async

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// fakeInvoker answers each attempt of the event's function with answer(n)
// (n counts from 1) and records every request.
type fakeInvoker struct {
	mu     sync.Mutex
	answer func(n int) (*invoke.Result, error)
	calls  []invoke.Request
	// events are the asynchronous invocations (destinations).
	events []invoke.Request
}

func (f *fakeInvoker) Invoke(_ context.Context, req invoke.Request) (*invoke.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Type == invoke.Event {
		f.events = append(f.events, req)
		return &invoke.Result{RequestID: "dest-req"}, nil
	}
	f.calls = append(f.calls, req)
	return f.answer(len(f.calls))
}

func (f *fakeInvoker) attempts() []invoke.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invoke.Request(nil), f.calls...)
}

type fakeFunctions struct {
	cfg      *store.EventInvokeConfig
	dlq      string
	reserved *int
	gone     bool
}

func (f fakeFunctions) EventInvokeConfig(_ context.Context, function, qualifier string) (store.EventInvokeConfig, error) {
	if f.cfg == nil || qualifier != "$LATEST" {
		return store.EventInvokeConfig{}, store.ErrNotFound
	}
	return *f.cfg, nil
}

func (f fakeFunctions) Resolve(_ context.Context, function, qualifier string) (store.Function, error) {
	if f.gone {
		return store.Function{}, store.ErrNotFound
	}
	fn := store.Function{FunctionName: function, Version: "$LATEST"}
	if f.dlq != "" {
		fn.DeadLetterConfig = &store.DeadLetterConfig{TargetArn: f.dlq}
	}
	return fn, nil
}

func (f fakeFunctions) Concurrency(context.Context, string) (*int, error) { return f.reserved, nil }

type sent struct {
	queue string
	msg   Message
}

// fakeQueues knows the queues "dest" and "dlq"; the first failures sends
// fail.
type fakeQueues struct {
	mu       sync.Mutex
	sent     []sent
	failures int
}

func (q *fakeQueues) NameOf(arn string) (string, error) {
	switch arn {
	case "arn:aws:sqs:us-east-1:000000000000:dest":
		return "dest", nil
	case "arn:aws:sqs:us-east-1:000000000000:dlq":
		return "dlq", nil
	}
	return "", ErrNoQueue
}

func (q *fakeQueues) Send(_ context.Context, name string, m Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failures > 0 {
		q.failures--
		return errors.New("store busy")
	}
	q.sent = append(q.sent, sent{name, m})
	return nil
}

func (q *fakeQueues) to(name string) []Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Message
	for _, s := range q.sent {
		if s.queue == name {
			out = append(out, s.msg)
		}
	}
	return out
}

type counts struct {
	mu        sync.Mutex
	retried   map[string]int
	delivered map[string]int
}

func (c *counts) Queued(string) {}
func (c *counts) Retried(_, reason string) {
	c.mu.Lock()
	c.retried[reason]++
	c.mu.Unlock()
}
func (c *counts) Delivered(_, target string, ok bool) {
	c.mu.Lock()
	if ok {
		c.delivered[target]++
	}
	c.mu.Unlock()
}

const (
	destQ = "arn:aws:sqs:us-east-1:000000000000:dest"
	dlqQ  = "arn:aws:sqs:us-east-1:000000000000:dlq"
	arnF  = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"
)

func ok(payload string) func(int) (*invoke.Result, error) {
	return func(int) (*invoke.Result, error) {
		return &invoke.Result{Version: "$LATEST", Payload: []byte(payload)}, nil
	}
}

func failing(int) (*invoke.Result, error) {
	return &invoke.Result{Version: "$LATEST", Payload: []byte(`{"errorMessage":"boom","errorType":"errorString"}`),
		Error: &guestproto.ErrorObject{ErrorMessage: "boom", ErrorType: "errorString"}}, nil
}

func throttled(int) (*invoke.Result, error) {
	return nil, lambdaerr.TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded", "Rate Exceeded.")
}

func intp(n int) *int { return &n }

func destinations(onSuccess, onFailure string, retries, age *int) *store.EventInvokeConfig {
	return &store.EventInvokeConfig{MaximumRetryAttempts: retries, MaximumEventAgeInSeconds: age,
		DestinationConfig: &store.DestinationConfig{OnSuccess: &store.Destination{Destination: onSuccess}, OnFailure: &store.Destination{Destination: onFailure}}}
}

// run takes one event through every step a worker would, the clock jumping
// to each retry's time and the event stored (JSON) between steps as the
// stream keeps it; it returns the waits between steps.
func run(t *testing.T, w *worker, clock *time.Time, e Event) []time.Duration {
	t.Helper()
	var waits []time.Duration
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("the event never ended")
		}
		again := w.step(context.Background(), &e)
		if !again {
			return waits
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e = Event{}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, e.NotBefore.Sub(*clock))
		*clock = e.NotBefore
	}
}

func TestEventLifecycle(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fnErrThenOK := func(n int) (*invoke.Result, error) {
		if n == 1 {
			return failing(n)
		}
		return ok(`"fine"`)(n)
	}
	throttleThenOK := func(n int) (*invoke.Result, error) {
		if n <= 3 {
			return throttled(n)
		}
		return ok(`1`)(n)
	}
	hostErrThenFail := func(n int) (*invoke.Result, error) {
		if n == 1 {
			return nil, errors.New("the VMM died")
		}
		return failing(n)
	}
	tests := []struct {
		name      string
		answer    func(int) (*invoke.Result, error)
		functions fakeFunctions
		failures  int // sends to queues that fail first
		attempts  int
		waits     []time.Duration
		// condition is the record's, sent to queue; "" for no record.
		condition, queue string
		invokes          int
		response         string // the record's responsePayload
		dlq              bool
		retried          map[string]int
	}{
		{name: "success goes to OnSuccess", answer: ok(`{"ok":true}`), functions: fakeFunctions{cfg: destinations(destQ, "", nil, nil)},
			attempts: 1, condition: Success, queue: "dest", invokes: 1, response: `{"ok":true}`, retried: map[string]int{}},
		{name: "success without destinations", answer: ok(`1`), attempts: 1, retried: map[string]int{}},
		{name: "function errors: 1 + 2 retries after 1 and 2 min, then OnFailure and the DLQ", answer: failing,
			functions: fakeFunctions{cfg: destinations("", destQ, nil, nil), dlq: dlqQ},
			attempts:  3, waits: []time.Duration{time.Minute, 2 * time.Minute}, condition: RetriesExhausted, queue: "dest", invokes: 3,
			response: `{"errorMessage":"boom","errorType":"errorString"}`, dlq: true, retried: map[string]int{"function_error": 2}},
		{name: "MaximumRetryAttempts 0", answer: failing, functions: fakeFunctions{cfg: destinations("", destQ, intp(0), nil)},
			attempts: 1, condition: RetriesExhausted, queue: "dest", invokes: 1, response: `{"errorMessage":"boom","errorType":"errorString"}`, retried: map[string]int{}},
		{name: "an error, then success", answer: fnErrThenOK, functions: fakeFunctions{cfg: destinations(destQ, destQ, nil, nil)},
			attempts: 2, waits: []time.Duration{time.Minute}, condition: Success, queue: "dest", invokes: 2, response: `"fine"`, retried: map[string]int{"function_error": 1}},
		{name: "throttles back off 1 s, 2 s, 4 s", answer: throttleThenOK, functions: fakeFunctions{cfg: destinations(destQ, "", nil, nil)},
			attempts: 4, waits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, condition: Success, queue: "dest", invokes: 1, response: `1`,
			retried: map[string]int{"throttled": 3}},
		{name: "throttled until too old", answer: throttled, functions: fakeFunctions{cfg: destinations("", destQ, nil, intp(60)), dlq: dlqQ},
			attempts: 6, waits: []time.Duration{1, 2, 4, 8, 16, 29}, condition: EventAgeExceeded, queue: "dest", invokes: 0, dlq: true,
			retried: map[string]int{"throttled": 6}},
		{name: "a host error backs off, function errors keep their count", answer: hostErrThenFail, functions: fakeFunctions{cfg: destinations("", destQ, intp(1), nil)},
			attempts: 3, waits: []time.Duration{time.Second, time.Minute}, condition: RetriesExhausted, queue: "dest", invokes: 2,
			response: `{"errorMessage":"boom","errorType":"errorString"}`, retried: map[string]int{"error": 1, "function_error": 1}},
		{name: "reserved concurrency 0: straight to failure", answer: ok(`1`), functions: fakeFunctions{cfg: destinations("", destQ, nil, nil), dlq: dlqQ, reserved: intp(0)},
			attempts: 0, condition: RetriesExhausted, queue: "dest", invokes: 0, dlq: true, retried: map[string]int{}},
		{name: "a destination that fails for a while is retried, each delivery made once", answer: failing,
			functions: fakeFunctions{cfg: destinations("", destQ, intp(0), nil), dlq: dlqQ}, failures: 1,
			attempts: 1, waits: []time.Duration{time.Second}, condition: RetriesExhausted, queue: "dest", invokes: 1,
			response: `{"errorMessage":"boom","errorType":"errorString"}`, dlq: true, retried: map[string]int{}},
		{name: "the function is gone: dropped", answer: ok(`1`), functions: fakeFunctions{gone: true}, retried: map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, w := range tc.waits {
				if w < time.Millisecond {
					tc.waits[i] = w * time.Second
				}
			}
			clock := t0
			inv := &fakeInvoker{answer: tc.answer}
			queues := &fakeQueues{failures: tc.failures}
			obs := &counts{retried: map[string]int{}, delivered: map[string]int{}}
			w := &worker{cfg: Config{RetryDelays: []time.Duration{time.Minute, 2 * time.Minute}, BackoffMin: time.Second, BackoffMax: 5 * time.Minute,
				Now: func() time.Time { return clock }, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
				invoker: inv, functions: tc.functions, queues: queues, observer: obs}
			e := Event{RequestID: "req-1", Function: "f", Payload: []byte(`{"n":1}`), FirstSeen: t0}
			waits := run(t, w, &clock, e)
			if !reflect.DeepEqual(waits, tc.waits) && !(len(waits) == 0 && len(tc.waits) == 0) {
				t.Errorf("waits %v, want %v", waits, tc.waits)
			}
			calls := inv.attempts()
			if len(calls) != tc.attempts {
				t.Fatalf("%d attempts, want %d", len(calls), tc.attempts)
			}
			for _, c := range calls {
				if c.RequestID != "req-1" || c.Type != invoke.RequestResponse || string(c.Payload) != `{"n":1}` {
					t.Errorf("attempt %+v: want the event's request id and payload, as a RequestResponse", c)
				}
			}
			if !reflect.DeepEqual(obs.retried, tc.retried) {
				t.Errorf("retries counted %v, want %v", obs.retried, tc.retried)
			}
			var records []Message
			if tc.queue != "" {
				records = queues.to(tc.queue)
			}
			if tc.condition == "" {
				if len(queues.sent) != 0 {
					t.Fatalf("sent %+v, want nothing", queues.sent)
				}
				return
			}
			if len(records) != 1 {
				t.Fatalf("%d records in %s, want 1: %+v", len(records), tc.queue, queues.sent)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(records[0].Body), &rec); err != nil {
				t.Fatal(err)
			}
			rc := rec["requestContext"].(map[string]any)
			if rec["version"] != "1.0" || rc["requestId"] != "req-1" || rc["functionArn"] != arnF || rc["condition"] != tc.condition ||
				rc["approximateInvokeCount"] != float64(tc.invokes) {
				t.Errorf("record %s", records[0].Body)
			}
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", rec["timestamp"].(string)); err != nil {
				t.Errorf("timestamp: %v", err)
			}
			if p, _ := json.Marshal(rec["requestPayload"]); string(p) != `{"n":1}` {
				t.Errorf("requestPayload %s", p)
			}
			if tc.invokes == 0 {
				if _, has := rec["responseContext"]; has {
					t.Errorf("a record of an event that never ran has a responseContext: %s", records[0].Body)
				}
			} else {
				resp := rec["responseContext"].(map[string]any)
				wantErr := any(nil)
				if tc.condition != Success {
					wantErr = "Unhandled"
				}
				if resp["statusCode"] != float64(200) || resp["executedVersion"] != "$LATEST" || resp["functionError"] != wantErr {
					t.Errorf("responseContext %v", resp)
				}
				if p, _ := json.Marshal(rec["responsePayload"]); string(p) != tc.response {
					t.Errorf("responsePayload %s, want %s", p, tc.response)
				}
			}
			dlq := queues.to("dlq")
			if !tc.dlq {
				if len(dlq) != 0 {
					t.Errorf("dead letters %+v, want none", dlq)
				}
				return
			}
			if len(dlq) != 1 || dlq[0].Body != `{"n":1}` || dlq[0].Attributes["RequestID"].StringValue != "req-1" {
				t.Fatalf("dead letters %+v, want the event once", dlq)
			}
			code := "200"
			if tc.invokes == 0 {
				code = "429"
			}
			if a := dlq[0].Attributes["ErrorCode"]; a.DataType != "Number" || a.StringValue != code {
				t.Errorf("ErrorCode %+v, want %s", a, code)
			}
		})
	}
}

// A function destination gets the record as an asynchronous invocation
// (which the queue keeps, as any Event).
func TestFunctionDestination(t *testing.T) {
	clock := time.Unix(1e9, 0)
	inv := &fakeInvoker{answer: ok(`"r"`)}
	w := &worker{cfg: Config{RetryDelays: []time.Duration{time.Minute}, BackoffMin: time.Second, BackoffMax: time.Minute,
		Now: func() time.Time { return clock }, Region: "us-east-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		invoker: inv, functions: fakeFunctions{cfg: destinations("arn:aws:lambda:us-east-1:000000000000:function:audit:live", "", nil, nil)},
		observer: nopObserver{}}
	run(t, w, &clock, Event{RequestID: "req-2", Function: "f", Payload: []byte(`"p"`), FirstSeen: clock})
	if len(inv.events) != 1 {
		t.Fatalf("%d asynchronous invocations, want 1", len(inv.events))
	}
	ev := inv.events[0]
	var rec Record
	if err := json.Unmarshal(ev.Payload, &rec); err != nil {
		t.Fatal(err)
	}
	if ev.Function != "audit" || ev.Qualifier != "live" || rec.RequestContext.Condition != Success || string(rec.ResponsePayload) != `"r"` {
		t.Fatalf("destination invocation %+v with record %+v", ev, rec)
	}
}

func TestBackoff(t *testing.T) {
	c := Config{BackoffMin: time.Second, BackoffMax: 5 * time.Minute}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := c.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := c.backoff(30); got != 5*time.Minute {
		t.Errorf("backoff(30) = %v, want the 5 min cap", got)
	}
}

func TestParseDestination(t *testing.T) {
	tests := []struct {
		arn      string
		kind     destKind
		fn, qual string
	}{
		{"arn:aws:sqs:us-east-1:000000000000:q", destQueue, "", ""},
		{"arn:aws:lambda:us-east-1:000000000000:function:f", destFunction, "f", ""},
		{"arn:aws:lambda:us-east-1:000000000000:function:f:1", destFunction, "f", "1"},
		{"arn:aws:sns:us-east-1:000000000000:t", destNone, "", ""},
		{"arn:aws:sqs:us-east-1:000000000000:", destNone, "", ""},
		{"f", destNone, "", ""},
	}
	for _, tc := range tests {
		k, f, q := parseDestination(tc.arn)
		if k != tc.kind || f != tc.fn || q != tc.qual {
			t.Errorf("parseDestination(%q) = %v %q %q", tc.arn, k, f, q)
		}
	}
}
