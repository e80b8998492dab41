package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// host is a HostStatus for placement tests: up, compatible, of this
// protocol, with fn's environments as given.
func host(node string, inFlight, memMB, limitMB int, fn cluster.FunctionLoad) cluster.HostStatus {
	h := cluster.HostStatus{Host: cluster.Host{Node: node, Protocol: cluster.Protocol, Load: cluster.Load{InFlight: inFlight,
		MemoryMB: memMB, MemoryLimitMB: limitMB}}, State: cluster.StateUp, Compatible: true}
	if fn != (cluster.FunctionLoad{}) {
		h.Load.Functions = map[string]cluster.FunctionLoad{"f": fn}
	}
	return h
}

func with(h cluster.HostStatus, change func(*cluster.HostStatus)) cluster.HostStatus {
	change(&h)
	return h
}

var (
	none      = cluster.FunctionLoad{}
	warm      = cluster.FunctionLoad{Warm: 1}
	paused    = cluster.FunctionLoad{Paused: 1}
	suspended = cluster.FunctionLoad{Suspended: 1}
	busy      = cluster.FunctionLoad{Busy: 1}
)

func TestPlace(t *testing.T) {
	tests := []struct {
		name  string
		hosts []cluster.HostStatus
		want  string
	}{
		{"alone", []cluster.HostStatus{host("a", 0, 0, 1000, none)}, "a"},
		{"nothing anywhere: here", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 0, 0, 1000, none)}, "a"},
		{"warm there", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 3, 500, 1000, warm)}, "b"},
		{"warm here and there: here", []cluster.HostStatus{host("a", 5, 900, 1000, warm), host("b", 0, 0, 1000, warm)}, "a"},
		{"warm beats paused here", []cluster.HostStatus{host("a", 0, 0, 1000, paused), host("b", 0, 0, 1000, warm)}, "b"},
		{"paused beats suspended here", []cluster.HostStatus{host("a", 0, 0, 1000, suspended), host("b", 0, 0, 1000, paused)}, "b"},
		{"suspended there beats a cold start here", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("c", 0, 0, 1000, suspended)}, "c"},
		{"busy there: likely free when the call arrives", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 1, 0, 1000, busy)}, "b"},
		{"busy here beats suspended there", []cluster.HostStatus{host("a", 1, 0, 1000, busy), host("b", 0, 0, 1000, suspended)}, "a"},
		{"paused there beats busy here", []cluster.HostStatus{host("a", 1, 0, 1000, busy), host("b", 0, 0, 1000, paused)}, "b"},
		{"the most warm ones", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 0, 0, 1000, warm),
			host("c", 0, 0, 1000, cluster.FunctionLoad{Warm: 2})}, "c"},
		{"warm on two: the less loaded", []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 4, 0, 1000, warm),
			host("c", 1, 0, 1000, warm)}, "c"},
		{"cold: the fewest in flight", []cluster.HostStatus{host("a", 3, 0, 1000, none), host("b", 1, 0, 1000, none),
			host("c", 2, 0, 1000, none)}, "b"},
		{"cold: the least memory committed", []cluster.HostStatus{host("a", 0, 800, 1000, none), host("b", 0, 200, 1000, none)}, "b"},
		{"cold: memory within 5% is a tie, here", []cluster.HostStatus{host("a", 0, 520, 1000, none), host("b", 0, 500, 1000, none)}, "a"},
		{"cold: no room here", []cluster.HostStatus{host("a", 0, 950, 1000, none), host("b", 2, 0, 1000, none)}, "b"},
		{"cold: room nowhere, the least loaded", []cluster.HostStatus{host("a", 3, 950, 1000, none), host("b", 1, 990, 1000, none)}, "b"},
		{"cold: an unbounded host has room", []cluster.HostStatus{host("a", 1, 950, 1000, none), host("b", 0, 5000, -1, none)}, "b"},
		{"down: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.State = cluster.StateDown })}, "a"},
		{"unknown state: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.State = cluster.StateUnknown })}, "a"},
		{"stopped: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.Stopped = true })}, "a"},
		{"draining: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.Draining = true })}, "a"},
		{"drain requested, not obeyed yet: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.DrainRequested = true })}, "a"},
		{"an old protocol that takes no forwarded call: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.Protocol = 1 })}, "a"},
		{"incompatible: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.Compatible = false })}, "a"},
		{"drained here, warm here: here", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.Draining = true }), host("b", 0, 0, 1000, none)}, "a"},
		{"drained here, a cold start: there", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, none), func(h *cluster.HostStatus) { h.Draining = true }), host("b", 9, 900, 1000, none)}, "b"},
		{"ties elsewhere: by name", []cluster.HostStatus{
			with(host("a", 5, 0, 1000, none), func(h *cluster.HostStatus) { h.Draining = true }),
			host("c", 0, 0, 1000, none), host("b", 0, 0, 1000, none)}, "b"},
		{"drained here, nowhere else: here", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, none), func(h *cluster.HostStatus) { h.Draining = true })}, "a"},
		{"stopping here, a cold start: there", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, none), func(h *cluster.HostStatus) { h.State = cluster.StateStopping }), host("b", 9, 900, 1000, none)}, "b"},
		{"stopping here, warm here: here", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.State = cluster.StateStopping }), host("b", 0, 0, 1000, none)}, "a"},
		{"stopping here, nowhere else: here", []cluster.HostStatus{
			with(host("a", 0, 0, 1000, none), func(h *cluster.HostStatus) { h.State = cluster.StateStopping })}, "a"},
		{"stopping there: never", []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(host("b", 0, 0, 1000, warm), func(h *cluster.HostStatus) { h.State = cluster.StateStopping })}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := place("a", tt.hosts, want{Function: "f", MemoryMB: 128, Code: "c0de"}); got != tt.want {
				t.Errorf("placed on %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeHosts is the membership as a test sets it.
type fakeHosts struct {
	mu    sync.Mutex
	hosts []cluster.HostStatus
}

func (f *fakeHosts) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cluster.Status{Hosts: append([]cluster.HostStatus(nil), f.hosts...)}
}

// idleScheduler is a host with no environment.
type idleScheduler struct{}

func (idleScheduler) Stats() scheduler.Stats                      { return scheduler.Stats{} }
func (idleScheduler) StatsByFunction() map[string]scheduler.Stats { return nil }
func (idleScheduler) Usage() scheduler.Usage {
	return scheduler.Usage{Limits: scheduler.Limits{MaxMemoryMB: 1000}}
}

// Two routers on one NATS (a standalone embedded broker, whose
// max_payload is 1 MB): a calls what b serves, with b's host warm in a's
// view.
type routePair struct {
	a, b     *router
	invoked  chan invoke.Request
	answer   func(invoke.Request) (*invoke.Result, error)
	bApplied atomic.Uint64
}

func newRoutePair(t *testing.T) *routePair {
	t.Helper()
	ctx := context.Background()
	br, err := broker.New(ctx, broker.Config{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Shutdown(context.Background()) })
	view := &fakeHosts{hosts: []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 0, 0, 1000, warm)}}
	p := &routePair{invoked: make(chan invoke.Request, 10)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p.a = &router{node: "a", nc: br.Conn(), hosts: view, local: idleScheduler{}, applied: func() uint64 { return 7 }, log: log}
	p.b = &router{node: "b", nc: br.Conn(), hosts: view, local: idleScheduler{}, applied: p.bApplied.Load, log: log,
		invoke: func(_ context.Context, req invoke.Request) (*invoke.Result, error) {
			p.invoked <- req
			return p.answer(req)
		}}
	p.bApplied.Store(7)
	if err := p.a.start(); err != nil {
		t.Fatal(err)
	}
	if err := p.b.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.b.stop)
	t.Cleanup(p.a.stop)
	return p
}

