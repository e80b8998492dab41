package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// signed is a request to target with body, signed by key AKIDTEST for
// service and region at time at, as the SDK signs it.
func signed(t *testing.T, target, body, service, region string, at time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest("POST", target, strings.NewReader(body))
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), service, region, at); err != nil {
		t.Fatal(err)
	}
	return r
}

// editAuth rewrites one field of r's Authorization header.
func editAuth(r *http.Request, from, to string) {
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), from, to, 1))
}

func TestVerify(t *testing.T) {
	now := time.Now().UTC()
	const api = "http://127.0.0.1:9000/2015-03-31/functions"
	tests := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		region  string // the verifier's; "" is the default, local
		wantErr string // the exception's type; "" for none
		wantMsg string // in its message
	}{
		{"signed as the SDK signs", func(t *testing.T) *http.Request { return signed(t, api, `{}`, "lambda", "local", now) }, "", "", ""},
		{"a function URL, signed for lambda", func(t *testing.T) *http.Request {
			return signed(t, "http://abc.lambda-url.localhost:9080/x?y=1", `hi`, "lambda", "local", now)
		}, "", "", ""},
		{"the daemon's own region", func(t *testing.T) *http.Request { return signed(t, api, `{}`, "lambda", "eu-west-1", now) }, "eu-west-1", "", ""},
		{"not signed", func(t *testing.T) *http.Request { return httptest.NewRequest("POST", api, strings.NewReader(`{}`)) }, "", "UnrecognizedClientException", "not signed"},
		{"signed for another service", func(t *testing.T) *http.Request { return signed(t, api, `{}`, "s3", "local", now) }, "", "InvalidSignatureException", "service"},
		{"signed for another region", func(t *testing.T) *http.Request { return signed(t, api, `{}`, "lambda", "us-west-2", now) }, "", "InvalidSignatureException", "region"},
		{"signed for the default region on a daemon in another", func(t *testing.T) *http.Request { return signed(t, api, `{}`, "lambda", "local", now) }, "eu-west-1", "InvalidSignatureException", "region"},
		{"signed for another host", func(t *testing.T) *http.Request {
			r := signed(t, "http://other.example:9000/2015-03-31/functions", `{}`, "lambda", "local", now)
			r.Host = "127.0.0.1:9000"
			return r
		}, "", "InvalidSignatureException", "does not match"},
		{"signed for another function URL", func(t *testing.T) *http.Request {
			r := signed(t, "http://abc.lambda-url.localhost:9080/x", `hi`, "lambda", "local", now)
			r.Host = "xyz.lambda-url.localhost:9080"
			return r
		}, "", "InvalidSignatureException", "does not match"},
		{"host not among the signed headers", func(t *testing.T) *http.Request {
			r := signed(t, api, `{}`, "lambda", "local", now)
			editAuth(r, ";host;", ";")
			return r
		}, "", "InvalidSignatureException", "'Host' must be a 'SignedHeader'"},
		{"scope of another day", func(t *testing.T) *http.Request {
			r := signed(t, api, `{}`, "lambda", "local", now)
			editAuth(r, "/"+now.Format("20060102")+"/", "/"+now.Add(-48*time.Hour).Format("20060102")+"/")
			return r
		}, "", "InvalidSignatureException", "date"},
		{"unknown key", func(t *testing.T) *http.Request {
			r := signed(t, api, `{}`, "lambda", "local", now)
			editAuth(r, "Credential=AKIDTEST/", "Credential=AKIDOTHER/")
			return r
		}, "", "UnrecognizedClientException", "invalid"},
		{"too old", func(t *testing.T) *http.Request {
			return signed(t, api, `{}`, "lambda", "local", now.Add(-20*time.Minute))
		}, "", "InvalidSignatureException", "expired"},
		{"body changed after signing", func(t *testing.T) *http.Request {
			r := signed(t, api, `{"a":1}`, "lambda", "local", now)
			r.Body = io.NopCloser(strings.NewReader(`{"a":2}`))
			return r
		}, "", "InvalidSignatureException", "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier(testKeys{"AKIDTEST": "secret"}).InRegion(tt.region)
			err := v.Verify(tt.req(t))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != tt.wantErr || !strings.Contains(le.Message, tt.wantMsg) {
				t.Fatalf("Verify: %v, want %s with %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// countingBody counts what is read from it.
type countingBody struct {
	r io.Reader
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}
func (b *countingBody) Close() error { return nil }

// A stranger must not make the API read a body: an unsigned request, or
// one that declares more than the API takes, is refused before a byte of
// its body is read.
func TestAPIRefusesBeforeReadingTheBody(t *testing.T) {
	a := newTestAPI(t)
	tests := []struct {
		name       string
		sign       bool
		length     int64
		wantStatus int
		wantType   string
	}{
		{"unsigned", false, 1 << 20, 403, "UnrecognizedClientException"},
		{"unsigned, no length", false, -1, 403, "UnrecognizedClientException"},
		{"signed, declared over 70 MB", true, MaxRequestBytes + 1, 413, "RequestTooLargeException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &countingBody{r: strings.NewReader(strings.Repeat("x", 1<<20))}
			var r *http.Request
			if tt.sign {
				r = signed(t, "http://127.0.0.1:9000/2015-03-31/functions", "", "lambda", "local", time.Now())
			} else {
				r = httptest.NewRequest("POST", "http://127.0.0.1:9000/2015-03-31/functions", nil)
			}
			r.Body, r.ContentLength = body, tt.length
			w := httptest.NewRecorder()
			a.ServeHTTP(w, r)
			typ, _, _ := lambdaError(t, w.Header(), w.Body.Bytes())
			if w.Code != tt.wantStatus || typ != tt.wantType {
				t.Errorf("got %d %s, want %d %s", w.Code, typ, tt.wantStatus, tt.wantType)
			}
			if body.n != 0 {
				t.Errorf("%d bytes of the body read before it was refused", body.n)
			}
		})
	}
}
