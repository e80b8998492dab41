package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/store"
)

type testKeys map[string]string

func (k testKeys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

// noInvoker stands in for the invocation path: it answers every
// invocation with an error, so a test that invokes by mistake fails.
type noInvoker struct{}

func (noInvoker) Invoke(context.Context, invoke.Request) (*invoke.Result, error) {
	return nil, errors.New("the api unit tests do not invoke")
}
func (noInvoker) Retire(context.Context, string)                  {}
func (noInvoker) Published(context.Context, string, string) error { return nil }

// newTestAPI is the API over a real store in a temporary folder, with
// ValidateCode accepting any non-empty zip.
func newTestAPI(t *testing.T) *API {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(Config{Store: st, Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local",
		MaxConcurrency: 8, MaxZipBytes: 50 << 20, MaxUnzippedBytes: 262144000,
		ValidateCode: func([]byte) error { return nil }})
}

// call sends a request signed as the SDK signs it and returns the status,
// headers and body.
func call(t *testing.T, a *API, method, target string, body any) (int, http.Header, []byte) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	r := httptest.NewRequest(method, "http://127.0.0.1:9000"+target, bytes.NewReader(b))
	sum := sha256.Sum256(b)
	creds := aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "lambda", "local", time.Now()); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	return w.Code, w.Header(), w.Body.Bytes()
}

// lambdaError reads an error answer: its X-Amzn-ErrorType and its body.
func lambdaError(t *testing.T, h http.Header, body []byte) (typ, errType, message string) {
	t.Helper()
	var e struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return h.Get("X-Amzn-ErrorType"), e.Type, e.Message
}

func createFn(t *testing.T, a *API, name string, extra map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"FunctionName": name, "Role": "r", "Code": map[string]any{"ZipFile": []byte("zip")}}
	for k, v := range extra {
		body[k] = v
	}
	code, h, b := call(t, a, "POST", "/2015-03-31/functions", body)
	if code != http.StatusCreated {
		typ, _, msg := lambdaError(t, h, b)
		t.Fatalf("create %s: %d %s %s", name, code, typ, msg)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
