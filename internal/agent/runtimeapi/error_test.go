package runtimeapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// POST /invocation/{id}/error and POST /init/error: the body should be
// Lambda's error object, the type comes from Lambda-Runtime-Function-Error-Type
// or the object; whatever the runtime posts, the caller gets the documented
// shape.
func TestErrorPosts(t *testing.T) {
	overLimit := `{"errorMessage":"` + strings.Repeat("m", MaxResponseBytes) + `","errorType":"Big"}`
	tests := []struct {
		name     string
		path     string
		header   string
		body     string
		status   int
		wantType string
		wantMsg  string // errorMessage of the object passed down
		wantBody string // the exact body passed down, when it is kept as posted
	}{
		{name: "error object and type header", path: "/invocation/req-1/error", header: "MyError",
			body: `{"errorMessage":"boom","errorType":"MyError","stackTrace":["a.go:1"]}`, status: 202, wantType: "MyError",
			wantBody: `{"errorMessage":"boom","errorType":"MyError","stackTrace":["a.go:1"]}`},
		{name: "type from the object", path: "/invocation/req-1/error", body: `{"errorMessage":"boom","errorType":"FromBody"}`,
			status: 202, wantType: "FromBody", wantMsg: "boom"},
		{name: "header wins over the object", path: "/invocation/req-1/error", header: "FromHeader", body: `{"errorMessage":"boom","errorType":"FromBody"}`,
			status: 202, wantType: "FromHeader", wantMsg: "boom"},
		{name: "no type anywhere", path: "/invocation/req-1/error", body: `{"errorMessage":"boom"}`, status: 202, wantType: "Runtime.Unknown", wantMsg: "boom"},
		{name: "not an error object", path: "/invocation/req-1/error", body: `plain text`, status: 202, wantType: "Runtime.Unknown", wantMsg: "plain text"},
		{name: "not an error object, with a type", path: "/invocation/req-1/error", header: "Custom", body: `[1,2]`, status: 202, wantType: "Custom", wantMsg: "[1,2]"},
		{name: "empty", path: "/invocation/req-1/error", status: 202, wantType: "Runtime.Unknown", wantMsg: ""},
		{name: "over the limit is cut", path: "/invocation/req-1/error", header: "Big", body: overLimit, status: 202, wantType: "Big",
			wantMsg: overLimit[:MaxResponseBytes]},
		{name: "unknown request id", path: "/invocation/req-0/error", header: "E", body: `{"errorMessage":"x"}`, status: 400},
		{name: "init error", path: "/init/error", header: "Runtime.ConfigError", body: `{"errorMessage":"no config","errorType":"Runtime.ConfigError"}`,
			status: 202, wantType: "Runtime.ConfigError", wantMsg: "no config"},
		{name: "init error that is not an object", path: "/init/error", body: `cannot start`, status: 202, wantType: "Runtime.Unknown", wantMsg: "cannot start"},
		{name: "restore error", path: "/restore/error", header: "HookError", body: `{"errorMessage":"hook failed","errorType":"HookError"}`,
			status: 202, wantType: "restore:HookError", wantMsg: "hook failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newTestServer(t)
			var header map[string]string
			if tt.header != "" {
				header = map[string]string{HeaderErrorType: tt.header}
			}
			status, obj := post(t, srv.URL+prefix+tt.path, header, strings.NewReader(tt.body), nil)
			if status != tt.status {
				t.Fatalf("status %d %v, want %d", status, obj, tt.status)
			}
			if status != 202 {
				if obj["errorType"] != "InvalidRequestID" {
					t.Errorf("answer %v", obj)
				}
				if len(f.failures) != 0 {
					t.Errorf("failures %v, want none", f.failures)
				}
				return
			}
			typ, body := f.initType, f.initBody
			if strings.HasPrefix(tt.path, "/invocation/") {
				typ, body, _ = strings.Cut(f.failures["req-1"], " ")
			}
			if typ != tt.wantType {
				t.Errorf("error type %q, want %q", typ, tt.wantType)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			var got struct {
				ErrorMessage *string `json:"errorMessage"`
				ErrorType    string  `json:"errorType"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.ErrorMessage == nil {
				t.Fatalf("body %.80q is not an error object: %v", body, err)
			}
			if tt.wantBody == "" && *got.ErrorMessage != tt.wantMsg {
				t.Errorf("errorMessage %.80q, want %.80q", *got.ErrorMessage, tt.wantMsg)
			}
		})
	}
}

// Lambda answers a second /init/error, or one after init, with 403.
func TestInitErrorTwiceIsRefused(t *testing.T) {
	_, srv := newTestServer(t)
	for i, want := range []int{202, 403} {
		status, obj := post(t, srv.URL+prefix+"/init/error", nil, strings.NewReader(`{"errorMessage":"x","errorType":"E"}`), nil)
		if status != want {
			t.Errorf("post %d: status %d, want %d", i+1, status, want)
		}
		if status == 403 && obj["errorType"] != "InvalidStateTransition" {
			t.Errorf("post %d: answer %v", i+1, obj)
		}
	}
}
