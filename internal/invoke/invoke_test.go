package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// The invocation path over a real store and a real scheduler, whose VMM is
// the fake one: what is tested here is the path's own logic.

type images struct{ img sandbox.Image }

func (i images) Image(context.Context, string, []string) (sandbox.Image, error) { return i.img, nil }

type records struct {
	mu   sync.Mutex
	recs []meter.Record
}

func (r *records) Invoked(rec meter.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *records) all() []meter.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]meter.Record(nil), r.recs...)
}

type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Writer(string) io.Writer { return l }

func (l *logs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type fixture struct {
	svc   *Service
	store *store.Store
	meter *records
	logs  *logs
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	img := sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")}
	lg := &logs{}
	sched := scheduler.New(scheduler.Config{Sandbox: sandbox.Config{VMM: fakevmm.New(), Dir: filepath.Join(dir, "envs"), Accel: vmm.AccelTCG},
		Images: images{img}, Records: st, Logs: lg, MaxConcurrency: 8})
	t.Cleanup(func() { sched.Shutdown(context.Background()) })
	m := &records{}
	svc := New(Config{Functions: st, Scheduler: sched, Meter: m, Logs: lg})
	return fixture{svc: svc, store: st, meter: m, logs: lg}
}

func (fx fixture) create(t *testing.T, name string) {
	t.Helper()
	f := store.Function{FunctionName: name, Version: "$LATEST", RevisionID: "rev-1", MemorySize: 512, Timeout: 5,
		CodeSha256: "AAAA", IdlePolicy: store.IdlePolicy{KeepWarmSeconds: 60, KeepSuspendedHours: 1}}
	if err := fx.store.CreateFunction(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}

func TestResolveAndRefuse(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	fx.create(t, "f")
	if _, err := fx.store.PublishVersion(ctx, "f", ""); err != nil {
		t.Fatal(err)
	}
	if err := fx.store.PutAlias(ctx, "f", store.Alias{Name: "live", FunctionVersion: "1"}, false); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if err := fx.store.CreateFunction(ctx, store.Function{FunctionName: "throttled", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3}); err != nil {
		t.Fatal(err)
	}
	if err := fx.store.SetConcurrency(ctx, "throttled", &zero); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		req         Request
		wantVersion string
		wantErrType string
	}{
		{"latest", Request{Function: "f"}, "$LATEST", ""},
		{"explicit latest", Request{Function: "f", Qualifier: "$LATEST"}, "$LATEST", ""},
		{"version", Request{Function: "f", Qualifier: "1"}, "1", ""},
		{"alias", Request{Function: "f", Qualifier: "live"}, "1", ""},
		{"dry run", Request{Function: "f", Type: DryRun}, "$LATEST", ""},
		{"unknown function", Request{Function: "nope"}, "", "ResourceNotFoundException"},
		{"unknown version", Request{Function: "f", Qualifier: "7"}, "", "ResourceNotFoundException"},
		{"unknown alias", Request{Function: "f", Qualifier: "gone"}, "", "ResourceNotFoundException"},
		{"bad type", Request{Function: "f", Type: "Later"}, "", "InvalidParameterValueException"},
		{"sync payload over 6 MB", Request{Function: "f", Payload: make([]byte, MaxSyncPayload+1)}, "", "RequestTooLargeException"},
		{"async payload over 1 MB", Request{Function: "f", Type: Event, Payload: make([]byte, MaxAsyncPayload+1)}, "", "RequestTooLargeException"},
		{"reserved concurrency 0", Request{Function: "throttled"}, "", "TooManyRequestsException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := fx.svc.Invoke(ctx, tt.req)
			if tt.wantErrType != "" {
				le, ok := lambdaerr.As(err)
				if !ok || le.Type != tt.wantErrType {
					t.Fatalf("got %v, want %s", err, tt.wantErrType)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Version != tt.wantVersion {
				t.Errorf("version %q, want %q", res.Version, tt.wantVersion)
			}
		})
	}
	// Only the three RequestResponse calls ran; the dry run did not.
	if n := len(fx.meter.all()); n != 4 {
		t.Errorf("%d meter records, want 4 (latest twice, version, alias)", n)
	}
}

// The tail is Lambda's: START, the invocation's output, END and REPORT,
// at most 4 KB, ending with the REPORT line.
func TestLogTail(t *testing.T) {
	fx := newFixture(t)
	fx.create(t, "f")
	ctx := context.Background()
	tests := []struct {
		name      string
		print     string
		wantStart bool
	}{
		{"short output", "hello from the function\n", true},
		{"output past 4 KB", strings.Repeat("x", 10000) + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, _ := json.Marshal(map[string]string{"print": tt.print})
			res, err := fx.svc.Invoke(ctx, Request{Function: "f", Payload: ev})
			if err != nil {
				t.Fatal(err)
			}
			tail := string(res.LogTail)
			if len(tail) > TailBytes {
				t.Errorf("tail is %d bytes, over %d", len(tail), TailBytes)
			}
			start := "START RequestId: " + res.RequestID + " Version: $LATEST\n"
			if strings.HasPrefix(tail, start) != tt.wantStart {
				t.Errorf("tail starts with START: %v, want %v:\n%.200s", !tt.wantStart, tt.wantStart, tail)
			}
			end := "END RequestId: " + res.RequestID + "\nREPORT RequestId: " + res.RequestID + "\t"
			if !strings.Contains(tail, strings.TrimRight(tt.print[len(tt.print)-20:], "\n")+"\n"+end) {
				t.Errorf("tail does not end with the output, END and REPORT:\n%s", tail[max(0, len(tail)-400):])
			}
			if !strings.HasSuffix(tail, "\n") || !strings.Contains(tail[strings.LastIndex(tail, "REPORT"):], "Duration: ") {
				t.Errorf("tail does not end with a REPORT line: %q", tail[max(0, len(tail)-200):])
			}
			// The function's log has the same lines.
			if !strings.Contains(fx.logs.String(), start) || !strings.Contains(fx.logs.String(), end) {
				t.Errorf("function log lacks START/END/REPORT for %s", res.RequestID)
			}
		})
	}
}

// An Event is accepted at once and runs afterwards, metered as any other.
func TestEventRunsLater(t *testing.T) {
	fx := newFixture(t)
	fx.create(t, "f")
	t0 := time.Now()
	res, err := fx.svc.Invoke(context.Background(), Request{Function: "f", Type: Event, Payload: []byte(`{"sleepMs":300}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Payload != nil || res.RequestID == "" {
		t.Errorf("event result %+v: want a request id and no payload", res)
	}
	if n := len(fx.meter.all()); n != 0 || time.Since(t0) > 250*time.Millisecond {
		t.Fatalf("the event ran before the answer (%d records)", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fx.meter.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	recs := fx.meter.all()
	if len(recs) != 1 || recs[0].Function != "f" || recs[0].StartType != "cold" {
		t.Fatalf("records %+v, want one cold record of f", recs)
	}
}

func TestNotFoundIsWrapped(t *testing.T) {
	fx := newFixture(t)
	_, err := fx.svc.Invoke(context.Background(), Request{Function: "missing"})
	if le, ok := lambdaerr.As(err); !ok || le.Status != 404 || !strings.Contains(le.Message, "function:missing") {
		t.Fatalf("got %v", err)
	}
	var th *lambdaerr.Throttled
	if errors.As(err, &th) {
		t.Fatal("a missing function is not a throttle")
	}
}

type fakeQueue struct {
	mu     sync.Mutex
	events []QueuedEvent
	err    error
}

func (q *fakeQueue) Enqueue(_ context.Context, e QueuedEvent) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return q.err
	}
	q.events = append(q.events, e)
	return nil
}

// With a queue, an Event is checked, then handed to the queue and not run
// here; a queue that cannot store it fails the invocation (no 202 for an
// event that would be lost). A RequestResponse with a RequestID (the
// queue's attempt) keeps that id.
func TestEventGoesToTheQueue(t *testing.T) {
	fx := newFixture(t)
	fx.create(t, "f")
	q := &fakeQueue{}
	fx.svc.cfg.Async = q
	ctx := context.Background()
	res, err := fx.svc.Invoke(ctx, Request{Function: "f", Qualifier: "$LATEST", Type: Event, Payload: []byte(`{"a":1}`), TraceID: "t-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := QueuedEvent{RequestID: res.RequestID, Function: "f", Qualifier: "$LATEST", Payload: []byte(`{"a":1}`), TraceID: "t-1"}
	if len(q.events) != 1 || !reflect.DeepEqual(q.events[0], want) || res.RequestID == "" {
		t.Fatalf("queued %+v, want [%+v]", q.events, want)
	}
	if _, err := fx.svc.Invoke(ctx, Request{Function: "missing", Type: Event}); err == nil || len(q.events) != 1 {
		t.Errorf("an event of a missing function: err %v, queued %d", err, len(q.events))
	}
	if _, err := fx.svc.Invoke(ctx, Request{Function: "f", Type: Event, Payload: make([]byte, MaxAsyncPayload+1)}); err == nil || len(q.events) != 1 {
		t.Errorf("an event over 1 MB: err %v, queued %d", err, len(q.events))
	}
	q.err = errors.New("disk full")
	if _, err := fx.svc.Invoke(ctx, Request{Function: "f", Type: Event}); err == nil {
		t.Error("an event the queue could not store was accepted")
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(fx.meter.all()); n != 0 {
		t.Fatalf("%d invocations ran; the queue runs them", n)
	}
	res, err = fx.svc.Invoke(ctx, Request{Function: "f", RequestID: "req-kept", Payload: []byte(`{}`)})
	if err != nil || res.RequestID != "req-kept" {
		t.Fatalf("an attempt with a request id: %+v %v", res, err)
	}
}
