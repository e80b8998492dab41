// Package invoke is the one way into an invocation. Every entry — the
// Invoke API, function URLs, and the queues, buckets and MicroVMs that come
// later — calls Invoke with a function name and qualifier; this package
// resolves the version or alias, applies the function's reserved
// concurrency, runs the invocation on an environment the scheduler leases,
// writes the function's START / END / REPORT lines, keeps the meter record
// and returns Lambda's tail of the log. So limits, metering and logs hold
// for every way in.
package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/spans"
	"github.com/hearthdev/hearth/internal/store"
)

// Lambda's payload limits: a synchronous event, an asynchronous one.
const (
	MaxSyncPayload  = 6 << 20
	MaxAsyncPayload = 1 << 20
)

// Functions reads functions' configurations; the store is one.
type Functions interface {
	// Resolve returns a function at a qualifier ("", $LATEST, a version
	// or an alias); store.ErrNotFound when there is none.
	Resolve(ctx context.Context, function, qualifier string) (store.Function, error)
	// Concurrency is the function's reserved concurrency; nil for none.
	Concurrency(ctx context.Context, function string) (*int, error)
	// FunctionLayers returns the layer versions f uses, in its order.
	FunctionLayers(ctx context.Context, f store.Function) ([]store.LayerVersion, error)
}

// Scheduler leases environments; scheduler.Scheduler is one.
type Scheduler interface {
	Acquire(ctx context.Context, fn scheduler.Function) (*scheduler.Lease, error)
	Retire(ctx context.Context, function string)
	Prepare(fn scheduler.Function)
	Adopt(ctx context.Context, fn scheduler.Function, rec store.EnvRecord) error
}

// Meter bills each invocation's meter record by its price table
// (meter.Record.Bill) and keeps it.
type Meter interface {
	Invoked(rec meter.Record)
}

// Observer counts invocations as they end, for metrics: res is nil when
// err is set.
type Observer interface {
	Invocation(function string, res *sandbox.Result, err error)
}

// Queue keeps asynchronous events durably and runs each later through
// Invoke (as a RequestResponse with the event's RequestID); async.Queue is
// one.
type Queue interface {
	// Enqueue returns once the event is stored.
	Enqueue(ctx context.Context, e QueuedEvent) error
}

// QueuedEvent is an accepted Event invocation.
type QueuedEvent struct {
	RequestID     string
	Function      string
	Qualifier     string
	Payload       []byte
	ClientContext string
	TraceID       string
}

// Logs gives each function's log.
type Logs interface {
	Writer(function string) io.Writer
}

// Config is what the invocation path needs.
type Config struct {
	Functions Functions
	Scheduler Scheduler
	Meter     Meter
	Observer  Observer
	Logs      Logs
	// Async, when set, keeps Event invocations (stored before Invoke
	// returns, retried, sent to destinations); without it an Event runs
	// at once after Invoke returns, and is lost if it fails.
	Async Queue
	// Region appears in ARNs.
	Region string
	// SnapStart makes templates for every function revision, beside the
	// functions whose own SnapStart setting asks for them.
	SnapStart bool
	// KeepPaused is how long an idle environment stays paused before it is
	// suspended, for a function whose idle policy does not say (0:
	// DefaultKeepPaused; negative: no paused tier).
	KeepPaused time.Duration
	// CacheDir is Hearth's cache, where `make runtimes` leaves the managed
	// runtimes' roots (runtimes.RootPath).
	CacheDir string
	// Services, when set, gives each function the environment and the
	// guest port with which it reaches the host's services (the S3
	// endpoint, with its keys).
	Services GuestServices
	// Forwarder, when set (a host of a cluster), may send a
	// RequestResponse to the host best placed to run it (forward.go).
	Forwarder Forwarder
	// Sync, when set (a host of a cluster), is the shared configuration:
	// a function not found is looked up again once this host has caught
	// up with it, so that every entry (a forwarded call, an asynchronous
	// event or a queue message taken by this host's workers) runs a
	// function created on another host a moment ago instead of failing.
	Sync ConfigSync
	// Slots, when set (a host of a cluster), hold reserved and account
	// concurrency across the hosts (admission.go); AccountConcurrency is
	// the account's limit there (DefaultAccountConcurrency when zero).
	Slots              Slots
	AccountConcurrency int
	// Node names this host in a cluster: Result.Node of what it runs.
	Node string
	Log  *slog.Logger
}

