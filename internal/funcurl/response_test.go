package funcurl

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// badGateway is Lambda's answer when a function's response cannot be
// mapped.
const badGateway = `{"Message":"Internal Server Error"}` + "\n"

func TestWriteResponse(t *testing.T) {
	binary := []byte{0, 1, 2, 0xff, 0xfe, 'x'}
	big := strings.Repeat("a", MaxPayload+1)
	type responseCase struct {
		name        string
		payload     string
		wantStatus  int
		wantHeaders map[string]string // "" means absent
		wantCookies []string
		wantBody    string
	}
	tests := []responseCase{
		{
			name:       "statusCode object with headers, cookies and a body",
			payload:    `{"statusCode":201,"headers":{"Content-Type":"text/plain","My-Custom-Header":"Custom Value"},"body":"created","cookies":["a=1; Max-Age=60","b=2; Path=/"],"isBase64Encoded":false}`,
			wantStatus: 201, wantHeaders: map[string]string{"Content-Type": "text/plain", "My-Custom-Header": "Custom Value"},
			wantCookies: []string{"a=1; Max-Age=60", "b=2; Path=/"}, wantBody: "created",
		},
		{
			name:       "lower-case header names are sent",
			payload:    `{"statusCode":200,"headers":{"content-type":"text/html","x-lower":"yes"},"body":"<p>"}`,
			wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "text/html", "X-Lower": "yes"}, wantBody: "<p>",
		},
		{
			name:       "no content type: application/json",
			payload:    `{"statusCode":204}`,
			wantStatus: 204, wantHeaders: map[string]string{"Content-Type": "application/json"},
		},
		{
			name:       "base64 body is decoded",
			payload:    `{"statusCode":200,"headers":{"Content-Type":"application/octet-stream"},"body":"` + base64.StdEncoding.EncodeToString(binary) + `","isBase64Encoded":true}`,
			wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "application/octet-stream"}, wantBody: string(binary),
		},
		{
			name:       "base64 flag off: the body is sent as it is",
			payload:    `{"statusCode":200,"body":"aGk=","isBase64Encoded":false}`,
			wantStatus: 200, wantBody: "aGk=",
		},
		{
			// Payload format 2.0 has no multiValueHeaders: Lambda ignores them.
			name:       "multiValueHeaders are ignored",
			payload:    `{"statusCode":200,"multiValueHeaders":{"X-Multi":["a","b"]},"body":"ok"}`,
			wantStatus: 200, wantHeaders: map[string]string{"X-Multi": ""}, wantBody: "ok",
		},
		{
			name:       "plain JSON object: 200 with the object as the body",
			payload:    `{"message":"Hello, world!","body":"not a response"}`,
			wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "application/json"},
			wantBody: `{"message":"Hello, world!","body":"not a response"}`,
		},
		{
			name:       "JSON string: 200 with the quoted string as the body",
			payload:    `"Hello, world!"`,
			wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "application/json"}, wantBody: `"Hello, world!"`,
		},
		{name: "JSON number", payload: `42`, wantStatus: 200, wantHeaders: map[string]string{"Content-Type": "application/json"}, wantBody: `42`},
		{name: "JSON array", payload: `[1,{"statusCode":500}]`, wantStatus: 200, wantBody: `[1,{"statusCode":500}]`},
		{name: "JSON null", payload: `null`, wantStatus: 200, wantBody: `null`},
		{name: "invalid JSON", payload: `{"statusCode":200,`, wantStatus: 502, wantBody: badGateway},
		{name: "not JSON at all", payload: `Hello`, wantStatus: 502, wantBody: badGateway},
		{name: "bad base64", payload: `{"statusCode":200,"body":"%%%","isBase64Encoded":true}`, wantStatus: 502, wantBody: badGateway},
		{name: "statusCode of the wrong type", payload: `{"statusCode":{"code":200}}`, wantStatus: 502, wantBody: badGateway},
		{name: "body over 6 MB", payload: `{"statusCode":200,"body":"` + big + `"}`, wantStatus: 502, wantBody: badGateway},
	}
	for _, code := range []int{0, 99, 600, -200} {
		// An impossible status is the function's fault: 502, and none of
		// its headers or cookies reach the client.
		p, err := json.Marshal(map[string]any{"statusCode": code, "headers": map[string]string{"X-From-Function": "1", "Content-Type": "text/plain"},
			"cookies": []string{"leak=1"}, "body": "x"})
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, responseCase{
			name: fmt.Sprintf("statusCode %d", code), payload: string(p), wantStatus: 502, wantBody: badGateway,
			wantHeaders: map[string]string{"X-From-Function": "", "Content-Type": "application/json", "X-Amzn-Errortype": "BadGatewayException"},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeResponse(w, []byte(tt.payload))
			res := w.Result()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
			for k, v := range tt.wantHeaders {
				if got := res.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, tt.wantCookies) {
				t.Errorf("Set-Cookie %q, want %q", got, tt.wantCookies)
			}
			if got := w.Body.String(); got != tt.wantBody {
				if len(got) > 200 {
					got = got[:200] + "…"
				}
				t.Errorf("body %q, want %q", got, tt.wantBody)
			}
		})
	}
}

// message is the error body the handler sends in all its error paths.
func TestMessage(t *testing.T) {
	tests := []struct {
		status   int
		wantType string
	}{
		{http.StatusNotFound, "NotFoundException"},
		{http.StatusForbidden, "ForbiddenException"},
		{http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException"},
		{http.StatusTooManyRequests, "TooManyRequestsException"},
		{http.StatusBadGateway, "BadGatewayException"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		message(w, tt.status, "some text")
		var body struct{ Message string }
		if w.Code != tt.status || w.Header().Get("X-Amzn-ErrorType") != tt.wantType ||
			w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Message != "some text" {
			t.Errorf("message(%d): %d %v %q", tt.status, w.Code, w.Header(), w.Body.String())
		}
	}
}
