package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/agent/runtimeapi"
	"github.com/hearthdev/hearth/internal/guestproto"
)

// runtimeStats is what the invocation state needs from the process side.
type runtimeStats interface {
	// maxRSSKiB is the runtime's peak resident memory.
	maxRSSKiB() int64
	// flush waits until the function's pending output has been sent and
	// returns how many bytes of this phase were dropped over the limit.
	flush() int64
}

type pending struct {
	guestproto.Invoke
	event []byte
}

// invocations is the Runtime API's state: the invocation waiting for the
// runtime, the one it is handling, and whether its init has finished. It
// implements runtimeapi.Invocations.
type invocations struct {
	out   *guestproto.Writer
	stats runtimeStats
	queue chan *pending

	mu        sync.Mutex
	arn       string
	initStart time.Time
	initDone  bool
	initFail  bool
	exited    bool
	current   *pending
	lastID    string        // the last invocation answered
	restore   chan struct{} // signalled at each restore, for /restore/next
	// restoreErr is the error a failed after-restore hook posted: every
	// invocation after it fails with it, as the environment is not sound.
	restoreErr     []byte
	restoreErrType string
}

func newInvocations(out *guestproto.Writer) *invocations {
	return &invocations{out: out, queue: make(chan *pending, 1), restore: make(chan struct{}, 1)}
}

func (s *invocations) setARN(arn string) {
	s.mu.Lock()
	s.arn = arn
	s.mu.Unlock()
}

func (s *invocations) initStarted(t time.Time) {
	s.mu.Lock()
	s.initStart = t
	s.mu.Unlock()
}

// push queues an invocation from the host. The host sends one at a time.
func (s *invocations) push(iv guestproto.Invoke, event []byte) error {
	select {
	case s.queue <- &pending{Invoke: iv, event: event}:
		return nil
	default:
		return s.out.Write(guestproto.TypeFunctionError, guestproto.Result{RequestID: iv.RequestID, ErrorType: "Runtime.Busy"},
			errorBody("Runtime.Busy", "an invocation is already queued in this environment"))
	}
}

// endInit marks the init phase done and tells the host; it reports whether
// this call was the one that ended it.
func (s *invocations) endInit() (bool, error) {
	s.mu.Lock()
	if s.initDone || s.initFail {
		s.mu.Unlock()
		return false, nil
	}
	s.initDone = true
	initMs := float64(time.Since(s.initStart).Microseconds()) / 1000
	s.mu.Unlock()
	return true, s.out.Write(guestproto.TypeReady, guestproto.Ready{InitMs: initMs}, nil)
}

// RestoreNext ends init, for a runtime that takes part in snapshots, and
// blocks until the environment has been restored from one: the runtime then
// runs its after-restore hooks.
func (s *invocations) RestoreNext(ctx context.Context) error {
	if _, err := s.endInit(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.restore:
		return nil
	}
}

// RestoreFail reports that the runtime's after-restore hooks failed.
func (s *invocations) RestoreFail(errorType string, body []byte) error {
	s.mu.Lock()
	s.restoreErr, s.restoreErrType = body, errorType
	s.mu.Unlock()
	return s.out.Write(guestproto.TypeInitError, guestproto.ErrorInfo{ErrorType: errorType}, body)
}

// restored wakes a runtime waiting in /restore/next.
func (s *invocations) restored() {
	select {
	case s.restore <- struct{}{}:
	default:
	}
}

// Next blocks until there is an invocation for the runtime. Its first call
// ends the init phase.
func (s *invocations) Next(ctx context.Context) (runtimeapi.Event, error) {
	ended, err := s.endInit()
	if err != nil {
		return runtimeapi.Event{}, err
	}
	s.mu.Lock()
	dropped := s.current
	s.current = nil
	if dropped != nil {
		s.lastID = dropped.RequestID
	}
	last := s.lastID
	s.mu.Unlock()
	if dropped != nil {
		// The runtime asked for more work without answering: fail the
		// invocation it dropped rather than leave the caller hanging.
		s.sendError(dropped.RequestID, "Runtime.InvalidResponse", "the runtime asked for the next event without answering this one")
	}
	if !ended {
		// Tell the host the runtime survived its last invocation: after an
		// error it waits for this, or for the exit, before reusing the env.
		// It comes after that error, so the host sees it follow the
		// invocation it waits on.
		_ = s.out.Write(guestproto.TypeIdle, guestproto.Idle{After: last}, nil)
	}
	for {
		var p *pending
		select {
		case <-ctx.Done():
			return runtimeapi.Event{}, ctx.Err()
		case p = <-s.queue:
		}
		s.mu.Lock()
		if s.restoreErr != nil {
			body, typ := s.restoreErr, s.restoreErrType
			s.mu.Unlock()
			_ = s.out.Write(guestproto.TypeFunctionError, guestproto.Result{RequestID: p.RequestID, ErrorType: typ}, body)
			continue
		}
		s.current = p
		arn := s.arn
		s.mu.Unlock()
		if p.FunctionARN != "" {
			arn = p.FunctionARN
		}
		return runtimeapi.Event{
			RequestID:       p.RequestID,
			DeadlineMs:      p.DeadlineMs,
			FunctionARN:     arn,
			TraceID:         p.TraceID,
			ClientContext:   p.ClientContext,
			CognitoIdentity: p.CognitoIdentity,
			Payload:         p.event,
		}, nil
	}
}