// GuestServices says how a function reaches the host's services: the
// variables its environment gets (they replace the function's own of the
// same name, as Lambda's reserved ones) and the guest port.
type GuestServices interface {
	GuestServices(function string) (env map[string]string, port int)
}

// Service runs invocations.
type Service struct {
	cfg Config
	// layerDigests maps a layer version's ARN to its zip's digest (see
	// layerDigests).
	layerDigests sync.Map
	resolved     resolvedCache
	unres        unreservedCache
}

// New returns the invocation path.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Region == "" {
		cfg.Region = sandbox.DefaultRegion
	}
	if cfg.KeepPaused == 0 {
		cfg.KeepPaused = DefaultKeepPaused
	}
	return &Service{cfg: cfg}
}

// DefaultKeepPaused is how long an idle environment stays paused for a
// function whose idle policy does not say: 0 when there is no paused tier.
func (s *Service) DefaultKeepPaused() time.Duration {
	return max(s.cfg.KeepPaused, 0)
}

// Type is Lambda's invocation type.
type Type string

// The invocation types.
const (
	RequestResponse Type = "RequestResponse"
	Event           Type = "Event"
	DryRun          Type = "DryRun"
)

// Request is one invocation, as any entry asks for it.
type Request struct {
	Function  string
	Qualifier string
	// Type is RequestResponse when empty.
	Type          Type
	Payload       []byte
	ClientContext string
	TraceID       string
	// Stream, when set, receives the response as the function writes it.
	Stream sandbox.ResponseStream
	// RequestID is set by the asynchronous queue for each attempt of an
	// event it runs (as a RequestResponse, so never queued again): the
	// function sees the event's request id on every attempt, as on
	// Lambda. Empty makes a new one.
	RequestID string
	// NoForward is set on an invocation another host forwarded here: it
	// runs on this host, never forwarded again.
	NoForward bool
}

// Result is what the caller answers with.
type Result struct {
	RequestID string
	// Version is the version that ran ($LATEST or a number).
	Version string
	// Payload is the response, or Lambda's error object when Error is set;
	// empty for an Event or a DryRun, and for a streamed response.
	Payload   []byte
	Error     *guestproto.ErrorObject
	StartType sandbox.StartType
	// LogTail is the last 4 KB of the invocation's log, START to REPORT,
	// as Lambda returns it for X-Amz-Log-Type: Tail.
	LogTail []byte
	// Node is the host of a cluster that ran the invocation (empty
	// standalone).
	Node string
}