func (p *routePair) forward(t *testing.T, payload []byte) (*invoke.Result, bool, error) {
	t.Helper()
	fn := scheduler.Function{Function: sandbox.Function{Name: "f", MemoryMB: 128, Timeout: 10 * time.Second}}
	return p.a.Forward(context.Background(), fn, "req-1", invoke.Request{Function: "f", Qualifier: "live", Payload: payload,
		ClientContext: "cc", TraceID: "tr"})
}

// A call forwarded over NATS arrives whole at the other host's invocation
// path, marked never to be forwarded again, and its answer comes back
// whole: payloads past the server's 1 MB max_payload go in parts; the
// function's error, the log tail and the start type come back too.
func TestForwardRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"small", 20},
		{"6 MB both ways", invoke.MaxSyncPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newRoutePair(t)
			payload := bytes.Repeat([]byte("x"), tt.size)
			p.answer = func(req invoke.Request) (*invoke.Result, error) {
				return &invoke.Result{RequestID: req.RequestID, Version: "3", Payload: bytes.ToUpper(req.Payload),
					Error: &guestproto.ErrorObject{ErrorType: "Oops", ErrorMessage: "m"}, StartType: sandbox.StartWarm,
					LogTail: []byte("START\nEND\n"), Node: "b"}, nil
			}
			res, forwarded, err := p.forward(t, payload)
			if err != nil || !forwarded {
				t.Fatalf("forwarded %v, err %v", forwarded, err)
			}
			got := <-p.invoked
			if !got.NoForward || got.Function != "f" || got.Qualifier != "live" || got.RequestID != "req-1" ||
				got.ClientContext != "cc" || got.TraceID != "tr" || !bytes.Equal(got.Payload, payload) {
				t.Errorf("b was asked %+v (payload %d bytes)", got, len(got.Payload))
			}
			if res.Node != "b" || res.Version != "3" || res.RequestID != "req-1" || res.StartType != sandbox.StartWarm ||
				res.Error == nil || res.Error.ErrorType != "Oops" || string(res.LogTail) != "START\nEND\n" ||
				!bytes.Equal(res.Payload, bytes.ToUpper(payload)) {
				t.Errorf("answer %+v (payload %d bytes)", res, len(res.Payload))
			}
		})
	}
}

