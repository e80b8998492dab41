package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/spans"
)

// MaxPayloadBytes is Lambda's limit on a synchronous invocation's event.
const MaxPayloadBytes = 6 << 20

// Request is one invocation.
type Request struct {
	// RequestID is generated when empty.
	RequestID     string
	Payload       []byte
	TraceID       string
	ClientContext string
	// Stream, when set, receives the response as the function writes it
	// (Lambda's response streaming); the Result then carries no payload.
	Stream ResponseStream
}

// ResponseStream receives a streamed response. Its calls come from a
// goroutine of their own, one at a time, through a bounded buffer: a
// consumer that takes nothing for Config.StreamStall is abandoned, and
// Invoke then returns while its Write may still be running (it must
// return on its own, at the consumer's own write deadline); no call follows
// an abandoned one.
type ResponseStream interface {
	// Begin is called once, before the first bytes, with the response's
	// content type as the runtime gave it.
	Begin(contentType string)
	io.Writer
}

// Result is what an invocation returned. A function error is a result, not
// a Go error: Lambda answers it with 200 and X-Amz-Function-Error.
type Result struct {
	RequestID string
	// EnvID is the environment that served it.
	EnvID string
	// Payload is the response, or the error object when Error is set.
	Payload []byte
	Error   *guestproto.ErrorObject
	// StartType says how the environment got ready for this invocation;
	// Init is the cold boot's phases (cold), Restore the time to resume or
	// clone (resume, clone).
	StartType StartType
	Init      BootTimings
	Restore   time.Duration
	// Fallback says why a resume became a cold start, if it did.
	Fallback string
	// Duration is from sending the event to receiving the result.
	Duration   time.Duration
	MaxRSSKiB  int64
	LogDropped int64
	// LogTail is the last 4 KB of the invocation's output.
	LogTail []byte
}

// ErrBusy is returned when an environment is asked for a second invocation
// while one runs, or to suspend during one.
var ErrBusy = errors.New("sandbox: environment is busy")

// ErrMachineFailed marks a boot that failed because of the machine, not
// the function: the microVM died or went silent before the function's
// init could report (a guest kernel panicking on a starved vCPU, say). A
// fresh machine may well succeed.
var ErrMachineFailed = errors.New("sandbox: the microVM failed")

// ErrDead is returned for an environment that has stopped.
var ErrDead = errors.New("sandbox: environment has stopped")

