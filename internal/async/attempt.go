package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// Invoker is the invocation path; invoke.Service is it.
type Invoker interface {
	Invoke(ctx context.Context, req invoke.Request) (*invoke.Result, error)
}

// Functions reads what an event's handling depends on; the store is one.
type Functions interface {
	// EventInvokeConfig is a function's settings at a qualifier
	// ($LATEST, a version or an alias); store.ErrNotFound for none.
	EventInvokeConfig(ctx context.Context, function, qualifier string) (store.EventInvokeConfig, error)
	// Resolve is a function at a qualifier, for its DeadLetterConfig.
	Resolve(ctx context.Context, function, qualifier string) (store.Function, error)
	// Concurrency is the function's reserved concurrency; nil for none.
	Concurrency(ctx context.Context, function string) (*int, error)
}

// Queues sends messages to Hearth's queues (queue.Service through a small
// adapter in the daemon).
type Queues interface {
	// NameOf is the name of the queue an ARN names; an error wrapping
	// ErrNoQueue when there is none.
	NameOf(arn string) (string, error)
	Send(ctx context.Context, name string, m Message) error
}

// ErrNoQueue is a destination queue that does not exist.
var ErrNoQueue = errors.New("no such queue")

// Message is what is sent to a queue.
type Message struct {
	Body       string
	Attributes map[string]Attribute
}

// Attribute is a message attribute (DataType String or Number).
type Attribute struct {
	DataType    string
	StringValue string
}

// Observer counts what happens to events, for metrics.
type Observer interface {
	// Queued counts an event accepted.
	Queued(function string)
	// Retried counts an attempt that will be retried, by reason:
	// "function_error", "throttled" or "error".
	Retried(function, reason string)
	// Delivered counts a delivery to a target ("on_success",
	// "on_failure", "dead_letter"), made or failed.
	Delivered(function, target string, ok bool)
}

// The delivery targets.
const (
	targetOnSuccess  = "on_success"
	targetOnFailure  = "on_failure"
	targetDeadLetter = "dead_letter"
)

// maxDeliveryRounds bounds the rounds of delivery of an ended event whose
// destination keeps failing.
const maxDeliveryRounds = 8

// worker handles events; its clock and delays are the queue's Config.
type worker struct {
	cfg       Config
	invoker   Invoker
	functions Functions
	queues    Queues
	observer  Observer
}

// step runs what comes next for e: its invocation, or its deliveries once
// it has ended. It returns true when e is to run again at e.NotBefore
// (e has been updated), false when e is finished.
func (w *worker) step(ctx context.Context, e *Event) bool {
	now := w.cfg.Now()
	set, err := w.settings(ctx, e)
	if errors.Is(err, store.ErrNotFound) {
		// The function (or its version or alias) is gone, and its
		// settings and dead-letter queue with it.
		w.cfg.Log.Warn("async: the function of an event is gone; the event is dropped", "function", e.Function, "qualifier", e.Qualifier, "request", e.RequestID)
		return false
	}
	if err != nil {
		return w.retryLater(e, now, err)
	}
	if e.Done != nil {
		return w.deliver(ctx, e, set, now)
	}
	if now.Sub(e.FirstSeen) >= set.MaxAge {
		return w.end(ctx, e, set, EventAgeExceeded, now)
	}
	if reserved, err := w.functions.Concurrency(ctx, e.Function); err == nil && reserved != nil && *reserved == 0 {
		// As Lambda: a function that may not run at all sends its events
		// to failure without any attempt.
		return w.end(ctx, e, set, RetriesExhausted, now)
	}
	res, err := w.invoker.Invoke(ctx, invoke.Request{Function: e.Function, Qualifier: e.Qualifier, Type: invoke.RequestResponse,
		RequestID: e.RequestID, Payload: e.Payload, ClientContext: e.ClientContext, TraceID: e.TraceID})
	now = w.cfg.Now()
	if res != nil {
		e.Invokes++
		e.SystemRetries = 0
		e.Last = &Response{StatusCode: http.StatusOK, Version: res.Version, Payload: res.Payload}
		if res.Error == nil && err == nil {
			return w.end(ctx, e, set, Success, now)
		}
		e.Last.FunctionError = "Unhandled"
		e.Last.ErrorMessage = errorMessage(res, err)
		e.FunctionErrors++
		if e.FunctionErrors > set.MaxRetries {
			return w.end(ctx, e, set, RetriesExhausted, now)
		}
		w.observer.Retried(e.Function, "function_error")
		return w.retryAt(ctx, e, set, now.Add(w.cfg.retryDelay(e.FunctionErrors)), now)
	}
	var le *lambdaerr.Error
	var th *lambdaerr.Throttled
	switch {
	case errors.As(err, &th):
		w.observer.Retried(e.Function, "throttled")
	case errors.As(err, &le) && le.Status == http.StatusNotFound:
		w.cfg.Log.Warn("async: the function of an event is gone; the event is dropped", "function", e.Function, "qualifier", e.Qualifier, "request", e.RequestID, "err", err)
		return false
	case errors.As(err, &le) && le.Status < 500 && le.Status != http.StatusConflict:
		// Refused for good (too large, invalid): it never will run.
		w.cfg.Log.Warn("async: an event was refused", "function", e.Function, "request", e.RequestID, "err", err)
		return w.end(ctx, e, set, RetriesExhausted, now)
	default:
		// The host's failure, or a function not ready yet (409).
		w.cfg.Log.Warn("async: an attempt failed; retrying", "function", e.Function, "request", e.RequestID, "err", err)
		w.observer.Retried(e.Function, "error")
	}
	e.SystemRetries++
	return w.retryAt(ctx, e, set, now.Add(w.cfg.backoff(e.SystemRetries)), now)
}

