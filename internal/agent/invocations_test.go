package agent

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/agent/runtimeapi"
	"github.com/hearthdev/hearth/internal/guestproto"
)

// fakeStats stands for the process side: a peak RSS and dropped log bytes.
type fakeStats struct{ flushes int }

func (f *fakeStats) maxRSSKiB() int64 { return 2048 }
func (f *fakeStats) flush() int64     { f.flushes++; return 5 }

func newTestInvocations() (*invocations, *frameLog, *fakeStats) {
	l := &frameLog{}
	s := newInvocations(guestproto.NewWriter(l))
	st := &fakeStats{}
	s.stats = st
	s.setARN("arn:aws:lambda:local:000000000000:function:f")
	s.initStarted(time.Now())
	return s, l, st
}

func invoke(id string) guestproto.Invoke {
	return guestproto.Invoke{RequestID: id, DeadlineMs: 1700000000000}
}

// next is the runtime's GET /next, with a deadline so a test cannot hang.
func next(t *testing.T, s *invocations) runtimeapi.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

func mustPush(t *testing.T, s *invocations, iv guestproto.Invoke, event string) {
	t.Helper()
	if err := s.push(iv, []byte(event)); err != nil {
		t.Fatal(err)
	}
}

// wantFrame is a frame the host should see; an empty header or body is not
// compared.
type wantFrame struct {
	typ    guestproto.Type
	header string
	body   string
}

func errObj(typ, msg string) string {
	return string(errorBody(typ, msg))
}

