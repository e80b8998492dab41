package runtimeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// The headers Lambda's Runtime API sets on /invocation/next: the three it
// always sends, and the three it sends only when the invocation has them.
func TestNextHeaders(t *testing.T) {
	full := Event{RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", DeadlineMs: 1542409706888,
		FunctionARN: "arn:aws:lambda:us-east-2:123456789012:function:custom-runtime", TraceID: "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
		ClientContext: `{"client":{"app_title":"t"}}`, CognitoIdentity: `{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}`,
		Payload: []byte(`{"k":"v"}`)}
	minimal := Event{RequestID: "req-2", DeadlineMs: 1, FunctionARN: "arn:aws:lambda:local:000000000000:function:f", Payload: []byte(`[]`)}
	tests := []struct {
		name   string
		event  Event
		want   map[string]string
		absent []string
	}{
		{"every header", full, map[string]string{
			"Lambda-Runtime-Aws-Request-Id":       full.RequestID,
			"Lambda-Runtime-Deadline-Ms":          "1542409706888",
			"Lambda-Runtime-Invoked-Function-Arn": full.FunctionARN,
			"Lambda-Runtime-Trace-Id":             full.TraceID,
			"Lambda-Runtime-Client-Context":       full.ClientContext,
			"Lambda-Runtime-Cognito-Identity":     full.CognitoIdentity,
			"Content-Type":                        "application/json",
		}, nil},
		{"only the required ones", minimal, map[string]string{
			"Lambda-Runtime-Aws-Request-Id":       "req-2",
			"Lambda-Runtime-Deadline-Ms":          "1",
			"Lambda-Runtime-Invoked-Function-Arn": minimal.FunctionARN,
		}, []string{"Lambda-Runtime-Trace-Id", "Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newTestServer(t)
			f.event = tt.event
			resp, err := http.Get(srv.URL + prefix + "/invocation/next")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != string(tt.event.Payload) {
				t.Errorf("status %d body %s; want 200 and %s", resp.StatusCode, body, tt.event.Payload)
			}
			for k, v := range tt.want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("%s set to %q, want it absent", k, v)
				}
			}
		})
	}
}

// When the state behind the API fails while the runtime waits, the runtime
// gets an error, not a 200 without an event.
func TestNextFails(t *testing.T) {
	f, srv := newTestServer(t)
	f.nextErr = errors.New("host channel closed")
	resp, err := http.Get(srv.URL + prefix + "/invocation/next")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var obj map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&obj); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError || obj["errorType"] != "InternalError" || obj["errorMessage"] != "host channel closed" {
		t.Errorf("status %d, %v", resp.StatusCode, obj)
	}
	if resp.Header.Get(HeaderRequestID) != "" {
		t.Errorf("a failed next carries request id %q", resp.Header.Get(HeaderRequestID))
	}
}

// /next blocks until there is work and must not time out; a runtime that
// hangs up ends the wait on the agent's side.
func TestNextWaitEndsWhenTheRuntimeHangsUp(t *testing.T) {
	inv := &blockingNext{entered: make(chan struct{}), left: make(chan error, 1)}
	srv := newServerFor(t, inv)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+prefix+"/invocation/next", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-inv.entered
	cancel()
	select {
	case err := <-inv.left:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still waiting after the runtime hung up")
	}
	if err := <-done; err == nil {
		t.Error("the cancelled request got an answer")
	}
}

// blockingNext waits in Next until its caller's context ends.
type blockingNext struct {
	fakeInvocations
	entered chan struct{}
	left    chan error
}

func (b *blockingNext) Next(ctx context.Context) (Event, error) {
	close(b.entered)
	<-ctx.Done()
	b.left <- ctx.Err()
	return Event{}, ctx.Err()
}