// retryAt has e run again at t, or when that is past its maximum age, at
// its maximum age (when it ends with EventAgeExceeded).
func (w *worker) retryAt(ctx context.Context, e *Event, set Settings, t, now time.Time) bool {
	if deadline := e.FirstSeen.Add(set.MaxAge); t.After(deadline) {
		if !deadline.After(now) {
			return w.end(ctx, e, set, EventAgeExceeded, now)
		}
		t = deadline
	}
	e.NotBefore = t
	return true
}

// retryLater has e run again after a pause, for a failure of Hearth's
// own before the event could run (reading its settings).
func (w *worker) retryLater(e *Event, now time.Time, err error) bool {
	w.cfg.Log.Warn("async: reading an event's settings", "function", e.Function, "request", e.RequestID, "err", err)
	e.SystemRetries++
	e.NotBefore = now.Add(w.cfg.backoff(e.SystemRetries))
	return true
}

// end ends e with condition and makes its deliveries.
func (w *worker) end(ctx context.Context, e *Event, set Settings, condition string, now time.Time) bool {
	e.Done = &Done{Condition: condition, At: now, Delivered: map[string]bool{}}
	e.NotBefore = time.Time{}
	return w.deliver(ctx, e, set, now)
}

// deliver makes an ended event's deliveries not made yet: its record to
// the destination of its condition, and on failure the event to the
// dead-letter queue. A delivery that fails for a while (not for a missing
// target) is retried later, up to maxDeliveryRounds.
func (w *worker) deliver(ctx context.Context, e *Event, set Settings, now time.Time) bool {
	d := e.Done
	type delivery struct {
		target, arn string
		send        func(ctx context.Context, arn string) error
	}
	var todo []delivery
	rec := func(ctx context.Context, arn string) error {
		b, err := json.Marshal(record(e, w.functionArn(e), d.Condition, d.At))
		if err != nil {
			return err
		}
		return w.sendTo(ctx, arn, b, nil)
	}
	if d.Condition == Success {
		todo = append(todo, delivery{targetOnSuccess, set.OnSuccess, rec})
	} else {
		todo = append(todo, delivery{targetOnFailure, set.OnFailure, rec},
			delivery{targetDeadLetter, set.DeadLetter, func(ctx context.Context, arn string) error {
				return w.sendTo(ctx, arn, e.Payload, deadLetterAttributes(e))
			}})
	}
	failed := false
	for _, t := range todo {
		if t.arn == "" || d.Delivered[t.target] {
			continue
		}
		err := t.send(ctx, t.arn)
		w.observer.Delivered(e.Function, t.target, err == nil)
		switch {
		case err == nil:
			if d.Delivered == nil {
				d.Delivered = map[string]bool{}
			}
			d.Delivered[t.target] = true
		case isGone(err):
			w.cfg.Log.Warn("async: a destination is gone; its delivery is dropped", "function", e.Function, "request", e.RequestID, "destination", t.arn, "err", err)
			d.Delivered[t.target] = true
		default:
			w.cfg.Log.Warn("async: a delivery failed", "function", e.Function, "request", e.RequestID, "destination", t.arn, "err", err)
			failed = true
		}
	}
	if !failed {
		return false
	}
	d.Attempts++
	if d.Attempts >= maxDeliveryRounds {
		w.cfg.Log.Error("async: deliveries keep failing; they are dropped", "function", e.Function, "request", e.RequestID)
		return false
	}
	e.NotBefore = now.Add(w.cfg.backoff(d.Attempts))
	return true
}

// sendTo sends body to a destination: a queue (with attrs) or a function
// (an asynchronous invocation of it, which queues it here).
func (w *worker) sendTo(ctx context.Context, arn string, body []byte, attrs map[string]Attribute) error {
	switch kind, name, qualifier := parseDestination(arn); kind {
	case destQueue:
		if w.queues == nil {
			return fmt.Errorf("%s: %w", arn, ErrNoQueue)
		}
		name, err := w.queues.NameOf(arn)
		if err != nil {
			return err
		}
		return w.queues.Send(ctx, name, Message{Body: string(body), Attributes: attrs})
	case destFunction:
		_, err := w.invoker.Invoke(ctx, invoke.Request{Function: name, Qualifier: qualifier, Type: invoke.Event, Payload: body})
		return err
	default:
		return fmt.Errorf("%s: %w", arn, errUnsupported)
	}
}

