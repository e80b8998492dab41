package funcurl

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

const (
	testID     = "abcdefghijklmnopqrstuvwxyz012345"
	testDomain = testID + ".lambda-url.localhost"
	testHost   = testDomain + ":9000"
	accountID  = "000000000000"
)

// eventRequest is a request as the server hands it to the handler: Host
// split out of the headers, RemoteAddr set.
func eventRequest(method, target, body string, header http.Header) *http.Request {
	r := httptest.NewRequest(method, "http://"+testHost+target, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.7:51234"
	if body != "" {
		r.Header.Set("Content-Length", strconv.Itoa(len(body))) // as net/http's server leaves it
	}
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

// baseHeaders are the headers every event carries, as Lambda adds them.
func baseHeaders(extra map[string]string) map[string]string {
	h := map[string]string{
		"host":              testHost,
		"x-forwarded-for":   "192.0.2.7",
		"x-forwarded-proto": "http",
		"x-forwarded-port":  "9000",
	}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

func httpContext(method, path, userAgent string) events.LambdaFunctionURLRequestContextHTTPDescription {
	return events.LambdaFunctionURLRequestContextHTTPDescription{
		Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: "192.0.2.7", UserAgent: userAgent,
	}
}

func TestBuildEvent(t *testing.T) {
	binary := []byte{0x89, 'P', 'N', 'G', 0, 0xff, 0xfe, '\n'}
	iam := &iamCaller{accessKey: "AKIDEXAMPLE"}
	tests := []struct {
		name   string
		method string
		target string // path and query, after the host
		path   string // the function's path, as route found it
		body   string
		header http.Header
		iam    *iamCaller
		want   events.LambdaFunctionURLRequest // RequestID, Time and TimeEpoch are checked apart
	}{
		{
			name: "GET with repeated query keys joined by commas", method: "GET",
			target: "/items/42?b=2&a=1&b=3&empty=&sp=a%20b", path: "/items/42",
			header: http.Header{"User-Agent": {"curl/8.5.0"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/items/42", RawQueryString: "b=2&a=1&b=3&empty=&sp=a%20b",
				Headers:               baseHeaders(map[string]string{"user-agent": "curl/8.5.0"}),
				QueryStringParameters: map[string]string{"a": "1", "b": "2,3", "empty": "", "sp": "a b"},
				RequestContext:        events.LambdaFunctionURLRequestContext{HTTP: httpContext("GET", "/items/42", "curl/8.5.0")},
			},
		},
		{
			name: "cookies go in their own field, not in headers", method: "GET", target: "/", path: "/",
			header: http.Header{"Cookie": {"a=1; b=2", "c=3"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/", Cookies: []string{"a=1", "b=2", "c=3"}, Headers: baseHeaders(nil),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("GET", "/", "")},
			},
		},
		{
			name: "header names lower-cased, repeated headers joined by commas", method: "GET", target: "/", path: "/",
			header: http.Header{"X-Multi": {"one", "two"}, "X-Amz-Date": {"20240101T000000Z"}, "Accept": {"text/html"}},
			want: events.LambdaFunctionURLRequest{
				RawPath:        "/",
				Headers:        baseHeaders(map[string]string{"x-multi": "one,two", "x-amz-date": "20240101T000000Z", "accept": "text/html"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("GET", "/", "")},
			},
		},
		{
			name: "POST text body", method: "POST", target: "/echo", path: "/echo", body: `{"k":"v"}`,
			header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/echo", Body: `{"k":"v"}`,
				Headers:        baseHeaders(map[string]string{"content-type": "application/json; charset=utf-8", "content-length": "9"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("POST", "/echo", "")},
			},
		},
		{
			name: "HTML in a text body is not escaped", method: "POST", target: "/", path: "/", body: `<a href="x">&</a>`,
			header: http.Header{"Content-Type": {"text/html"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/", Body: `<a href="x">&</a>`,
				Headers:        baseHeaders(map[string]string{"content-type": "text/html", "content-length": "17"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("POST", "/", "")},
			},
		},
		{
			name: "binary body goes base64", method: "PUT", target: "/img", path: "/img", body: string(binary),
			header: http.Header{"Content-Type": {"image/png"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/img", Body: base64.StdEncoding.EncodeToString(binary), IsBase64Encoded: true,
				Headers:        baseHeaders(map[string]string{"content-type": "image/png", "content-length": "8"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("PUT", "/img", "")},
			},
		},
		{
			name: "body without a content type goes base64", method: "POST", target: "/", path: "/", body: "plain",
			want: events.LambdaFunctionURLRequest{
				RawPath: "/", Body: base64.StdEncoding.EncodeToString([]byte("plain")), IsBase64Encoded: true,
				Headers:        baseHeaders(map[string]string{"content-length": "5"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("POST", "/", "")},
			},
		},
		{
			name: "empty body: no body field, not base64", method: "POST", target: "/", path: "/",
			header: http.Header{"Content-Type": {"application/octet-stream"}},
			want: events.LambdaFunctionURLRequest{
				RawPath: "/", Headers: baseHeaders(map[string]string{"content-type": "application/octet-stream"}),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("POST", "/", "")},
			},
		},
		{
			name: "path routing: the function sees the path after /fn-url/<id>", method: "DELETE",
			target: "/fn-url/" + testID + "/a/b%2Fc", path: "/a/b%2Fc",
			want: events.LambdaFunctionURLRequest{
				RawPath: "/a/b%2Fc", Headers: baseHeaders(nil),
				RequestContext: events.LambdaFunctionURLRequestContext{HTTP: httpContext("DELETE", "/a/b%2Fc", "")},
			},
		},
		{
			name: "AWS_IAM: the caller in authorizer.iam", method: "GET", target: "/", path: "/", iam: iam,
			want: events.LambdaFunctionURLRequest{
				RawPath: "/", Headers: baseHeaders(nil),
				RequestContext: events.LambdaFunctionURLRequestContext{
					HTTP: httpContext("GET", "/", ""),
					Authorizer: &events.LambdaFunctionURLRequestContextAuthorizerDescription{
						IAM: &events.LambdaFunctionURLRequestContextAuthorizerIAMDescription{
							AccessKey: "AKIDEXAMPLE", AccountID: accountID, CallerID: "AKIDEXAMPLE",
							UserARN: "arn:aws:iam::" + accountID + ":user/hearth", UserID: "AKIDEXAMPLE",
						},
					},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := eventRequest(tt.method, tt.target, tt.body, tt.header)
			before := time.Now()
			payload, err := buildEvent(r, testID, testDomain, tt.path, tt.iam)
			after := time.Now()
			if err != nil {
				t.Fatalf("buildEvent: %v", err)
			}
			var got events.LambdaFunctionURLRequest
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatalf("aws-lambda-go cannot decode the event: %v\n%s", err, payload)
			}
			checkRequestContext(t, got.RequestContext, before, after)

			want := tt.want
			want.Version = "2.0"
			rc := &want.RequestContext
			rc.AccountID, rc.APIID, rc.DomainName, rc.DomainPrefix = accountID, testID, testDomain, testID
			rc.RequestID, rc.Time, rc.TimeEpoch = got.RequestContext.RequestID, got.RequestContext.Time, got.RequestContext.TimeEpoch
			compareFields(t, reflect.ValueOf(got), reflect.ValueOf(want), "event")
			checkPlaceholders(t, payload)
			if bytes.Contains(payload, []byte(`\u003c`)) || bytes.HasSuffix(payload, []byte("\n")) {
				t.Errorf("event HTML-escaped or with a trailing newline: %s", payload)
			}
		})
	}
}

// checkRequestContext checks the fields that change with each request:
// a fresh UUID and the time, in Lambda's two forms, agreeing.
func checkRequestContext(t *testing.T, rc events.LambdaFunctionURLRequestContext, before, after time.Time) {
	t.Helper()
	if _, err := uuid.Parse(rc.RequestID); err != nil {
		t.Errorf("requestId %q is not a UUID: %v", rc.RequestID, err)
	}
	if rc.TimeEpoch < before.UnixMilli() || rc.TimeEpoch > after.UnixMilli() {
		t.Errorf("timeEpoch %d not within [%d, %d]", rc.TimeEpoch, before.UnixMilli(), after.UnixMilli())
	}
	// Lambda's form: "12/Mar/2020:19:03:58 +0000", in UTC, to the second.
	tm, err := time.Parse("02/Jan/2006:15:04:05 -0700", rc.Time)
	if err != nil || !strings.HasSuffix(rc.Time, " +0000") {
		t.Errorf("time %q is not Lambda's dd/Mon/yyyy:hh:mm:ss +0000: %v", rc.Time, err)
	} else if tm.Unix() != rc.TimeEpoch/1000 {
		t.Errorf("time %q and timeEpoch %d disagree", rc.Time, rc.TimeEpoch)
	}
}

// compareFields reports every field of got that differs from want, by its
// JSON path, so a failure names the field.
func compareFields(t *testing.T, got, want reflect.Value, path string) {
	t.Helper()
	if got.Kind() == reflect.Pointer {
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				t.Errorf("%s: got %v, want %v", path, got.Interface(), want.Interface())
			}
			return
		}
		got, want = got.Elem(), want.Elem()
	}
	if got.Kind() != reflect.Struct {
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("%s: got %#v, want %#v", path, got.Interface(), want.Interface())
		}
		return
	}
	for i := range got.NumField() {
		name, _, _ := strings.Cut(got.Type().Field(i).Tag.Get("json"), ",")
		compareFields(t, got.Field(i), want.Field(i), path+"."+name)
	}
}

// checkPlaceholders checks the fields aws-lambda-go's struct lacks but
// Lambda sends, and that the top-level keys are Lambda's.
func checkPlaceholders(t *testing.T, payload []byte) {
	t.Helper()
	var raw struct {
		RouteKey       *string        `json:"routeKey"`
		RequestContext map[string]any `json:"requestContext"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.RouteKey == nil || *raw.RouteKey != "$default" {
		t.Errorf("routeKey: %v, want $default", raw.RouteKey)
	}
	for _, k := range []string{"routeKey", "stage"} {
		if raw.RequestContext[k] != "$default" {
			t.Errorf("requestContext.%s: %v, want $default", k, raw.RequestContext[k])
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"version": true, "routeKey": true, "rawPath": true, "rawQueryString": true, "cookies": true,
		"headers": true, "queryStringParameters": true, "requestContext": true, "body": true, "isBase64Encoded": true}
	for k := range top {
		if !allowed[k] {
			t.Errorf("unexpected top-level key %q", k)
		}
	}
	for _, k := range []string{"version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext", "isBase64Encoded"} {
		if _, ok := top[k]; !ok {
			t.Errorf("top-level key %q missing", k)
		}
	}
}

// Lambda always names the port the client used, 443 or 80 by default.
func TestBuildEventForwardedHeaders(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		tls       bool
		wantProto string
		wantPort  string
	}{
		{"http with a port", testDomain + ":9000", false, "http", "9000"},
		{"http on the default port", testDomain, false, "http", "80"},
		{"https on the default port", testDomain, true, "https", "443"},
		{"https with a port", testDomain + ":8443", true, "https", "8443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := eventRequest("GET", "/", "", http.Header{"X-Forwarded-For": {"10.9.9.9"}})
			r.Host = tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			payload, err := buildEvent(r, testID, testDomain, "/", nil)
			if err != nil {
				t.Fatal(err)
			}
			var ev events.LambdaFunctionURLRequest
			if err := json.Unmarshal(payload, &ev); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"host": tt.host, "x-forwarded-proto": tt.wantProto, "x-forwarded-port": tt.wantPort, "x-forwarded-for": "192.0.2.7"}
			for k, v := range want {
				if ev.Headers[k] != v {
					t.Errorf("%s: %q, want %q", k, ev.Headers[k], v)
				}
			}
		})
	}
}

// Lambda's 6 MB limit is on the event, so a binary body, base64-encoded,
// reaches it at about 4.5 MB.
func TestBuildEventSizeLimit(t *testing.T) {
	tests := []struct {
		name        string
		size        int
		contentType string
		wantErr     bool
	}{
		{"text body that leaves room for the rest of the event", MaxPayload - 4096, "text/plain", false},
		{"text body of exactly 6 MB: the event is over", MaxPayload, "text/plain", true},
		{"one byte over 6 MB", MaxPayload + 1, "text/plain", true},
		{"far over 6 MB", 3 * MaxPayload, "text/plain", true},
		{"5 MB of HTML: not escaped, so under 6 MB", 5 << 20, "text/html", false},
		{"binary body of 4 MB: 5.3 MB in base64", 4 << 20, "application/octet-stream", false},
		{"binary body of 5 MB: 6.7 MB in base64", 5 << 20, "application/octet-stream", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "a"
			if tt.contentType == "text/html" {
				body = "<"
			}
			r := httptest.NewRequest("POST", "http://"+testHost+"/", bytes.NewReader(bytes.Repeat([]byte(body), tt.size/len(body))))
			r.Header.Set("Content-Type", tt.contentType)
			payload, err := buildEvent(r, testID, testDomain, "/", nil)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("buildEvent: %v", err)
				}
				var ev events.LambdaFunctionURLRequest
				if err := json.Unmarshal(payload, &ev); err != nil || ev.Body == "" || len(payload) > MaxPayload {
					t.Fatalf("event of %d bytes with a body of %d (%v)", len(payload), len(ev.Body), err)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Status != http.StatusRequestEntityTooLarge || le.Type != "RequestTooLargeException" {
				t.Fatalf("err %v, want a 413 RequestTooLargeException", err)
			}
		})
	}
}

func TestIsText(t *testing.T) {
	tests := map[string]bool{
		"text/plain":                        true,
		"text/html; charset=utf-8":          true,
		"application/json":                  true,
		"Application/JSON; charset=utf-8":   true,
		"application/ld+json":               true,
		"application/atom+xml":              true,
		"application/xml":                   true,
		"application/javascript":            true,
		"application/x-www-form-urlencoded": true,
		"application/graphql":               true,
		"application/octet-stream":          false,
		"image/png":                         false,
		"multipart/form-data; boundary=x":   false,
		"":                                  false,
		"not a type;;":                      false,
	}
	for ct, want := range tests {
		if got := isText(ct); got != want {
			t.Errorf("isText(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestCallerOf(t *testing.T) {
	tests := []struct {
		auth, want string
	}{
		{"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc", "AKIDEXAMPLE"},
		{"AWS4-HMAC-SHA256 Credential=ASIATEMP/20240101/us-east-1/lambda/aws4_request,SignedHeaders=host,Signature=abc", "ASIATEMP"},
		{"", ""},
		{"Bearer token", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		if got := callerOf(r).accessKey; got != tt.want {
			t.Errorf("callerOf(%q) = %q, want %q", tt.auth, got, tt.want)
		}
	}
}
