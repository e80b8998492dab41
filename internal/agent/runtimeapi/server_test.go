package runtimeapi

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
)

// fakeInvocations records what the API passes down; it is the no-op twin of
// the agent's invocation state.
type fakeInvocations struct {
	mu         sync.Mutex
	event      Event
	nextErr    error
	stream     bool // the invocation in flight wants chunks
	chunks     []chunk
	responses  map[string]string
	failures   map[string]string // id → error type and body
	initType   string
	initBody   string
	restoreErr error
	restored   chan struct{} // RestoreNext waits on it when not nil
}

type chunk struct {
	contentType string
	n           int
	body        string // kept for small chunks only
}

func (f *fakeInvocations) Next(ctx context.Context) (Event, error) {
	if f.nextErr != nil {
		return Event{}, f.nextErr
	}
	return f.event, nil
}

func (f *fakeInvocations) Respond(id string, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.event.RequestID {
		return ErrUnknownRequest
	}
	f.responses[id] = string(body)
	return nil
}

func (f *fakeInvocations) Fail(id, errType string, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.event.RequestID {
		return ErrUnknownRequest
	}
	f.failures[id] = errType + " " + string(body)
	return nil
}

func (f *fakeInvocations) InitFail(errType string, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.initType != "" {
		return ErrInvalidState
	}
	f.initType, f.initBody = errType, string(body)
	return nil
}

func (f *fakeInvocations) RestoreNext(ctx context.Context) error {
	if f.restoreErr != nil {
		return f.restoreErr
	}
	if f.restored == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.restored:
		return nil
	}
}

func (f *fakeInvocations) RestoreFail(errType string, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initType, f.initBody = "restore:"+errType, string(body)
	return nil
}

func (f *fakeInvocations) Streaming(id string) bool { return f.stream && id == f.event.RequestID }

func (f *fakeInvocations) Chunk(id, contentType string, b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != f.event.RequestID {
		return ErrUnknownRequest
	}
	c := chunk{contentType: contentType, n: len(b)}
	if len(b) <= 64<<10 {
		c.body = string(b)
	}
	f.chunks = append(f.chunks, c)
	return nil
}

func newTestServer(t *testing.T) (*fakeInvocations, *testServer) {
	inv := &fakeInvocations{
		event: Event{RequestID: "req-1", DeadlineMs: 1700000000123, FunctionARN: "arn:aws:lambda:local:000000000000:function:f",
			TraceID: "Root=1-abc", Payload: []byte(`{"k":"v"}`)},
		responses: map[string]string{}, failures: map[string]string{},
	}
	return inv, newServerFor(t, inv)
}

// testServer is a Server on a loopback port, reached with net/http's
// client: the API's own HTTP is tested against the client runtimes use.
type testServer struct {
	URL string
	srv *Server
}

func (ts *testServer) Close() { _ = ts.srv.Close() }

// newServerFor serves the API over inv on a loopback port.
func newServerFor(t *testing.T, inv Invocations) *testServer {
	srv := New(inv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{URL: "http://" + ln.Addr().String(), srv: srv}
}
