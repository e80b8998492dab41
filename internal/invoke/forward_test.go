package invoke

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// fakeForwarder answers as another host would, or says run here.
type fakeForwarder struct {
	mu        sync.Mutex
	calls     []Request
	forwarded bool
	err       error
}

func (f *fakeForwarder) Forward(_ context.Context, fn scheduler.Function, requestID string, req Request) (*Result, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if !f.forwarded {
		return nil, false, nil
	}
	if f.err != nil {
		return nil, true, f.err
	}
	return &Result{RequestID: requestID, Version: fn.Version, Payload: []byte(`"elsewhere"`), Node: "b"}, true, nil
}

// The forwarder is asked about every RequestResponse that may run
// elsewhere (not one forwarded here, not an event the queue keeps); what
// it forwards is its answer and runs nothing here, what it declines runs
// here and is metered here.
func TestForwarder(t *testing.T) {
	tests := []struct {
		name        string
		req         Request
		forwarded   bool
		fwdErr      error
		wantAsked   bool
		wantNode    string
		wantErr     bool
		wantMetered int
	}{
		{"forwarded", Request{Function: "f"}, true, nil, true, "b", false, 0},
		{"declined: runs here", Request{Function: "f"}, false, nil, true, "a", false, 1},
		{"forwarded here: never again", Request{Function: "f", NoForward: true}, true, nil, false, "a", false, 1},
		{"an event goes to the queue", Request{Function: "f", Type: Event}, true, nil, false, "", false, 0},
		{"a dry run only checks", Request{Function: "f", Type: DryRun}, true, nil, false, "", false, 0},
		{"the other host's error", Request{Function: "f"}, true, lambdaerr.Service("boom"), true, "", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.create(t, "f")
			fwd := &fakeForwarder{forwarded: tt.forwarded, err: tt.fwdErr}
			fx.svc.cfg.Forwarder = fwd
			fx.svc.cfg.Node = "a"
			fx.svc.cfg.Async = &fakeQueue{}
			res, err := fx.svc.Invoke(context.Background(), tt.req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if asked := len(fwd.calls) > 0; asked != tt.wantAsked {
				t.Errorf("forwarder asked: %v, want %v", asked, tt.wantAsked)
			}
			if err == nil && res.Node != tt.wantNode {
				t.Errorf("ran on %q, want %q", res.Node, tt.wantNode)
			}
			if n := len(fx.meter.all()); n != tt.wantMetered {
				t.Errorf("%d meter records here, want %d", n, tt.wantMetered)
			}
		})
	}
}

// catchUp stands for the configuration log: catching up applies the
// function another host created.
type catchUp struct {
	st    *store.Store
	calls int
	err   error
}

func (c *catchUp) CatchUp(ctx context.Context) error {
	c.calls++
	if c.err != nil {
		return c.err
	}
	return c.st.CreateFunction(ctx, store.Function{FunctionName: "late", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3})
}

// A function this host does not know yet is looked up again after
// catching up with the shared configuration; a function it knows costs
// no catch-up, and one that does not exist anywhere is still not found.
func TestNotFoundCatchesUp(t *testing.T) {
	tests := []struct {
		name      string
		function  string
		syncErr   error
		wantErr   bool
		wantCalls int
	}{
		{"created elsewhere a moment ago", "late", nil, false, 1},
		{"known here", "f", nil, false, 0},
		{"nowhere", "nope", nil, true, 1},
		{"the log unreachable", "late", errors.New("no quorum"), true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.create(t, "f")
			cu := &catchUp{st: fx.store, err: tt.syncErr}
			fx.svc.cfg.Sync = cu
			_, err := fx.svc.Invoke(context.Background(), Request{Function: tt.function})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if le, ok := lambdaerr.As(err); tt.wantErr && (!ok || le.Status != 404) {
				t.Errorf("got %v, want a 404", err)
			}
			if cu.calls != tt.wantCalls {
				t.Errorf("%d catch-ups, want %d", cu.calls, tt.wantCalls)
			}
		})
	}
}