// take removes the current invocation if it has the given id.
func (s *invocations) take(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil || s.current.RequestID != id {
		return fmt.Errorf("%w: %s", runtimeapi.ErrUnknownRequest, id)
	}
	s.current = nil
	s.lastID = id
	return nil
}

// Streaming says whether the invocation in progress wants chunks.
func (s *invocations) Streaming(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current != nil && s.current.RequestID == id && s.current.Stream
}

// Chunk forwards part of a streamed response.
func (s *invocations) Chunk(id, contentType string, b []byte) error {
	s.mu.Lock()
	ok := s.current != nil && s.current.RequestID == id
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", runtimeapi.ErrUnknownRequest, id)
	}
	return s.out.Write(guestproto.TypeResponseChunk, guestproto.Chunk{RequestID: id, ContentType: contentType}, b)
}

// Respond delivers a result.
func (s *invocations) Respond(id string, body []byte) error {
	if err := s.take(id); err != nil {
		return err
	}
	return s.out.Write(guestproto.TypeResponse, s.result(id, ""), body)
}

// Fail delivers a function error; body is the error object as posted.
func (s *invocations) Fail(id, errorType string, body []byte) error {
	if err := s.take(id); err != nil {
		return err
	}
	return s.out.Write(guestproto.TypeFunctionError, s.result(id, errorType), body)
}

// InitFail reports that the runtime's init failed.
func (s *invocations) InitFail(errorType string, body []byte) error {
	s.mu.Lock()
	if s.initDone || s.initFail {
		s.mu.Unlock()
		return runtimeapi.ErrInvalidState
	}
	s.initFail = true
	s.mu.Unlock()
	s.flushLogs()
	return s.out.Write(guestproto.TypeInitError, guestproto.ErrorInfo{ErrorType: errorType}, body)
}

func (s *invocations) initFailed(errorType, msg string) error {
	return s.InitFail(errorType, errorBody(errorType, msg))
}

// runtimeExited is called once the runtime process has ended; it fails
// whatever was in progress and tells the host.
func (s *invocations) runtimeExited(status string, code int) {
	s.mu.Lock()
	s.exited = true
	inInit := !s.initDone && !s.initFail
	cur := s.current
	s.current = nil
	s.mu.Unlock()
	msg := "Runtime exited with error: " + status
	if code == 0 {
		msg = "Runtime exited without providing a reason"
	}
	switch {
	case inInit:
		_ = s.initFailed("Runtime.ExitError", msg)
	case cur != nil:
		s.sendError(cur.RequestID, "Runtime.ExitError", fmt.Sprintf("RequestId: %s Error: %s", cur.RequestID, msg))
	}
	_ = s.out.Write(guestproto.TypeExit, guestproto.Exit{Status: status, Code: code}, nil)
}

func (s *invocations) sendError(id, errorType, msg string) {
	_ = s.out.Write(guestproto.TypeFunctionError, s.result(id, errorType), errorBody(errorType, msg))
}

func (s *invocations) result(id, errorType string) guestproto.Result {
	r := guestproto.Result{RequestID: id, ErrorType: errorType}
	if s.stats != nil {
		r.LogDropped = s.stats.flush()
		r.MaxRSSKiB = s.stats.maxRSSKiB()
	}
	return r
}

func (s *invocations) flushLogs() {
	if s.stats != nil {
		s.stats.flush()
	}
}

func errorBody(errorType, msg string) []byte {
	b, _ := json.Marshal(guestproto.ErrorObject{ErrorMessage: msg, ErrorType: errorType})
	return b
}

var _ runtimeapi.Invocations = (*invocations)(nil)
