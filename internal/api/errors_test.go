package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

func TestWriteErrorShapes(t *testing.T) {
	a := &API{cfg: Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
		wantKind   string // the body's Type
		wantRetry  bool
	}{
		{"invalid parameter", lambdaerr.InvalidParameter("bad"), 400, "InvalidParameterValueException", "User", false},
		{"wrapped", fmt.Errorf("creating: %w", lambdaerr.ResourceConflict("exists")), 409, "ResourceConflictException", "User", false},
		{"precondition", lambdaerr.PreconditionFailed("rev"), 412, "PreconditionFailedException", "User", false},
		{"unknown operation", lambdaerr.UnknownOperation(404, "no"), 404, "UnknownOperationException", "User", false},
		{"store miss", fmt.Errorf("function x: %w", store.ErrNotFound), 404, "ResourceNotFoundException", "User", false},
		{"store conflict", fmt.Errorf("alias: %w", store.ErrExists), 409, "ResourceConflictException", "User", false},
		{"throttled", lambdaerr.TooManyRequests("ConcurrentInvocationLimitExceeded", "slow down"), 429, "TooManyRequestsException", "User", true},
		{"anything else", errors.New("disk full"), 500, "ServiceException", "Service", false},
		{"cut off from the quorum", fmt.Errorf("store: UpdateFunction: %w: %w", store.ErrUnreachable, errors.New("nats: timeout")), 503, "ServiceException", "Service", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			a.writeError(w, tt.err)
			if w.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tt.wantStatus)
			}
			typ, kind, msg := lambdaError(t, w.Header(), w.Body.Bytes())
			if typ != tt.wantType || kind != tt.wantKind || msg == "" {
				t.Errorf("got %s %s %q, want %s %s", typ, kind, msg, tt.wantType, tt.wantKind)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After present %v, want %v", got, tt.wantRetry)
			}
		})
	}
}

func TestParseFunctionRef(t *testing.T) {
	tests := []struct {
		ref, query         string
		wantName, wantQual string
		wantErr            bool
	}{
		{"fn", "", "fn", "", false},
		{"fn:7", "", "fn", "7", false},
		{"fn", "live", "fn", "live", false},
		{"fn:live", "live", "fn", "live", false},
		{"fn:live", "7", "", "", true}, // the name and the query disagree
		{"arn:aws:lambda:local:000000000000:function:fn", "", "fn", "", false},
		{"arn:aws:lambda:local:000000000000:function:fn:$LATEST", "", "fn", "$LATEST", false},
		{"000000000000:function:fn:3", "", "fn", "3", false},
		{"arn:aws:s3:::bucket", "", "", "", true},
		{"arn:aws:lambda:local:000000000000:layer:x", "", "", "", true},
		{"fn:", "", "", "", true},
		{"fn:a:b", "", "", "", true},
		{"bad name!", "", "", "", true},
		{"", "", "", "", true},
		{"a23456789012345678901234567890123456789012345678901234567890123456", "", "", "", true}, // 66 characters
	}
	for _, tt := range tests {
		name, q, err := parseFunctionRef(tt.ref, tt.query)
		if tt.wantErr {
			if le, ok := lambdaerr.As(err); !ok || le.Type != "InvalidParameterValueException" {
				t.Errorf("parseFunctionRef(%q, %q) = %q %q %v, want an InvalidParameterValueException", tt.ref, tt.query, name, q, err)
			}
			continue
		}
		if err != nil || name != tt.wantName || q != tt.wantQual {
			t.Errorf("parseFunctionRef(%q, %q) = %q %q %v, want %q %q", tt.ref, tt.query, name, q, err, tt.wantName, tt.wantQual)
		}
	}
}

