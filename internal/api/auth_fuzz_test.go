package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	fuzzKeyID  = "AKIDEXAMPLE"
	fuzzSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	fuzzBody   = `{"name":"Ada"}`
)

var fuzzTime = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

// fuzzRequest is the request every fuzzed header is tried on, with the
// headers the SDK's signer set, Authorization aside.
func fuzzRequest(t testing.TB, signed http.Header) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://127.0.0.1:9000/2015-03-31/functions/hello/invocations?Qualifier=1", strings.NewReader(fuzzBody))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	for k, vs := range signed {
		r.Header[k] = slices.Clone(vs)
	}
	return r
}

// genuineAuth signs the request as the SDK does and returns its headers.
func genuineAuth(t testing.TB) http.Header {
	t.Helper()
	r := fuzzRequest(t, nil)
	sum := sha256.Sum256([]byte(fuzzBody))
	creds := aws.Credentials{AccessKeyID: fuzzKeyID, SecretAccessKey: fuzzSecret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", fuzzTime); err != nil {
		t.Fatal(err)
	}
	return r.Header
}

// authFields splits an Authorization header the strict way: the algorithm,
// then comma-separated name=value fields, each trimmed.
func authFields(h string) (fields [][2]string, ok bool) {
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return nil, false
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields = append(fields, [2]string{k, v})
	}
	return fields, true
}

// FuzzSigV4Auth tries arbitrary Authorization headers on one request that
// the SDK signed. Parsing and verifying must never panic, and a header may be
// accepted only if it says exactly what the genuine one says: the same
// credential scope, the same signed headers (SigV4 lists them lowercase and
// sorted, host included), the same signature, each once and nothing else. Anything more is a header two parsers can read two ways
// (the function URL reports the first Credential= as the caller, say), or a
// scope nobody signed.
func FuzzSigV4Auth(f *testing.F) {
	genuine := genuineAuth(f)
	auth := genuine.Get("Authorization")
	fields, ok := authFields(auth)
	if !ok || len(fields) != 3 {
		f.Fatalf("the SDK's header %q", auth)
	}
	want := map[string]string{}
	for _, kv := range fields {
		want[kv[0]] = kv[1]
	}
	cred, sig := want["Credential"], want["Signature"]
	scope := strings.TrimPrefix(cred, fuzzKeyID+"/")
	f.Add(auth)
	f.Add(strings.ReplaceAll(auth, ", ", ","))
	f.Add("AWS4-HMAC-SHA256 Credential=" + cred + ", SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("0", 64))
	f.Add("AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=")
	f.Add("AWS4-HMAC-SHA256 ")
	f.Add("Bearer " + sig)
	// Readable two ways: the function URL's caller is the first Credential=.
	f.Add("AWS4-HMAC-SHA256 X=Credential=AKIDOTHER/" + scope + ", " + strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "))
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDOTHER/" + scope + ", " + strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "))
	// A scope nobody signed: the date in the credential is not X-Amz-Date's.
	f.Add(strings.Replace(auth, "/20240101/", "/20991231/", 1))
	v := NewVerifier(testKeys{fuzzKeyID: fuzzSecret, "AKIDOTHER": "another secret"})
	v.now = func() time.Time { return fuzzTime.Add(time.Minute) }
	// Without this the property below could hold by refusing everything.
	if err := v.Verify(fuzzRequest(f, genuine)); err != nil {
		f.Fatalf("the genuine request is refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, h string) {
		parseAuth(h) // must not panic, whatever it makes of h
		r := fuzzRequest(t, genuine)
		r.Header.Set("Authorization", h)
		if err := v.Verify(r); err != nil {
			return
		}
		got, ok := authFields(h)
		if !ok || len(got) != 3 {
			t.Fatalf("accepted %q: want exactly Credential, SignedHeaders and Signature", h)
		}
		seen := map[string]bool{}
		for _, kv := range got {
			k, v := kv[0], kv[1]
			if _, known := want[k]; !known || seen[k] {
				t.Fatalf("accepted %q: field %q unknown or repeated", h, k)
			}
			seen[k] = true
			if v != want[k] {
				t.Fatalf("accepted %q: %s=%q, the signer wrote %q", h, k, v, want[k])
			}
		}
		// Verify put the body back for the handler.
		if b, _ := io.ReadAll(r.Body); !bytes.Equal(b, []byte(fuzzBody)) {
			t.Fatalf("the body after Verify is %q", b)
		}
	})
}