// Invoke runs one invocation. An Event is accepted once its function is
// found and runs after Invoke returns; a DryRun only checks. A function
// error is a Result with Error set; a Go error is the platform's refusal
// (not found, throttled, too large) or failure, in Lambda's error shape.
//
// As on Lambda, an invocation runs to its end (or its timeout) even if
// ctx is cancelled: cancelling it would kill a healthy environment.
func (s *Service) Invoke(ctx context.Context, req Request) (*Result, error) {
	if req.Type == "" {
		req.Type = RequestResponse
	}
	limit := MaxSyncPayload
	switch req.Type {
	case RequestResponse, DryRun:
	case Event:
		limit = MaxAsyncPayload
	default:
		return nil, lambdaerr.InvalidParameter("X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not %q", req.Type)
	}
	if len(req.Payload) > limit {
		return nil, lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", limit)
	}
	if req.Type == Event && req.Stream != nil {
		return nil, lambdaerr.InvalidParameter("an asynchronous invocation cannot stream its response")
	}
	fn, err := s.function(ctx, req.Function, req.Qualifier)
	if err != nil {
		return nil, err
	}
	spans.From(ctx).Mark(spans.Resolved)
	requestID := req.RequestID
	if requestID == "" {
		requestID = uuid.NewString()
	}
	switch req.Type {
	case DryRun:
		return &Result{RequestID: requestID, Version: fn.Version}, nil
	case Event:
		if s.cfg.Async != nil {
			// Stored before the 202: from now on the event is the queue's.
			err := s.cfg.Async.Enqueue(ctx, QueuedEvent{RequestID: requestID, Function: req.Function, Qualifier: req.Qualifier,
				Payload: req.Payload, ClientContext: req.ClientContext, TraceID: req.TraceID})
			if err != nil {
				return nil, fmt.Errorf("queueing an asynchronous invocation of %s: %w", req.Function, err)
			}
			return &Result{RequestID: requestID, Version: fn.Version}, nil
		}
		// Run after the answer, as Lambda's asynchronous invocations are.
		go func() {
			res, err := s.run(context.WithoutCancel(ctx), fn, requestID, req)
			switch {
			case err != nil:
				s.cfg.Log.Warn("asynchronous invocation failed", "function", fn.Name, "request", requestID, "err", err)
			case res.Error != nil:
				s.cfg.Log.Warn("asynchronous invocation: function error", "function", fn.Name, "request", requestID, "type", res.Error.ErrorType)
			}
		}()
		return &Result{RequestID: requestID, Version: fn.Version}, nil
	}
	ctx = context.WithoutCancel(ctx)
	if res, forwarded, err := s.forward(ctx, fn, requestID, req); forwarded {
		return res, err
	}
	return s.run(ctx, fn, requestID, req)
}

// run leases an environment, runs the invocation on it, and logs and
// meters it.
func (s *Service) run(ctx context.Context, fn scheduler.Function, requestID string, req Request) (res *Result, err error) {
	var sres *sandbox.Result
	defer func() {
		if s.cfg.Observer != nil {
			s.cfg.Observer.Invocation(fn.Name, sres, err)
		}
	}()
	log := s.logs(fn.Name)
	// The cluster's admission first: the host that serves the call holds
	// its slot, until the call ends.
	release, err := s.admit(ctx, fn)
	if err != nil {
		return nil, err
	}
	defer release()
	lease, err := s.cfg.Scheduler.Acquire(ctx, fn)
	if err != nil {
		var ie *sandbox.InitError
		if !errors.As(err, &ie) {
			return nil, err
		}
		sres = initFailed(requestID, ie)
		t := newTranscript(log, requestID, fn.Version)
		t.end(nil, fn.Function)
		return s.result(fn, sres, t), nil
	}
	rec := spans.From(ctx)
	rec.Mark(spans.Leased)
	// START follows the environment's init output, as in Lambda's log.
	t := newTranscript(log, requestID, fn.Version)
	sres, err = lease.Invoke(ctx, sandbox.Request{RequestID: requestID, Payload: req.Payload,
		ClientContext: req.ClientContext, TraceID: req.TraceID, Stream: req.Stream})
	lease.Release()
	rec.Mark(spans.Released)
	if sres == nil {
		t.end(nil, fn.Function)
		// The lease moved the call to a new environment, whose init failed.
		if ie := (*sandbox.InitError)(nil); errors.As(err, &ie) {
			sres = initFailed(requestID, ie)
			return s.result(fn, sres, t), nil
		}
		return nil, err
	}
	t.end(sres, fn.Function)
	if s.cfg.Meter != nil {
		s.cfg.Meter.Invoked(Record(fn, sres, time.Now()))
	}
	rec.Mark(spans.Metered)
	return s.result(fn, sres, t), err
}

// initFailed is a failed init as the invocation's result: as in Lambda, a
// function error.
func initFailed(requestID string, ie *sandbox.InitError) *sandbox.Result {
	res := &sandbox.Result{RequestID: requestID, Error: &ie.Object, StartType: sandbox.StartCold}
	res.Payload, _ = json.Marshal(ie.Object)
	return res
}