func TestTaggedFunction(t *testing.T) {
	tests := []struct {
		resource, want, wantType string
	}{
		{"arn:aws:lambda:local:000000000000:function:fn", "fn", ""},
		{"arn:aws:lambda:local:000000000000:function:fn:1", "", "InvalidParameterValueException"},
		{"fn", "", "InvalidParameterValueException"},
		{"arn:aws:lambda:local:000000000000:event-source-mapping:abc", "", "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		got, err := taggedFunction(tt.resource)
		le, _ := lambdaerr.As(err)
		switch {
		case tt.wantType == "" && (err != nil || got != tt.want):
			t.Errorf("taggedFunction(%q) = %q %v, want %q", tt.resource, got, err, tt.want)
		case tt.wantType != "" && (le == nil || le.Type != tt.wantType):
			t.Errorf("taggedFunction(%q) = %v, want a %s", tt.resource, err, tt.wantType)
		}
	}
}

// An internal error's text (host paths, a guest's console) stays in the
// log, under a request id the caller is given.
func TestWriteErrorHidesInternalErrors(t *testing.T) {
	const secret = "/var/lib/hearth/envs/env-42/console.log: Kernel panic - not syncing"
	tests := []struct {
		name     string
		err      error
		wantMsg  string // in the message; "" checks only what must not be there
		wantType string
	}{
		{"a plain error", errors.New("boot env-42: " + secret), "", "ServiceException"},
		{"a wrapped one", fmt.Errorf("invoke: %w", fmt.Errorf("restore: %s", secret)), "", "ServiceException"},
		{"Lambda's own ServiceException keeps its message", lambdaerr.Service("logs are not kept by this daemon"), "logs are not kept", "ServiceException"},
		{"a user error keeps its message", lambdaerr.InvalidParameter("Timeout must be 1 to 900"), "Timeout must be", "InvalidParameterValueException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			a := &API{cfg: Config{Log: slog.New(slog.NewTextHandler(&logs, nil))}}
			w := httptest.NewRecorder()
			a.writeError(w, tt.err)
			typ, _, msg := lambdaError(t, w.Header(), w.Body.Bytes())
			id := w.Header().Get("X-Amzn-RequestId")
			if strings.Contains(w.Body.String(), "/var/lib") || strings.Contains(w.Body.String(), "Kernel panic") {
				t.Errorf("the answer shows the internal error: %s", w.Body.String())
			}
			if typ != tt.wantType || id == "" {
				t.Fatalf("type %s, request id %q", typ, id)
			}
			if tt.wantMsg != "" {
				if !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q, want %q in it", msg, tt.wantMsg)
				}
				return
			}
			if !strings.Contains(msg, id) {
				t.Errorf("message %q does not give the request id %s", msg, id)
			}
			if !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "Kernel panic") {
				t.Errorf("the log does not hold the error under its request id:\n%s", logs.String())
			}
		})
	}
}

// A configuration write refused for want of the quorum reaches an SDK
// caller as a ServiceException with the message, which the SDK's
// standard retryer retries (a generic 500 it would retry too, but gave no
// reason; the store's own error used to be hidden behind it).
func TestNoQuorumReadBySDK(t *testing.T) {
	a := &API{cfg: Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		a.writeError(w, fmt.Errorf("store: DeleteFunction: %w: %w", store.ErrUnreachable, context.DeadlineExceeded))
	}))
	defer srv.Close()
	cl := lambda.New(lambda.Options{BaseEndpoint: aws.String(srv.URL), Region: "local",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		// The standard retryer, without its waits.
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})})
	_, err := cl.DeleteFunction(context.Background(), &lambda.DeleteFunctionInput{FunctionName: aws.String("f")})
	var se *types.ServiceException
	if !errors.As(err, &se) {
		t.Fatalf("SDK error %v, want a ServiceException", err)
	}
	if !strings.Contains(se.ErrorMessage(), "cannot reach the cluster's quorum") {
		t.Errorf("message %q does not say why", se.ErrorMessage())
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the SDK sent %d requests, want 3 (its standard retryer retries the 503)", n)
	}
}
