// Package runtimeapi serves the AWS Lambda Runtime API inside the guest, so
// that unmodified Lambda runtimes (aws-lambda-go's lambda.Start, the
// provided.al2023 custom runtimes) can run a function. One file per endpoint;
// the routes are listed in router.go.
package runtimeapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// MaxResponseBytes is Lambda's limit on a synchronous response.
const MaxResponseBytes = 6291556

// Event is one invocation as the runtime receives it.
type Event struct {
	RequestID       string
	DeadlineMs      int64
	FunctionARN     string
	TraceID         string
	ClientContext   string
	CognitoIdentity string
	Payload         []byte
}

// Invocations is the state behind the API, owned by the agent.
type Invocations interface {
	// Next blocks until an invocation is ready for the runtime; its first
	// call marks the end of init.
	Next(ctx context.Context) (Event, error)
	Respond(requestID string, body []byte) error
	Fail(requestID, errorType string, body []byte) error
	InitFail(errorType string, body []byte) error
	// RestoreNext ends init for a runtime with snapshot hooks and blocks
	// until the environment is restored from a snapshot.
	RestoreNext(ctx context.Context) error
	// RestoreFail reports a failed after-restore hook.
	RestoreFail(errorType string, body []byte) error
	// Streaming says whether the invocation wants its response in chunks;
	// Chunk forwards one (the first carries the content type).
	Streaming(requestID string) bool
	Chunk(requestID, contentType string, b []byte) error
}

var (
	// ErrUnknownRequest is returned for a request id that is not in flight.
	ErrUnknownRequest = errors.New("unknown request id")
	// ErrInvalidState is returned for a call the current phase forbids.
	ErrInvalidState = errors.New("invalid state transition")
)

// Server is the Runtime API's HTTP server.
type Server struct {
	inv   Invocations
	log   *slog.Logger
	table []route
	srv   *httpServer
}

// New returns a Server backed by inv.
func New(inv Invocations, log *slog.Logger) *Server {
	s := &Server{inv: inv, log: log}
	s.table = s.routes()
	// No read or write timeouts: /next must block for as long as the
	// environment waits for work, across freezes and suspends.
	s.srv = &httpServer{handle: s.serve}
	return s
}

// Listen opens the API's listener.
func (s *Server) Listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// Serve serves on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.serve(ln)
	if errors.Is(err, errServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and ends the requests in flight.
func (s *Server) Close() error { return s.srv.close() }