func (s *Service) result(fn scheduler.Function, res *sandbox.Result, t *transcript) *Result {
	return &Result{RequestID: res.RequestID, Version: fn.Version, Payload: res.Payload, Error: res.Error,
		StartType: res.StartType, LogTail: t.tail(res), Node: s.cfg.Node}
}

func (s *Service) logs(function string) io.Writer {
	if s.cfg.Logs == nil {
		return io.Discard
	}
	return s.cfg.Logs.Writer(function)
}

// Retire ends the environments of a function whose code or configuration
// changed, or that was deleted; busy ones end when their invocation does.
func (s *Service) Retire(ctx context.Context, function string) {
	s.cfg.Scheduler.Retire(ctx, function)
}

// Published readies a newly published version: with SnapStart, its
// template is made now, so that its first invocation is already a clone.
func (s *Service) Published(ctx context.Context, function, version string) error {
	fn, err := s.function(ctx, function, version)
	if err != nil {
		return err
	}
	if fn.SnapStart {
		s.cfg.Scheduler.Prepare(fn)
	}
	return nil
}

// Adopt takes over an environment a previous daemon suspended, if its
// function's revision is still current.
func (s *Service) Adopt(ctx context.Context, rec store.EnvRecord) error {
	f, err := s.cfg.Functions.Resolve(ctx, rec.Function, rec.Version)
	if err != nil {
		return err
	}
	if f.RevisionID != rec.Digest {
		return fmt.Errorf("env %s is of revision %s, the function is at %s", rec.ID, rec.Digest, f.RevisionID)
	}
	fn, err := s.schedulerFunction(f, nil)
	if err != nil {
		return err
	}
	if fn.LayerDigests, err = s.layers(ctx, f); err != nil {
		return err
	}
	return s.cfg.Scheduler.Adopt(ctx, fn, rec)
}

// function resolves a name and qualifier to what the scheduler runs. When
// the store tells its configuration's generation, what it resolved is kept
// until the generation changes: a warm call then reads no SQLite.
func (s *Service) function(ctx context.Context, name, qualifier string) (scheduler.Function, error) {
	gens, ok := s.cfg.Functions.(generations)
	if !ok {
		return s.read(ctx, name, qualifier)
	}
	gen := gens.ConfigGeneration()
	if fn, ok := s.resolved.get(gen, name, qualifier); ok {
		return fn, nil
	}
	fn, err := s.read(ctx, name, qualifier)
	if err == nil {
		s.resolved.put(gen, name, qualifier, fn)
	}
	return fn, err
}

// read resolves a name and qualifier from the store.
func (s *Service) read(ctx context.Context, name, qualifier string) (scheduler.Function, error) {
	f, err := s.cfg.Functions.Resolve(ctx, name, qualifier)
	if errors.Is(err, store.ErrNotFound) && s.cfg.Sync != nil {
		// Perhaps made on another host a moment ago: look again once this
		// host has what the shared configuration holds.
		if cerr := s.cfg.Sync.CatchUp(ctx); cerr != nil {
			s.cfg.Log.Warn("catching up with the shared configuration", "function", name, "err", cerr)
		} else {
			f, err = s.cfg.Functions.Resolve(ctx, name, qualifier)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		arn := fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", s.cfg.Region, name)
		if qualifier != "" {
			return scheduler.Function{}, lambdaerr.ResourceNotFound("Function not found: %s:%s", arn, qualifier)
		}
		return scheduler.Function{}, lambdaerr.ResourceNotFound("Function not found: %s", arn)
	}
	if err != nil {
		return scheduler.Function{}, fmt.Errorf("reading function %s: %w", name, err)
	}
	if err := invokable(f); err != nil {
		return scheduler.Function{}, err
	}
	reserved, err := s.cfg.Functions.Concurrency(ctx, name)
	if err != nil {
		return scheduler.Function{}, fmt.Errorf("reading the concurrency of %s: %w", name, err)
	}
	fn, err := s.schedulerFunction(f, reserved)
	if err != nil {
		return scheduler.Function{}, err
	}
	if fn.LayerDigests, err = s.layers(ctx, f); err != nil {
		return scheduler.Function{}, err
	}
	return fn, nil
}
