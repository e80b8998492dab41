package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// oneInvoker answers every invocation with res or err, and keeps the
// request it was given.
type oneInvoker struct {
	noInvoker
	res *invoke.Result
	err error
	got *invoke.Request
}

func (o oneInvoker) Invoke(_ context.Context, req invoke.Request) (*invoke.Result, error) {
	*o.got = req
	return o.res, o.err
}

// The Invoke operation turns the invocation path's answer into Lambda's.
func TestInvokeAnswers(t *testing.T) {
	ok := &invoke.Result{RequestID: "req-1", Version: "3", Payload: []byte(`{"ok":true}`), StartType: sandbox.StartWarm,
		LogTail: []byte("START RequestId: req-1 Version: 3\nEND RequestId: req-1\n")}
	failed := &invoke.Result{RequestID: "req-2", Version: "$LATEST", Payload: []byte(`{"errorMessage":"boom"}`),
		Error: &guestproto.ErrorObject{ErrorMessage: "boom"}}
	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		body       []byte
		res        *invoke.Result
		err        error
		wantStatus int
		wantHeader map[string]string
		wantBody   string
		wantReq    invoke.Request
	}{
		{name: "request-response with a log tail", path: "/2015-03-31/functions/f/invocations?Qualifier=live",
			headers: map[string]string{"X-Amz-Log-Type": "Tail", "X-Amz-Client-Context": "e30="}, body: []byte(`{"a":1}`), res: ok,
			wantStatus: 200, wantBody: `{"ok":true}`,
			wantHeader: map[string]string{"X-Amz-Executed-Version": "3", "X-Amzn-RequestId": "req-1", "X-Amz-Function-Error": "",
				"X-Amz-Log-Result": base64.StdEncoding.EncodeToString(ok.LogTail)},
			wantReq: invoke.Request{Function: "f", Qualifier: "live", Payload: []byte(`{"a":1}`), ClientContext: "e30="}},
		{name: "no tail unless asked", path: "/2015-03-31/functions/f/invocations", res: ok,
			wantStatus: 200, wantHeader: map[string]string{"X-Amz-Log-Result": ""}, wantReq: invoke.Request{Function: "f", Payload: []byte{}}},
		{name: "function error", path: "/2015-03-31/functions/f/invocations", res: failed,
			wantStatus: 200, wantBody: `{"errorMessage":"boom"}`, wantHeader: map[string]string{"X-Amz-Function-Error": "Unhandled"},
			wantReq: invoke.Request{Function: "f", Payload: []byte{}}},
		{name: "event", path: "/2015-03-31/functions/f:2/invocations", headers: map[string]string{"X-Amz-Invocation-Type": "Event"},
			res: &invoke.Result{RequestID: "req-3", Version: "2"}, wantStatus: 202, wantHeader: map[string]string{"X-Amz-Executed-Version": "2"},
			wantReq: invoke.Request{Function: "f", Qualifier: "2", Type: invoke.Event, Payload: []byte{}}},
		{name: "dry run", path: "/2015-03-31/functions/f/invocations", headers: map[string]string{"X-Amz-Invocation-Type": "DryRun"},
			res: &invoke.Result{Version: "$LATEST"}, wantStatus: 204, wantReq: invoke.Request{Function: "f", Type: invoke.DryRun, Payload: []byte{}}},
		{name: "refused by the path", path: "/2015-03-31/functions/f/invocations", err: lambdaerr.ResourceNotFound("Function not found: f"),
			wantStatus: 404, wantHeader: map[string]string{"X-Amzn-ErrorType": "ResourceNotFoundException"},
			wantReq: invoke.Request{Function: "f", Payload: []byte{}}},
		{name: "async payload over 1 MB", path: "/2015-03-31/functions/f/invocations", headers: map[string]string{"X-Amz-Invocation-Type": "Event"},
			body: make([]byte, invoke.MaxAsyncPayload+1), wantStatus: 413, wantHeader: map[string]string{"X-Amzn-ErrorType": "RequestTooLargeException"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAPI(t)
			var got invoke.Request
			a.cfg.Invoker = oneInvoker{res: tt.res, err: tt.err, got: &got}
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9000"+tt.path, bytes.NewReader(tt.body))
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			sum := sha256.Sum256(tt.body)
			creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			a.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			for k, v := range tt.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.wantBody != "" && strings.TrimSpace(w.Body.String()) != tt.wantBody {
				t.Errorf("body %s, want %s", w.Body, tt.wantBody)
			}
			if tt.wantReq.Function != "" && (got.Function != tt.wantReq.Function || got.Qualifier != tt.wantReq.Qualifier ||
				got.Type != tt.wantReq.Type || !bytes.Equal(got.Payload, tt.wantReq.Payload) || got.ClientContext != tt.wantReq.ClientContext) {
				t.Errorf("invoked with %+v, want %+v", got, tt.wantReq)
			}
		})
	}
}