// Invoke runs one invocation; a suspended environment is resumed first. It
// enforces the function's timeout, from before the event is sent: past it,
// whether the guest did not read the event or did not answer, the
// environment is killed and the result is Lambda's timeout error. A runtime
// that exits fails the invocation and leaves the environment dead. Lambda's
// limits on the response hold here whatever the guest does.
func (e *Env) Invoke(ctx context.Context, req Request) (*Result, error) {
	if len(req.Payload) > MaxPayloadBytes {
		return nil, lambdaerr.RequestTooLarge("Request must be smaller than %d bytes for the InvokeFunction operation", MaxPayloadBytes)
	}
	switch e.State() {
	case StateSuspended:
		if err := e.resumeOrBoot(ctx); err != nil {
			return nil, err
		}
	case StatePaused:
		if err := e.Unpause(ctx); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	switch e.state {
	case StateBusy, StateBooting:
		e.mu.Unlock()
		return nil, ErrBusy
	case StateDead, StateSuspended:
		e.mu.Unlock()
		return nil, ErrDead
	}
	e.state = StateBusy
	c, g := e.conn, e.guest
	res := &Result{EnvID: e.id, StartType: e.ready.start, Fallback: e.ready.fallback}
	switch res.StartType {
	case StartCold:
		res.Init = e.timings
	case StartResume, StartClone, StartPaused:
		res.Restore = e.ready.restore
	}
	e.ready = readiness{start: StartWarm}
	e.mu.Unlock()
	select {
	case <-c.gone:
		// Its agent channel broke while it waited: its VMM is stopped.
		_ = e.Close(context.Background())
		return nil, ErrDead
	default:
	}
	restoreErr := g.restoreError()
	if restoreErr != nil {
		// Lambda fails such an invocation with a SnapStart error; the
		// environment cannot be trusted after a failed after-restore hook.
		_ = e.Close(context.Background())
		res.Error = restoreErr
		res.Payload = mustJSON(restoreErr)
		return res, nil
	}
	select {
	case <-g.exited:
		// The runtime ended after the last result (as aws-lambda-go does
		// after a panic): this environment is done.
		_ = e.Close(context.Background())
		return nil, ErrDead
	default:
	}

	if req.RequestID == "" {
		req.RequestID = uuid.NewString()
	}
	if len(req.Payload) == 0 {
		req.Payload = []byte("{}")
	}
	res.RequestID = req.RequestID
	e.logs.reset()

	// The invocation's clock runs from here: whatever the guest does from
	// now on, reading the event included, the invocation ends by its
	// deadline.
	start := time.Now()
	deadline := start.Add(e.fn.Timeout)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	c.expect(req.RequestID)
	defer c.expect("")
	var pump *streamPump
	if req.Stream != nil {
		pump = e.stream.begin(req.RequestID, req.Stream, e.cfg.StreamStall, guestproto.MaxStreamBytes)
		defer e.stream.end(pump)
	}
	msg := guestproto.Invoke{
		RequestID: req.RequestID, DeadlineMs: deadline.UnixMilli(), FunctionARN: e.fn.ARN(),
		TraceID: req.TraceID, ClientContext: req.ClientContext, Stream: req.Stream != nil,
	}
	if err := c.send(ctx, deadline, guestproto.TypeInvoke, msg, req.Payload); err != nil {
		_ = e.Close(context.Background())
		switch {
		case errors.Is(err, errGuestDeadline):
			e.timedOut(res, start)
			return res, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: send invocation: %w", e.id, err)
	}
	rec := spans.From(ctx)
	rec.Mark(spans.FrameSent)
	for done := false; !done; {
		results := c.results
		gone := c.gone
		if len(results) > 0 {
			// A result read before the channel broke still stands.
			gone = nil
		}
		select {
		case r := <-results:
			if r.RequestID != req.RequestID {
				continue // a stale answer, to an earlier request
			}
			rec.Mark(spans.FrameReceived)
			done = true
			res.Duration = time.Since(start)
			// What the guest says of itself is bounded by what it can be.
			res.MaxRSSKiB = clamp(r.MaxRSSKiB, 0, int64(e.fn.MemoryMB)<<10)
			res.LogDropped = clamp(r.LogDropped, 0, maxLogDropped)
			res.Payload = r.frame.Body
			if r.frame.Type == guestproto.TypeFunctionError {
				res.Error = errorObject(printable(r.ErrorType, maxErrorType), r.frame.Body)
				res.Payload = mustJSON(res.Error)
				// A runtime may exit right after reporting an error
				// (aws-lambda-go does after a panic, or when its response
				// was refused): wait until it asks for more work or ends.
				e.awaitIdle(req.RequestID, c, g)
			}
			if len(r.frame.Body) > guestproto.MaxResponseBytes {
				responseTooLarge(res, guestproto.MaxResponseBytes)
			}
			e.setState(StateReady)
			select {
			case <-c.gone:
				// The channel broke after the result: the VMM is stopped.
				_ = e.Close(context.Background())
			default:
			}
		case <-g.exited:
			done = true
			res.Duration = time.Since(start)
			// The agent reports the exit after the error it caused; take it.
			res.Error = &guestproto.ErrorObject{ErrorType: "Runtime.ExitError",
				ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", req.RequestID, g.status())}
			select {
			case r := <-c.results:
				if r.RequestID == req.RequestID {
					res.Error = errorObject(printable(r.ErrorType, maxErrorType), r.frame.Body)
				}
			case <-time.After(100 * time.Millisecond):
			}
			res.Payload = mustJSON(res.Error)
			_ = e.Close(context.Background())
		case <-gone:
			if len(c.results) > 0 {
				continue // a result came in just before
			}
			done = true
			res.Duration = time.Since(start)
			var tl *guestproto.TooLargeError
			if errors.As(c.err(), &tl) && (tl.Type == guestproto.TypeResponse || tl.Type == guestproto.TypeFunctionError) {
				// The guest tried to send a response over Lambda's limit.
				responseTooLarge(res, guestproto.MaxResponseBytes)
			} else {
				// The console is the guest's to write: it goes to the
				// host's log, never to the caller.
				e.cfg.Log.Warn("the microVM stopped during an invocation", "env", e.id, "request", req.RequestID, "console", e.consoleTail())
				res.Error = &guestproto.ErrorObject{ErrorType: "Runtime.ExitError",
					ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: the microVM stopped", req.RequestID)}
				res.Payload = mustJSON(res.Error)
			}
			_ = e.Close(context.Background())
		case <-timer.C:
			_ = e.Close(context.Background())
			e.timedOut(res, start)
			done = true
		case <-ctx.Done():
			// The caller went away: the invocation's state is unknown, so
			// the environment cannot be reused.
			_ = e.Close(context.Background())
			return nil, ctx.Err()
		}
	}
	if pump != nil {
		e.stream.end(pump)
		tooLarge, abandoned := pump.state()
		if tooLarge {
			responseTooLarge(res, guestproto.MaxStreamBytes)
		}
		if abandoned {
			e.log.Warn("streamed response abandoned: its consumer took nothing", "request", req.RequestID, "stall", e.cfg.StreamStall)
		}
	}
	res.LogDropped += e.logs.droppedBytes()
	res.LogTail = e.logs.last()
	return res, nil
}

// maxLogDropped bounds the dropped output a guest may report: more than a
// function could write at full speed for Lambda's longest timeout.
const maxLogDropped = 1 << 40

// maxErrorType bounds an error type a guest names in a frame's header.
const maxErrorType = 256

func clamp(v, lo, hi int64) int64 { return min(max(v, lo), hi) }

// timedOut makes res Lambda's timeout error.
func (e *Env) timedOut(res *Result, start time.Time) {
	res.Duration = time.Since(start)
	res.Error = &guestproto.ErrorObject{ErrorType: "Sandbox.Timedout",
		ErrorMessage: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", res.RequestID, e.fn.Timeout.Seconds())}
	res.Payload = mustJSON(res.Error)
}

// responseTooLarge makes res Lambda's error for a response over limit.
func responseTooLarge(res *Result, limit int) {
	res.Error = &guestproto.ErrorObject{ErrorType: "Function.ResponseSizeTooLarge",
		ErrorMessage: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", limit)}
	res.Payload = mustJSON(res.Error)
}

// awaitIdle waits until the runtime asks for work after request id, or
// exits (the environment is then closed), for a few seconds at most.
func (e *Env) awaitIdle(id string, c *conn, g *guest) {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case after := <-c.idle:
			if after == id {
				return
			}
		case <-g.exited:
			_ = e.Close(context.Background())
			return
		case <-c.gone:
			_ = e.Close(context.Background())
			return
		case <-timeout:
			return
		}
	}
}

// errorObject reads an error body, keeping Lambda's shape even when a
// runtime posted something else.
func errorObject(errType string, body []byte) *guestproto.ErrorObject {
	var o guestproto.ErrorObject
	if jsonUnmarshal(body, &o) != nil || (o.ErrorMessage == "" && o.ErrorType == "") {
		o = guestproto.ErrorObject{ErrorMessage: string(body)}
	}
	if o.ErrorType == "" {
		o.ErrorType = errType
	}
	return &o
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