// What the other host answers decides what the caller does: a platform
// error comes back as it was (Lambda's shape kept); a throttle there ran
// nothing, so the call runs here; a host that takes no call (it stopped
// listening) is run here at once.
func TestForwardOutcomes(t *testing.T) {
	tests := []struct {
		name          string
		answer        error
		bStopped      bool
		wantForwarded bool
		wantType      string
	}{
		{"not found there", lambdaerr.ResourceNotFound("Function not found: f"), false, true, "ResourceNotFoundException"},
		{"a host failure there", errors.New("boot failed"), false, true, ""},
		{"throttled there: here", lambdaerr.TooManyRequests(ErrDrainingReason, "drained"), false, false, ""},
		{"nobody listens: here", nil, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newRoutePair(t)
			p.answer = func(invoke.Request) (*invoke.Result, error) { return nil, tt.answer }
			if tt.bStopped {
				p.b.stop()
			}
			t0 := time.Now()
			_, forwarded, err := p.forward(t, []byte(`{}`))
			if forwarded != tt.wantForwarded {
				t.Fatalf("forwarded %v, want %v (err %v)", forwarded, tt.wantForwarded, err)
			}
			if tt.bStopped && time.Since(t0) > time.Second {
				t.Errorf("%s to learn that nobody listens", time.Since(t0))
			}
			if !forwarded {
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			le, ok := lambdaerr.As(err)
			if tt.wantType != "" && (!ok || le.Type != tt.wantType || le.Status != 404) {
				t.Errorf("got %v, want %s", err, tt.wantType)
			}
			if tt.wantType == "" && ok {
				t.Errorf("got a Lambda error %v for a host failure", err)
			}
		})
	}
}

// A host runs a forwarded call only once it has applied the configuration
// the caller had: a function created on the caller a moment ago is there.
func TestForwardWaitsForTheConfiguration(t *testing.T) {
	p := newRoutePair(t)
	p.bApplied.Store(5) // the caller has 7
	var ranAt atomic.Int64
	p.answer = func(req invoke.Request) (*invoke.Result, error) {
		ranAt.Store(int64(p.bApplied.Load()))
		return &invoke.Result{RequestID: req.RequestID}, nil
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		p.bApplied.Store(7)
	}()
	if _, forwarded, err := p.forward(t, nil); err != nil || !forwarded {
		t.Fatalf("forwarded %v, err %v", forwarded, err)
	}
	if got := ranAt.Load(); got != 7 {
		t.Errorf("ran with configuration %d applied, want 7", got)
	}
}

// A warm environment here is used without asking anyone.
func TestForwardWarmHereStays(t *testing.T) {
	p := newRoutePair(t)
	p.a.local = warmScheduler{}
	p.answer = func(req invoke.Request) (*invoke.Result, error) { return &invoke.Result{}, nil }
	if _, forwarded, err := p.forward(t, nil); forwarded || err != nil {
		t.Fatalf("forwarded %v, err %v", forwarded, err)
	}
	select {
	case <-p.invoked:
		t.Error("b ran it")
	default:
	}
}

type warmScheduler struct{ idleScheduler }

func (warmScheduler) StatsByFunction() map[string]scheduler.Stats {
	return map[string]scheduler.Stats{"f": {Warm: 1}}
}

type countingLog struct {
	last  uint64
	err   error
	reads atomic.Int32
}

func (l *countingLog) Last(context.Context) (uint64, error) {
	l.reads.Add(1)
	return l.last, l.err
}

// Catching up waits until this host has applied the log's last entry; a
// log that cannot be read is an error; reads close together share one.
func TestConfigSyncCatchUp(t *testing.T) {
	var applied atomic.Uint64
	applied.Store(3)
	log := &countingLog{last: 5}
	c := &configSync{log: log, applied: applied.Load}
	go func() {
		time.Sleep(50 * time.Millisecond)
		applied.Store(5)
	}()
	if err := c.CatchUp(context.Background()); err != nil || applied.Load() < 5 {
		t.Fatalf("caught up with %d applied: %v", applied.Load(), err)
	}
	if err := c.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := log.reads.Load(); n > 2 {
		t.Errorf("%d reads of the log", n)
	}
	bad := &configSync{log: &countingLog{err: errors.New("no quorum")}, applied: applied.Load}
	if err := bad.CatchUp(context.Background()); err == nil {
		t.Error("no error from an unreadable log")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	behind := &configSync{log: &countingLog{last: 9}, applied: applied.Load}
	if err := behind.CatchUp(ctx); err == nil {
		t.Error("caught up with an entry never applied")
	}
}