// The invocation bookkeeping, step by step as a runtime drives it, and the
// frames the host sees.
func TestInvocations(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *invocations)
		want []wantFrame
	}{
		{"response", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{"k":1}`)
			ev := next(t, s)
			if ev.RequestID != "req-1" || string(ev.Payload) != `{"k":1}` || ev.DeadlineMs != 1700000000000 {
				t.Errorf("event %+v", ev)
			}
			if err := s.Respond("req-1", []byte(`"ok"`)); err != nil {
				t.Fatal(err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}, {guestproto.TypeResponse, `{"requestId":"req-1","maxRssKiB":2048,"logDropped":5}`, `"ok"`}}},

		{"function error", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			if err := s.Fail("req-1", "MyError", []byte(`{"errorMessage":"boom","errorType":"MyError"}`)); err != nil {
				t.Fatal(err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady},
			{guestproto.TypeFunctionError, `{"requestId":"req-1","errorType":"MyError","maxRssKiB":2048,"logDropped":5}`, `{"errorMessage":"boom","errorType":"MyError"}`}}},

		{"wrong request id, then the right one", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			for _, err := range []error{s.Respond("req-0", nil), s.Fail("req-0", "E", nil), s.Chunk("req-0", "", []byte("x"))} {
				if !errors.Is(err, runtimeapi.ErrUnknownRequest) {
					t.Errorf("wrong id: %v, want ErrUnknownRequest", err)
				}
			}
			if err := s.Respond("req-1", []byte(`1`)); err != nil {
				t.Fatal(err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}, {typ: guestproto.TypeResponse, body: `1`}}},

		{"answered twice", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			if err := s.Respond("req-1", []byte(`1`)); err != nil {
				t.Fatal(err)
			}
			if err := s.Fail("req-1", "E", nil); !errors.Is(err, runtimeapi.ErrUnknownRequest) {
				t.Errorf("second answer: %v, want ErrUnknownRequest", err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}, {typ: guestproto.TypeResponse, body: `1`}}},

		{"answered before any invocation", func(t *testing.T, s *invocations) {
			if err := s.Respond("req-1", nil); !errors.Is(err, runtimeapi.ErrUnknownRequest) {
				t.Errorf("answer with nothing in flight: %v", err)
			}
		}, nil},

		{"idle after each answer", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			_ = s.Respond("req-1", []byte(`1`))
			mustPush(t, s, invoke("req-2"), `{}`)
			if ev := next(t, s); ev.RequestID != "req-2" {
				t.Errorf("second event %q", ev.RequestID)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}, {typ: guestproto.TypeResponse}, {guestproto.TypeIdle, `{"after":"req-1"}`, ""}}},

		// The host waits for Idle after the invocation that failed: it must
		// follow that error and name it.
		{"next without answering", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			mustPush(t, s, invoke("req-2"), `{}`)
			if ev := next(t, s); ev.RequestID != "req-2" {
				t.Errorf("second event %q", ev.RequestID)
			}
		}, []wantFrame{{typ: guestproto.TypeReady},
			{guestproto.TypeFunctionError, `{"requestId":"req-1","errorType":"Runtime.InvalidResponse","maxRssKiB":2048,"logDropped":5}`,
				errObj("Runtime.InvalidResponse", "the runtime asked for the next event without answering this one")},
			{guestproto.TypeIdle, `{"after":"req-1"}`, ""}}},

		{"a second invocation while one is queued", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			mustPush(t, s, invoke("req-2"), `{}`)
		}, []wantFrame{{guestproto.TypeFunctionError, `{"requestId":"req-2","errorType":"Runtime.Busy","maxRssKiB":0}`,
			errObj("Runtime.Busy", "an invocation is already queued in this environment")}}},

		{"function ARN: the invocation's wins over the init's", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			if ev := next(t, s); ev.FunctionARN != "arn:aws:lambda:local:000000000000:function:f" {
				t.Errorf("ARN %q, want the init's", ev.FunctionARN)
			}
			_ = s.Respond("req-1", nil)
			iv := invoke("req-2")
			iv.FunctionARN, iv.TraceID, iv.ClientContext, iv.CognitoIdentity = "arn:aws:lambda:local:000000000000:function:f:live", "Root=1", "cc", "ci"
			mustPush(t, s, iv, `{}`)
			ev := next(t, s)
			if ev.FunctionARN != iv.FunctionARN || ev.TraceID != "Root=1" || ev.ClientContext != "cc" || ev.CognitoIdentity != "ci" {
				t.Errorf("event %+v", ev)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}, {typ: guestproto.TypeResponse}, {typ: guestproto.TypeIdle}}},

		{"streamed response", func(t *testing.T, s *invocations) {
			iv := invoke("req-1")
			iv.Stream = true
			mustPush(t, s, iv, `{}`)
			if s.Streaming("req-1") {
				t.Error("streaming before the runtime took the invocation")
			}
			next(t, s)
			if !s.Streaming("req-1") || s.Streaming("req-0") {
				t.Errorf("Streaming: req-1 %v, req-0 %v", s.Streaming("req-1"), s.Streaming("req-0"))
			}
			_ = s.Chunk("req-1", "text/plain", []byte("a"))
			_ = s.Chunk("req-1", "", []byte("b"))
			_ = s.Respond("req-1", nil)
			if s.Streaming("req-1") {
				t.Error("still streaming after the response")
			}
		}, []wantFrame{{typ: guestproto.TypeReady},
			{guestproto.TypeResponseChunk, `{"requestId":"req-1","contentType":"text/plain"}`, "a"},
			{guestproto.TypeResponseChunk, `{"requestId":"req-1"}`, "b"},
			{guestproto.TypeResponse, `{"requestId":"req-1","maxRssKiB":2048,"logDropped":5}`, ""}}},

		{"init error", func(t *testing.T, s *invocations) {
			if err := s.InitFail("Runtime.ConfigError", []byte(`{"errorMessage":"x","errorType":"Runtime.ConfigError"}`)); err != nil {
				t.Fatal(err)
			}
			if err := s.InitFail("Again", nil); !errors.Is(err, runtimeapi.ErrInvalidState) {
				t.Errorf("second init error: %v, want ErrInvalidState", err)
			}
		}, []wantFrame{{guestproto.TypeInitError, `{"errorType":"Runtime.ConfigError"}`, `{"errorMessage":"x","errorType":"Runtime.ConfigError"}`}}},

		{"init error after init", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			if err := s.InitFail("Late", nil); !errors.Is(err, runtimeapi.ErrInvalidState) {
				t.Errorf("init error after init: %v, want ErrInvalidState", err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}}},

		{"no bootstrap", func(t *testing.T, s *invocations) {
			_ = s.initFailed("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)")
		}, []wantFrame{{guestproto.TypeInitError, `{"errorType":"Runtime.InvalidEntrypoint"}`, errObj("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)")}}},

		{"runtime exits during init", func(t *testing.T, s *invocations) {
			s.runtimeExited("exit status 2", 2)
		}, []wantFrame{{guestproto.TypeInitError, `{"errorType":"Runtime.ExitError"}`, errObj("Runtime.ExitError", "Runtime exited with error: exit status 2")},
			{guestproto.TypeExit, `{"status":"exit status 2","code":2}`, ""}}},

		{"runtime exits during init, status 0", func(t *testing.T, s *invocations) {
			s.runtimeExited("exit status 0", 0)
		}, []wantFrame{{guestproto.TypeInitError, "", errObj("Runtime.ExitError", "Runtime exited without providing a reason")},
			{guestproto.TypeExit, `{"status":"exit status 0","code":0}`, ""}}},

		{"runtime killed during an invocation", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			s.runtimeExited("signal: killed", 137)
			if err := s.Respond("req-1", nil); !errors.Is(err, runtimeapi.ErrUnknownRequest) {
				t.Errorf("answer after the exit: %v", err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady},
			{guestproto.TypeFunctionError, `{"requestId":"req-1","errorType":"Runtime.ExitError","maxRssKiB":2048,"logDropped":5}`,
				errObj("Runtime.ExitError", "RequestId: req-1 Error: Runtime exited with error: signal: killed")},
			{guestproto.TypeExit, `{"status":"signal: killed","code":137}`, ""}}},

		{"runtime exits between invocations", func(t *testing.T, s *invocations) {
			mustPush(t, s, invoke("req-1"), `{}`)
			next(t, s)
			_ = s.Respond("req-1", nil)
			s.runtimeExited("exit status 0", 0)
		}, []wantFrame{{typ: guestproto.TypeReady}, {typ: guestproto.TypeResponse}, {guestproto.TypeExit, `{"status":"exit status 0","code":0}`, ""}}},

		{"restore hook fails: every later invocation fails with its error", func(t *testing.T, s *invocations) {
			done := make(chan error, 1)
			go func() { done <- s.RestoreNext(context.Background()) }()
			waitInitDone(t, s)
			s.restored()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := s.RestoreFail("HookError", []byte(`{"errorMessage":"hook","errorType":"HookError"}`)); err != nil {
				t.Fatal(err)
			}
			mustPush(t, s, invoke("req-1"), `{}`)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if ev, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Next gave %+v, %v; want no event", ev, err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady},
			{guestproto.TypeInitError, `{"errorType":"HookError"}`, `{"errorMessage":"hook","errorType":"HookError"}`},
			{guestproto.TypeIdle, `{"after":""}`, ""},
			{guestproto.TypeFunctionError, `{"requestId":"req-1","errorType":"HookError","maxRssKiB":0}`, `{"errorMessage":"hook","errorType":"HookError"}`}}},

		{"restore/next waits for the restore, or its caller", func(t *testing.T, s *invocations) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := s.RestoreNext(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("RestoreNext without a restore: %v", err)
			}
			s.restored()
			s.restored() // a second signal before anyone waits does not block
			if err := s.RestoreNext(context.Background()); err != nil {
				t.Errorf("RestoreNext after a restore: %v", err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}}},

		{"next ends with its caller", func(t *testing.T, s *invocations) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("Next: %v", err)
			}
		}, []wantFrame{{typ: guestproto.TypeReady}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, l, _ := newTestInvocations()
			tt.run(t, s)
			got := l.frames(t)
			if len(got) != len(tt.want) {
				t.Fatalf("frames %v, want %d", l.types(t), len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Type != w.typ || (w.header != "" && string(g.Header) != w.header) || (w.body != "" && string(g.Body) != w.body) {
					t.Errorf("frame %d: %s %s %q; want %s %s %q", i, g.Type, g.Header, g.Body, w.typ, w.header, w.body)
				}
			}
		})
	}
}

// waitInitDone waits until the init phase has ended.
func waitInitDone(t *testing.T, s *invocations) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		done := s.initDone
		s.mu.Unlock()
		if done {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("init did not end")
}

// Init ends once, at the first /next or /restore/next, and its duration is
// measured from initStarted.
func TestInitEndsOnce(t *testing.T) {
	s, l, st := newTestInvocations()
	s.initStarted(time.Now().Add(-250 * time.Millisecond))
	for range 3 {
		if _, err := s.endInit(); err != nil {
			t.Fatal(err)
		}
	}
	fs := l.frames(t)
	if len(fs) != 1 || fs[0].Type != guestproto.TypeReady {
		t.Fatalf("frames %v, want one ready", l.types(t))
	}
	if r := decode[guestproto.Ready](t, fs[0]); r.InitMs < 250 || r.InitMs > 5000 {
		t.Errorf("init %.1f ms, want about 250", r.InitMs)
	}
	if st.flushes != 0 {
		t.Errorf("logs flushed %d times at init's end", st.flushes)
	}
	var obj guestproto.ErrorObject
	if err := json.Unmarshal(errorBody("T", "m"), &obj); err != nil || obj.ErrorType != "T" || obj.ErrorMessage != "m" {
		t.Errorf("errorBody: %+v %v", obj, err)
	}
}
