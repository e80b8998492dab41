package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestUnknownRoutesAnswerInLambdasShape(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "fn", nil)
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantMsg    []string
		wantAllow  string
	}{
		{"a Lambda operation Hearth lacks", "GET", "/2024-08-31/functions/fn/recursion-config", 404,
			[]string{"GetFunctionRecursionConfig", "not supported by Hearth"}, ""},
		{"one told from another by its query", "GET", "/2019-09-30/functions/fn/provisioned-concurrency?List=ALL", 404,
			[]string{"ListProvisionedConcurrencyConfigs"}, ""},
		{"the same path without it", "GET", "/2019-09-30/functions/fn/provisioned-concurrency", 404, []string{"GetProvisionedConcurrencyConfig"}, ""},
		{"a path no Lambda operation has", "GET", "/nothing/here", 404,
			[]string{"GET /nothing/here is not supported by Hearth", "no Lambda operation"}, ""},
		{"a known path with a method it does not take", "PATCH", "/2015-03-31/functions/fn", 405,
			[]string{"PATCH /2015-03-31/functions/fn is not supported by Hearth", "takes GET, DELETE"}, "GET, DELETE"},
		{"a Lambda operation on a path Hearth serves otherwise", "PUT", "/2015-03-31/functions/fn/policy", 405,
			[]string{"PUT /2015-03-31/functions/fn/policy", "not supported by Hearth"}, "GET, POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := call(t, a, tt.method, tt.path, nil)
			if code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", code, tt.wantStatus, body)
			}
			typ, errType, msg := lambdaError(t, h, body)
			if typ != "UnknownOperationException" || errType != "User" || h.Get("Content-Type") != "application/json" {
				t.Errorf("X-Amzn-ErrorType %q, Type %q, Content-Type %q", typ, errType, h.Get("Content-Type"))
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q lacks %q", msg, m)
				}
			}
			if h.Get("Allow") != tt.wantAllow {
				t.Errorf("Allow %q, want %q", h.Get("Allow"), tt.wantAllow)
			}
		})
	}
}

// An unsigned request for an unknown path learns nothing: the signature is
// checked first.
func TestUnknownRoutesAreSignedOnly(t *testing.T) {
	a := newTestAPI(t)
	r, _ := http.NewRequest("GET", "http://127.0.0.1:9000/2019-09-25/functions/fn/event-invoke-config", nil)
	w := newRecorder()
	a.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || w.Header().Get("X-Amzn-ErrorType") != "UnrecognizedClientException" {
		t.Errorf("unsigned: %d %s", w.Code, w.Header().Get("X-Amzn-ErrorType"))
	}
}

func TestOperationFor(t *testing.T) {
	tests := []struct {
		method, path, query, want string
	}{
		{"GET", "/2015-03-31/functions/fn", "", "GetFunction"},
		{"GET", "/2015-03-31/functions/", "", "ListFunctions"},
		{"DELETE", "/2015-03-31/functions/fn/policy/sid1", "", "RemovePermission"},
		{"GET", "/2019-09-30/functions/fn/provisioned-concurrency", "List=ALL", "ListProvisionedConcurrencyConfigs"},
		{"GET", "/2019-09-30/functions/fn/provisioned-concurrency", "Qualifier=1", "GetProvisionedConcurrencyConfig"},
		{"POST", "/2017-03-31/tags/arn:aws:lambda:local:000000000000:function:fn", "", "TagResource"},
		{"GET", "/2015-03-31/functions//configuration", "", ""},
		{"PATCH", "/2015-03-31/functions/fn", "", ""},
		{"GET", "/hearth/v1/cost", "", ""},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		if got := operationFor(tt.method, tt.path, q); got != tt.want {
			t.Errorf("operationFor(%s %s?%s) = %q, want %q", tt.method, tt.path, tt.query, got, tt.want)
		}
	}
}