var errUnsupported = errors.New("not a queue's or a function's ARN")

// isGone says whether a delivery failed for a target that is not there,
// which waiting will not bring back.
func isGone(err error) bool {
	if errors.Is(err, ErrNoQueue) || errors.Is(err, errUnsupported) {
		return true
	}
	le, ok := lambdaerr.As(err)
	return ok && le.Status >= 400 && le.Status < 500 && le.Status != http.StatusTooManyRequests && le.Status != http.StatusConflict
}

// deadLetterAttributes are the attributes Lambda gives a dead-letter
// message: the request id, the last answer's status and its error.
func deadLetterAttributes(e *Event) map[string]Attribute {
	attrs := map[string]Attribute{"RequestID": {DataType: "String", StringValue: e.RequestID}}
	code, msg := http.StatusTooManyRequests, "The event was not run before it was too old"
	if l := e.Last; l != nil {
		code, msg = l.StatusCode, l.ErrorMessage
	}
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	attrs["ErrorCode"] = Attribute{DataType: "Number", StringValue: fmt.Sprint(code)}
	if msg != "" {
		attrs["ErrorMessage"] = Attribute{DataType: "String", StringValue: msg}
	}
	return attrs
}

// errorMessage is a function error's message.
func errorMessage(res *invoke.Result, err error) string {
	if res.Error != nil {
		return res.Error.ErrorMessage
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// settings reads e's function's settings at its qualifier.
func (w *worker) settings(ctx context.Context, e *Event) (Settings, error) {
	f, err := w.functions.Resolve(ctx, e.Function, e.Qualifier)
	if err != nil {
		return Settings{}, err
	}
	set := Settings{MaxRetries: DefaultMaxRetries, MaxAge: DefaultMaxAge}
	if f.DeadLetterConfig != nil {
		set.DeadLetter = f.DeadLetterConfig.TargetArn
	}
	c, err := w.functions.EventInvokeConfig(ctx, e.Function, ConfigQualifier(e.Qualifier))
	if errors.Is(err, store.ErrNotFound) {
		return set, nil
	}
	if err != nil {
		return Settings{}, err
	}
	return settingsOf(c, set), nil
}

func settingsOf(c store.EventInvokeConfig, set Settings) Settings {
	if c.MaximumRetryAttempts != nil {
		set.MaxRetries = *c.MaximumRetryAttempts
	}
	if c.MaximumEventAgeInSeconds != nil {
		set.MaxAge = time.Duration(*c.MaximumEventAgeInSeconds) * time.Second
	}
	if d := c.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			set.OnSuccess = d.OnSuccess.Destination
		}
		if d.OnFailure != nil {
			set.OnFailure = d.OnFailure.Destination
		}
	}
	return set
}

// ConfigQualifier is the qualifier an event's settings are kept under:
// an unqualified function's are $LATEST's, as Lambda names them.
func ConfigQualifier(q string) string {
	if q == "" {
		return "$LATEST"
	}
	return q
}

// functionArn is the record's functionArn: the function's ARN with the
// qualifier it was invoked with ($LATEST for none), as Lambda writes it.
func (w *worker) functionArn(e *Event) string {
	return fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s:%s", w.cfg.Region, e.Function, ConfigQualifier(e.Qualifier))
}

type destKind int

const (
	destNone destKind = iota
	destQueue
	destFunction
)

// parseDestination tells a queue's ARN (arn:aws:sqs:…) from a function's
// (arn:aws:lambda:…:function:name[:qualifier]).
func parseDestination(arn string) (kind destKind, function, qualifier string) {
	parts := strings.Split(arn, ":")
	switch {
	case len(parts) == 6 && parts[0] == "arn" && parts[2] == "sqs" && parts[5] != "":
		return destQueue, "", ""
	case (len(parts) == 7 || len(parts) == 8) && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" && parts[6] != "":
		if len(parts) == 8 {
			qualifier = parts[7]
		}
		return destFunction, parts[6], qualifier
	}
	return destNone, "", ""
}

// IsQueueARN and FunctionOfARN read a destination's ARN, for the API's
// checks.
func IsQueueARN(arn string) bool { k, _, _ := parseDestination(arn); return k == destQueue }

// FunctionOfARN is the function (and qualifier) a function's ARN names;
// ok false when arn is not one.
func FunctionOfARN(arn string) (function, qualifier string, ok bool) {
	k, f, q := parseDestination(arn)
	return f, q, k == destFunction
}
