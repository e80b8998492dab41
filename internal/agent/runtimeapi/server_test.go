package runtimeapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeInvocations records what the API passes down; it is the no-op twin of
// the agent's invocation state.
type fakeInvocations struct {
	mu        sync.Mutex
	event     Event
	responses map[string]string
	failures  map[string]string // id → error type
	initType  string
	initBody  string
}

func (f *fakeInvocations) Next(ctx context.Context) (Event, error) { return f.event, nil }

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
	if f.initType != "" {
		return ErrInvalidState
	}
	f.initType, f.initBody = errType, string(body)
	return nil
}

func (f *fakeInvocations) RestoreNext(ctx context.Context) error { return nil }

func (f *fakeInvocations) RestoreFail(errType string, body []byte) error {
	f.initType, f.initBody = "restore:"+errType, string(body)
	return nil
}

func (f *fakeInvocations) Streaming(string) bool { return false }

func (f *fakeInvocations) Chunk(string, string, []byte) error { return nil }

func newTestServer(t *testing.T) (*fakeInvocations, *httptest.Server) {
	inv := &fakeInvocations{
		event: Event{RequestID: "req-1", DeadlineMs: 1700000000123, FunctionARN: "arn:aws:lambda:local:000000000000:function:f",
			TraceID: "Root=1-abc", Payload: []byte(`{"k":"v"}`)},
		responses: map[string]string{}, failures: map[string]string{},
	}
	srv := httptest.NewServer(New(inv, slog.New(slog.NewTextHandler(io.Discard, nil))).Handler())
	t.Cleanup(srv.Close)
	return inv, srv
}

func TestNextSendsEventAndHeaders(t *testing.T) {
	_, srv := newTestServer(t)
	resp, err := http.Get(srv.URL + "/2018-06-01/runtime/invocation/next")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := map[string]string{
		"Lambda-Runtime-Aws-Request-Id":       "req-1",
		"Lambda-Runtime-Deadline-Ms":          "1700000000123",
		"Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:local:000000000000:function:f",
		"Lambda-Runtime-Trace-Id":             "Root=1-abc",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 200 || string(body) != `{"k":"v"}` {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
}

func TestPosts(t *testing.T) {
	tests := []struct {
		name       string
		path       string
		header     string
		body       string
		wantStatus int
		check      func(t *testing.T, f *fakeInvocations)
	}{
		{"response", "/invocation/req-1/response", "", `{"ok":true}`, 202, func(t *testing.T, f *fakeInvocations) {
			if f.responses["req-1"] != `{"ok":true}` {
				t.Errorf("response %q", f.responses["req-1"])
			}
		}},
		{"response to an unknown id", "/invocation/other/response", "", `{}`, 400, nil},
		{"response over 6 MB", "/invocation/req-1/response", "", strings.Repeat("a", MaxResponseBytes+1), 413, func(t *testing.T, f *fakeInvocations) {
			if !strings.HasPrefix(f.failures["req-1"], "Function.ResponseSizeTooLarge ") {
				t.Errorf("failure %q", f.failures["req-1"])
			}
		}},
		{"error object with type header", "/invocation/req-1/error", "MyError", `{"errorMessage":"boom","errorType":"MyError"}`, 202, func(t *testing.T, f *fakeInvocations) {
			if f.failures["req-1"] != `MyError {"errorMessage":"boom","errorType":"MyError"}` {
				t.Errorf("failure %q", f.failures["req-1"])
			}
		}},
		{"error that is not an error object", "/invocation/req-1/error", "", `plain text`, 202, func(t *testing.T, f *fakeInvocations) {
			typ, body, _ := strings.Cut(f.failures["req-1"], " ")
			var obj map[string]string
			if typ != "Runtime.Unknown" || json.Unmarshal([]byte(body), &obj) != nil || obj["errorMessage"] != "plain text" {
				t.Errorf("failure %q", f.failures["req-1"])
			}
		}},
		{"init error", "/init/error", "Runtime.ConfigError", `{"errorMessage":"no config","errorType":"Runtime.ConfigError"}`, 202, func(t *testing.T, f *fakeInvocations) {
			if f.initType != "Runtime.ConfigError" {
				t.Errorf("init type %q", f.initType)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newTestServer(t)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+prefix+tt.path, strings.NewReader(tt.body))
			if tt.header != "" {
				req.Header.Set(HeaderErrorType, tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func TestInitErrorTwiceIsRefused(t *testing.T) {
	_, srv := newTestServer(t)
	for i, want := range []int{202, 403} {
		resp, err := http.Post(srv.URL+prefix+"/init/error", "application/json", strings.NewReader(`{"errorMessage":"x","errorType":"E"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("post %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
