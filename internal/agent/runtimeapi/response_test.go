package runtimeapi

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// post sends a runtime's POST; with trailers the body goes chunked, as a
// streaming runtime sends it, and the trailers follow it.
func post(t *testing.T, url string, header map[string]string, body io.Reader, trailer map[string]string) (int, map[string]string) {
	t.Helper()
	if trailer != nil {
		body = struct{ io.Reader }{body} // no known length: chunked
	}
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if trailer != nil {
		req.Trailer = http.Header{}
		for k, v := range trailer {
			req.Trailer.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var obj map[string]string
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatalf("answer %q is not a JSON object: %v", b, err)
	}
	return resp.StatusCode, obj
}

func errorTrailers(errType string, obj string) map[string]string {
	return map[string]string{TrailerErrorType: errType, TrailerErrorBody: base64.StdEncoding.EncodeToString([]byte(obj))}
}

// POST /invocation/{id}/response for an invocation that takes its response
// whole.
func TestResponse(t *testing.T) {
	exactly := strings.Repeat("a", MaxResponseBytes)
	tests := []struct {
		name      string
		id        string
		body      string
		trailer   map[string]string
		status    int
		errorType string // of the API's answer
		response  string // what reached the invocation, if it succeeded
		failure   string // error type and body it failed with, if it failed
	}{
		{name: "accepted", id: "req-1", body: `{"ok":true}`, status: 202, response: `{"ok":true}`},
		{name: "empty", id: "req-1", body: ``, status: 202, response: ``},
		{name: "exactly the limit", id: "req-1", body: exactly, status: 202, response: exactly},
		{name: "unknown request id", id: "req-0", body: `{}`, status: 400, errorType: "InvalidRequestID"},
		{name: "over the limit", id: "req-1", body: exactly + "a", status: 413, errorType: "RequestEntityTooLarge",
			failure: `Function.ResponseSizeTooLarge {"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`},
		{name: "over the limit, unknown id", id: "req-0", body: exactly + "a", status: 400, errorType: "InvalidRequestID"},
		{name: "chunked without an error", id: "req-1", body: `{"ok":1}`, trailer: map[string]string{}, status: 202, response: `{"ok":1}`},
		// A streaming runtime whose caller takes the response whole: the
		// error in its trailers fails the invocation.
		{name: "error in the trailers", id: "req-1", body: `partial`, trailer: errorTrailers("Runtime.Panic", `{"errorMessage":"boom","errorType":"Runtime.Panic"}`),
			status: 202, failure: `Runtime.Panic {"errorMessage":"boom","errorType":"Runtime.Panic"}`},
		{name: "error trailer with a bad body", id: "req-1", body: `partial`, trailer: map[string]string{TrailerErrorType: "E", TrailerErrorBody: "not base64!"},
			status: 202, failure: `E {"errorMessage":"the function failed while streaming its response","errorType":"E"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newTestServer(t)
			status, obj := post(t, srv.URL+prefix+"/invocation/"+tt.id+"/response", nil, strings.NewReader(tt.body), tt.trailer)
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, obj, tt.status)
			}
			if tt.errorType != "" && (obj["errorType"] != tt.errorType || obj["errorMessage"] == "") {
				t.Errorf("answer %v, want an error object of type %s", obj, tt.errorType)
			}
			if tt.status == 202 && obj["status"] != "OK" {
				t.Errorf("answer %v, want {status: OK}", obj)
			}
			resp, responded := f.responses["req-1"]
			if responded != (tt.response != "" || (tt.status == 202 && tt.failure == "")) || resp != tt.response {
				t.Errorf("response %.40q (%v), want %.40q", resp, responded, tt.response)
			}
			if got := f.failures["req-1"]; got != tt.failure {
				t.Errorf("failure %.200q, want %.200q", got, tt.failure)
			}
		})
	}
}

// A streamed response is forwarded chunk by chunk; an error in its trailers
// ends it as a function error.
func TestStreamingResponse(t *testing.T) {
	big := strings.Repeat("s", 100<<10) // several reads of the agent's buffer
	tests := []struct {
		name        string
		id          string
		body        string
		trailer     map[string]string
		status      int
		errorType   string
		failure     string
		wantChunked string
	}{
		{name: "whole", id: "req-1", body: "data: 1\n\ndata: 2\n\n", trailer: map[string]string{}, status: 202, wantChunked: "data: 1\n\ndata: 2\n\n"},
		{name: "large", id: "req-1", body: big, trailer: map[string]string{}, status: 202, wantChunked: big},
		{name: "error midway", id: "req-1", body: "first part", trailer: errorTrailers("Runtime.StreamFail", `{"errorMessage":"midway","errorType":"Runtime.StreamFail"}`),
			status: 202, failure: `Runtime.StreamFail {"errorMessage":"midway","errorType":"Runtime.StreamFail"}`, wantChunked: "first part"},
		{name: "unknown request id", id: "req-0", body: "x", trailer: map[string]string{}, status: 400, errorType: "InvalidRequestID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newTestServer(t)
			f.stream = true
			f.event.RequestID = "req-1"
			header := map[string]string{"Content-Type": "text/event-stream", "Lambda-Runtime-Function-Response-Mode": "streaming"}
			status, obj := post(t, srv.URL+prefix+"/invocation/"+tt.id+"/response", header, strings.NewReader(tt.body), tt.trailer)
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, obj, tt.status)
			}
			if tt.errorType != "" && obj["errorType"] != tt.errorType {
				t.Errorf("answer %v, want an error of type %s", obj, tt.errorType)
			}
			var got strings.Builder
			for i, c := range f.chunks {
				got.WriteString(c.body)
				if want := map[bool]string{true: "text/event-stream", false: ""}[i == 0]; c.contentType != want {
					t.Errorf("chunk %d content type %q, want %q", i, c.contentType, want)
				}
			}
			if got.String() != tt.wantChunked {
				t.Errorf("chunks %.40q, want %.40q", got.String(), tt.wantChunked)
			}
			_, responded := f.responses["req-1"]
			if wantResponded := tt.status == 202 && tt.failure == ""; responded != wantResponded || f.responses["req-1"] != "" {
				t.Errorf("responded %v (%q), want %v with no body: the chunks carried it", responded, f.responses["req-1"], wantResponded)
			}
			if f.failures["req-1"] != tt.failure {
				t.Errorf("failure %q, want %q", f.failures["req-1"], tt.failure)
			}
		})
	}
}

// A stream over Lambda's 200 MB is cut and fails the invocation.
func TestStreamingResponseOverTheLimit(t *testing.T) {
	f, srv := newTestServer(t)
	f.stream = true
	body := io.LimitReader(zeros{}, guestproto.MaxStreamBytes+1)
	status, obj := post(t, srv.URL+prefix+"/invocation/req-1/response", nil, body, map[string]string{})
	if status != http.StatusRequestEntityTooLarge || obj["errorType"] != "RequestEntityTooLarge" {
		t.Errorf("status %d %v, want 413", status, obj)
	}
	if !strings.HasPrefix(f.failures["req-1"], "Function.ResponseSizeTooLarge ") {
		t.Errorf("failure %q", f.failures["req-1"])
	}
	n := 0
	for _, c := range f.chunks {
		n += c.n
	}
	if n > guestproto.MaxStreamBytes {
		t.Errorf("%d bytes forwarded, over the %d limit", n, guestproto.MaxStreamBytes)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
