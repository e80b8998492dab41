package funcurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// FuzzBuildEvent turns arbitrary requests into payload format 2.0 events.
// buildEvent must never panic; its event must be valid JSON that
// aws-lambda-go's LambdaFunctionURLRequest decodes, carry the request's
// method, path, query and headers, and give the function the body's bytes
// exactly when it sends them base64-encoded (and, as text, whenever they are
// valid UTF-8).
//
// headers holds "Name: value" lines, as on the wire.
func FuzzBuildEvent(f *testing.F) {
	f.Add("GET", "/", "", "User-Agent: curl/8\n", []byte(nil), false)
	f.Add("POST", "/api/items", "a=1&a=2&b=%20x", "Content-Type: application/json\nCookie: s=1; t=2\n", []byte(`{"name":"Ada <3"}`), false)
	f.Add("PUT", "/upload/ü", "", "Content-Type: application/octet-stream\n", []byte{0, 1, 2, 0xff, 0xfe}, false)
	f.Add("POST", "/", "x=%zz", "Content-Type: text/plain; charset=latin1\nX-Dup: 1\nx-dup: 2\n", []byte("caf\xe9"), true)
	f.Add("DELETE", "/a%2Fb", ";;&=&", "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00\nContent-Type: ()\n", []byte("\"\\\u2028</script>"), true)
	f.Fuzz(func(t *testing.T, method, path, query, headers string, body []byte, iam bool) {
		u := &url.URL{Path: path, RawQuery: query}
		r := &http.Request{
			Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: testHost, RemoteAddr: "192.0.2.7:51234",
			Body: io.NopCloser(bytes.NewReader(body)),
		}
		for _, line := range strings.Split(headers, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		var caller *iamCaller
		if iam {
			caller = callerOf(r)
		}
		payload, err := buildEvent(r, testID, testDomain, u.EscapedPath(), caller)
		if err != nil {
			if le, ok := lambdaerr.As(err); !ok || le.Type != "RequestTooLargeException" {
				t.Fatalf("buildEvent: %v", err)
			}
			return
		}
		if !json.Valid(payload) {
			t.Fatalf("the event is not valid JSON: %q", payload)
		}
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatalf("aws-lambda-go cannot decode the event: %v", err)
		}
		if ev.Version != "2.0" || ev.RawPath != u.EscapedPath() {
			t.Errorf("version %q, rawPath %q, want 2.0 and %q", ev.Version, ev.RawPath, u.EscapedPath())
		}
		// JSON carries text: bytes that are not UTF-8 arrive as U+FFFD.
		if utf8.ValidString(query) && ev.RawQueryString != query {
			t.Errorf("rawQueryString %q, want %q", ev.RawQueryString, query)
		}
		if utf8.ValidString(method) && ev.RequestContext.HTTP.Method != method {
			t.Errorf("method %q, want %q", ev.RequestContext.HTTP.Method, method)
		}
		for k := range ev.Headers {
			if k != strings.ToLower(k) || k == "cookie" {
				t.Errorf("header %q in the event", k)
			}
		}
		if ev.Headers["host"] != testHost {
			t.Errorf("host header %q, want %q", ev.Headers["host"], testHost)
		}
		for _, c := range ev.Cookies {
			if c == "" || c != strings.TrimSpace(c) || strings.Contains(c, ";") {
				t.Errorf("cookie %q", c)
			}
		}
		switch {
		case ev.IsBase64Encoded:
			got, err := base64.StdEncoding.DecodeString(ev.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("base64 body decodes to %q (%v), want %q", got, err, body)
			}
		case len(body) == 0:
			if ev.Body != "" {
				t.Errorf("body %q for an empty request body", ev.Body)
			}
		case utf8.Valid(body):
			if ev.Body != string(body) {
				t.Errorf("text body %q, want %q", ev.Body, body)
			}
		}
		if iam && (ev.RequestContext.Authorizer == nil || ev.RequestContext.Authorizer.IAM == nil) {
			t.Error("an AWS_IAM event without requestContext.authorizer.iam")
		}
	})
}
