package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/chromedp/chromedp"

	"github.com/hearthdev/hearth/internal/console"
)

// received is a request as the test server got it.
type received struct {
	method, requestURI, host string
	header                   http.Header
	body                     []byte
}

// recorder serves the console under console.Path and records every other
// request, answering 204.
type recorder struct {
	mu   sync.Mutex
	last map[string]received // by X-Test-Case
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, console.Path) {
		console.Handler().ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.last[r.Header.Get("X-Test-Case")] = received{method: r.Method, requestURI: r.RequestURI, host: r.Host, header: r.Header.Clone(), body: body}
	rec.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// The page's signer (sigv4.js, through api.js's signedRequest) against
// aws-sdk-go-v2's v4 signer: for fixed keys, date and requests (paths and
// queries with characters that need escaping, a qualifier's ':', a '%',
// bodies, a header with runs of spaces, another region and service), the
// browser sends each request to a test server, which signs what it
// received again with the SDK, as the daemon's verifier does (the signed
// headers only, the path and query as received), and the two
// Authorization headers must be the same.
func TestConsoleSigV4MatchesTheSDK(t *testing.T) {
	rec := &recorder{last: map[string]received{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tab := newBrowser(ctx, t)
	if _, err := chromedp.Run(tab, chromedp.Navigate(srv.URL+console.Path)); err != nil {
		t.Fatal(err)
	}

	const (
		accessKey = "AKIDEXAMPLE"
		secretKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	)
	when := time.Date(2026, 3, 1, 23, 59, 58, 0, time.UTC)

	type input struct {
		Method   string            `json:"method"`
		Segments []string          `json:"segments"` // the path, each encoded by api.js's p
		Query    [][2]string       `json:"query"`
		Headers  map[string]string `json:"headers"`  // signed
		Unsigned map[string]string `json:"unsigned"` // sent only
		Body     string            `json:"body"`
		Service  string            `json:"service"`
		Region   string            `json:"region"`
	}
	tests := []struct {
		name    string
		in      input
		wantURI string // as the server received it
	}{
		{"a list with a marker of reserved characters",
			input{Method: "GET", Segments: []string{"2015-03-31", "functions"},
				Query: [][2]string{{"MaxItems", "50"}, {"Marker", "a b+c/d?e=f&g=h;i,j:k@l$m%n#o[p]q!r'(s)*t~u"}}},
			"/2015-03-31/functions?MaxItems=50&Marker=a%20b%2Bc%2Fd%3Fe%3Df%26g%3Dh%3Bi%2Cj%3Ak%40l%24m%25n%23o%5Bp%5Dq%21r%27%28s%29%2At~u"},
		{"an invocation of a name:qualifier with a body",
			input{Method: "POST", Segments: []string{"2015-03-31", "functions", "hello:prod", "invocations"},
				Headers: map[string]string{"X-Amz-Invocation-Type": "RequestResponse"}, Unsigned: map[string]string{"x-amz-log-type": "Tail"},
				Body: `{"name":"Console ✓","path":"/a b?c"}`},
			"/2015-03-31/functions/hello%3Aprod/invocations"},
		{"an ARN with its qualifier, and a Qualifier in the query",
			input{Method: "GET", Segments: []string{"2015-03-31", "functions", "arn:aws:lambda:local:000000000000:function:hello"},
				Query: [][2]string{{"Qualifier", "$LATEST"}}},
			"/2015-03-31/functions/arn%3Aaws%3Alambda%3Alocal%3A000000000000%3Afunction%3Ahello?Qualifier=%24LATEST"},
		{"a path segment with % and other characters to escape",
			input{Method: "GET", Segments: []string{"hearth", "v1", "functions", "odd%name (1)*!'~", "logs"},
				Query: [][2]string{{"tail", "200"}, {"follow", "1"}}},
			"/hearth/v1/functions/odd%25name%20%281%29%2A%21%27~/logs?tail=200&follow=1"},
		{"a key repeated, keys that sort differently encoded, and non-ASCII",
			input{Method: "DELETE", Segments: []string{"2025-09-09", "microvms", "mvm-0123"},
				Query: [][2]string{{"k", "b"}, {"k", "a"}, {"{x", "1"}, {"ax", "2"}, {"é", "ü"}, {"empty", ""}}},
			"/2025-09-09/microvms/mvm-0123?k=b&k=a&%7Bx=1&ax=2&%C3%A9=%C3%BC&empty="},
		{"SQS's JSON protocol, a header with runs of spaces, another region",
			input{Method: "POST", Segments: []string{""}, Service: "sqs", Region: "eu-west-1",
				Headers:  map[string]string{"X-Amz-Target": "AmazonSQS.ListQueues", "X-Spaced": "  a   b  c  "},
				Unsigned: map[string]string{"content-type": "application/x-amz-json-1.0"}, Body: `{"QueueNamePrefix":"j"}`},
			"/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in.Service == "" {
				tt.in.Service = "lambda"
			}
			if tt.in.Region == "" {
				tt.in.Region = "local"
			}
			in, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			// The page signs and sends; the case's name rides unsigned.
			js := fmt.Sprintf(`(async () => {
				const api = await import(%q);
				const c = %s;
				const keys = {accessKeyId: %q, secretAccessKey: %q, region: c.region};
				const body = c.method === "GET" || c.method === "DELETE" ? undefined : c.body;
				const {url, init} = await api.signedRequest(keys, c.method, api.p(...c.segments), {query: c.query || [], headers: c.headers || {},
					unsigned: {...(c.unsigned || {}), "x-test-case": %q}, body, service: c.service, now: new Date(%q)});
				const resp = await fetch(url, {...init, cache: "no-store", credentials: "omit"});
				return {url, status: resp.status, authorization: init.headers["authorization"]};
			})()`, console.Path+"api.js", in, accessKey, secretKey, tt.name, when.Format(time.RFC3339))
			type sent struct {
				URL           string `json:"url"`
				Status        int    `json:"status"`
				Authorization string `json:"authorization"`
			}
			got, err := chromedp.Run(tab, chromedp.Evaluate[sent](js, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("the page: %v", err)
			}
			rec.mu.Lock()
			r, ok := rec.last[tt.name]
			rec.mu.Unlock()
			if !ok || got.Status != http.StatusNoContent {
				t.Fatalf("the request did not arrive: %+v", got)
			}
			if r.requestURI != tt.wantURI || got.URL != tt.wantURI {
				t.Errorf("sent %q, received %q, want %q", got.URL, r.requestURI, tt.wantURI)
			}
			wantBody := tt.in.Body
			if r.method == "GET" || r.method == "DELETE" {
				wantBody = ""
			}
			if string(r.body) != wantBody {
				t.Errorf("body %q, want %q", r.body, wantBody)
			}

			// The SDK signs the request as received, over the headers
			// the table signs, for the same keys and time.
			ru, err := url.ParseRequestURI(r.requestURI)
			if err != nil {
				t.Fatal(err)
			}
			u := &url.URL{Scheme: "http", Host: r.host, Path: ru.Path, RawPath: ru.RawPath, RawQuery: ru.RawQuery}
			again, err := http.NewRequest(r.method, u.String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			again.Host = r.host
			for k, v := range tt.in.Headers {
				again.Header.Set(k, v)
			}
			sum := sha256.Sum256([]byte(wantBody))
			payload := hex.EncodeToString(sum[:])
			again.Header.Set("X-Amz-Content-Sha256", payload)
			creds := aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey}
			if err := v4.NewSigner().SignHTTP(ctx, creds, again, payload, tt.in.Service, tt.in.Region, when); err != nil {
				t.Fatal(err)
			}
			want := again.Header.Get("Authorization")
			if got.Authorization != want || r.header.Get("Authorization") != want {
				t.Errorf("Authorization\n page: %s\n sent: %s\n  SDK: %s", got.Authorization, r.header.Get("Authorization"), want)
			}
			if d := r.header.Get("X-Amz-Date"); d != "20260301T235958Z" {
				t.Errorf("X-Amz-Date %q", d)
			}
			if h := r.header.Get("X-Amz-Content-Sha256"); h != payload {
				t.Errorf("X-Amz-Content-Sha256 %q, want %q", h, payload)
			}
		})
	}
}
