package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// loopbackClient sends every request to addr whatever its host name, as
// curl and browsers do for *.localhost: Go's resolver does not.
func loopbackClient(addr string, tlsCfg *tls.Config) *http.Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

type urlDaemon struct {
	*daemon
	http, https *http.Client
}

func startWithURLs(t *testing.T) *urlDaemon {
	t.Helper()
	testvm.Driver(t)
	data := t.TempDir()
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{DataDir: data, Listen: "127.0.0.1:0", URLListen: "127.0.0.1:0", URLTLSListen: "127.0.0.1:0",
		KeepWarm: time.Minute, Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		_ = network.RemoveEnvNetworks(filepath.Join(data, "envs"))
	})
	profiles, _ := server.ReadCredentials(server.CredentialsFile(data))
	creds := aws.Credentials{AccessKeyID: profiles[0].AccessKeyID, SecretAccessKey: profiles[0].SecretAccessKey}
	d := &daemon{srv: srv, creds: creds, url: "http://" + srv.Addr()}
	d.client = lambda.New(lambda.Options{BaseEndpoint: aws.String(d.url), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")})
	pem, err := os.ReadFile(filepath.Join(data, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	addrs := srv.URLAddrs()
	return &urlDaemon{daemon: d, http: loopbackClient(addrs[0], nil), https: loopbackClient(addrs[1], &tls.Config{RootCAs: pool})}
}

func (u *urlDaemon) createURL(t *testing.T, function, auth string, cors *types.Cors) string {
	t.Helper()
	out, err := u.client.CreateFunctionUrlConfig(context.Background(), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String(function), AuthType: types.FunctionUrlAuthType(auth), Cors: cors})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.FunctionUrl)
}

func do(t *testing.T, c *http.Client, method, url string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestFunctionURLs(t *testing.T) {
	u := startWithURLs(t)
	ctx := context.Background()
	web := readZip(t, "./examples/web")
	for _, name := range []string{"web", "private"} {
		if _, err := u.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: web}, Timeout: aws.Int32(10)}); err != nil {
			t.Fatal(err)
		}
	}
	base := u.createURL(t, "web", "NONE", &types.Cors{AllowOrigins: []string{"http://page.test"}, AllowMethods: []string{"GET", "POST"},
		AllowHeaders: []string{"content-type"}, ExposeHeaders: []string{"x-custom"}, MaxAge: aws.Int32(300)})
	if !strings.Contains(base, ".lambda-url.localhost:") {
		t.Fatalf("function URL %q, want <id>.lambda-url.localhost:<port>", base)
	}
	got, err := u.client.GetFunctionUrlConfig(ctx, &lambda.GetFunctionUrlConfigInput{FunctionName: aws.String("web")})
	if err != nil || aws.ToString(got.FunctionUrl) != base || got.AuthType != types.FunctionUrlAuthTypeNone {
		t.Fatalf("get url config: %+v %v", got, err)
	}
	id := strings.TrimPrefix(strings.Split(base, ".")[0], "http://")

	t.Run("GET with query and cookies", func(t *testing.T) {
		resp, b := do(t, u.http, "GET", base+"greet?name=Ada", nil, map[string]string{"Cookie": "a=1; b=2"})
		var out struct {
			Message string
			Cookies []string
		}
		if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if out.Message != "Hello, Ada!" || strings.Join(out.Cookies, ";") != "a=1;b=2" {
			t.Errorf("got %+v", out)
		}
		if sc := resp.Header.Values("Set-Cookie"); len(sc) != 2 || !strings.HasPrefix(sc[0], "visited=yes") {
			t.Errorf("Set-Cookie %v", sc)
		}
	})

	t.Run("POST echo: the event as aws-lambda-go decodes it", func(t *testing.T) {
		before := time.Now()
		resp, b := do(t, u.http, "POST", base+"echo?x=1&x=2&y=z", []byte(`{"k":"v"}`),
			map[string]string{"Content-Type": "application/json", "User-Agent": "hearth-test", "X-Custom": "one"})
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(b, &ev); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		rc := ev.RequestContext
		checks := map[string][2]string{
			"version": {ev.Version, "2.0"}, "rawPath": {ev.RawPath, "/echo"}, "rawQueryString": {ev.RawQueryString, "x=1&x=2&y=z"},
			"query x": {ev.QueryStringParameters["x"], "1,2"}, "content-type": {ev.Headers["content-type"], "application/json"},
			"x-custom": {ev.Headers["x-custom"], "one"}, "body": {ev.Body, `{"k":"v"}`}, "method": {rc.HTTP.Method, "POST"},
			"path": {rc.HTTP.Path, "/echo"}, "sourceIp": {rc.HTTP.SourceIP, "127.0.0.1"}, "userAgent": {rc.HTTP.UserAgent, "hearth-test"},
			"apiId": {rc.APIID, id}, "domainPrefix": {rc.DomainPrefix, id},
		}
		for name, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s: %q, want %q", name, c[0], c[1])
			}
		}
		if ev.IsBase64Encoded || rc.RequestID == "" || rc.TimeEpoch < before.UnixMilli()-1000 {
			t.Errorf("base64 %v request id %q epoch %d", ev.IsBase64Encoded, rc.RequestID, rc.TimeEpoch)
		}
		// The same through the path prefix, where wildcard names don't resolve.
		_, b = do(t, u.http, "POST", "http://127.0.0.1/fn-url/"+id+"/echo", []byte(`{}`), map[string]string{"Content-Type": "application/json"})
		if err := json.Unmarshal(b, &ev); err != nil || ev.RawPath != "/echo" {
			t.Errorf("path-prefix route: %s", b)
		}
	})

	t.Run("binary body round trip", func(t *testing.T) {
		payload := make([]byte, 64<<10)
		_, _ = rand.Read(payload)
		resp, b := do(t, u.http, "POST", base+"binary", payload, map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != 200 || !bytes.Equal(b, payload) {
			t.Errorf("status %d, %d bytes back, equal %v", resp.StatusCode, len(b), bytes.Equal(b, payload))
		}
	})

	t.Run("2 MB response", func(t *testing.T) {
		resp, b := do(t, u.http, "GET", base+"big?bytes=2097152", nil, nil)
		if resp.StatusCode != 200 || len(b) != 2097152 {
			t.Errorf("status %d, %d bytes", resp.StatusCode, len(b))
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name, method, url string
			body              []byte
			want              int
		}{
			{"unknown URL", "GET", strings.Replace(base, id, "nosuchurl0", 1), nil, 404},
			{"request over 6 MB", "POST", base + "echo", bytes.Repeat([]byte("a"), 6<<20+1), 413},
			{"function error", "GET", base + "fail", nil, 502},
		}
		for _, tt := range tests {
			resp, b := do(t, u.http, tt.method, tt.url, tt.body, map[string]string{"Content-Type": "text/plain"})
			if resp.StatusCode != tt.want || !strings.Contains(string(b), `"Message"`) {
				t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, b, tt.want)
			}
		}
	})

	t.Run("CORS", func(t *testing.T) {
		resp, b := do(t, u.http, "OPTIONS", base+"greet", nil, map[string]string{"Origin": "http://page.test",
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "http://page.test" || h.Get("Access-Control-Allow-Methods") != "GET,POST" ||
			h.Get("Access-Control-Allow-Headers") != "content-type" || h.Get("Access-Control-Max-Age") != "300" || len(b) != 0 {
			t.Errorf("preflight: %d %v %q", resp.StatusCode, h, b)
		}
		resp, _ = do(t, u.http, "OPTIONS", base+"greet", nil, map[string]string{"Origin": "http://evil.test", "Access-Control-Request-Method": "GET"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from a foreign origin allowed: %v", resp.Header)
		}
		resp, _ = do(t, u.http, "GET", base+"greet", nil, map[string]string{"Origin": "http://page.test"})
		if resp.Header.Get("Access-Control-Allow-Origin") != "http://page.test" || resp.Header.Get("Access-Control-Expose-Headers") != "x-custom" {
			t.Errorf("actual request: %v", resp.Header)
		}
	})

	t.Run("HTTPS and HTTP/2", func(t *testing.T) {
		tlsBase := strings.Replace(base, "http://", "https://", 1)
		tlsBase = tlsBase[:strings.LastIndex(tlsBase, ":")] + "/"
		resp, b := do(t, u.https, "GET", tlsBase+"greet?name=TLS", nil, nil)
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), "Hello, TLS!") {
			t.Errorf("https: %d HTTP/%d %s", resp.StatusCode, resp.ProtoMajor, b)
		}
	})

	t.Run("update, list, throttle, delete", func(t *testing.T) {
		if _, err := u.client.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("web"),
			AuthType: types.FunctionUrlAuthTypeAwsIam}); err != nil {
			t.Fatal(err)
		}
		if resp, _ := do(t, u.http, "GET", base+"greet", nil, nil); resp.StatusCode != 403 {
			t.Errorf("unsigned after switching to AWS_IAM: %d", resp.StatusCode)
		}
		if _, err := u.client.UpdateFunctionUrlConfig(ctx, &lambda.UpdateFunctionUrlConfigInput{FunctionName: aws.String("web"),
			AuthType: types.FunctionUrlAuthTypeNone}); err != nil {
			t.Fatal(err)
		}
		list, err := u.client.ListFunctionUrlConfigs(ctx, &lambda.ListFunctionUrlConfigsInput{FunctionName: aws.String("web")})
		if err != nil || len(list.FunctionUrlConfigs) != 1 || aws.ToString(list.FunctionUrlConfigs[0].FunctionUrl) != base {
			t.Errorf("list: %+v %v", list, err)
		}
		if _, err := u.client.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("web"),
			ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
			t.Fatal(err)
		}
		if resp, _ := do(t, u.http, "GET", base+"greet", nil, nil); resp.StatusCode != 429 {
			t.Errorf("throttled: %d, want 429", resp.StatusCode)
		}
		if _, err := u.client.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("web")}); err != nil {
			t.Fatal(err)
		}
		if _, err := u.client.DeleteFunctionUrlConfig(ctx, &lambda.DeleteFunctionUrlConfigInput{FunctionName: aws.String("web")}); err != nil {
			t.Fatal(err)
		}
		if resp, _ := do(t, u.http, "GET", base+"greet", nil, nil); resp.StatusCode != 404 {
			t.Errorf("after delete: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("AWS_IAM", func(t *testing.T) {
		private := u.createURL(t, "private", "AWS_IAM", nil)
		resp, b := do(t, u.http, "GET", private+"greet", nil, nil)
		if resp.StatusCode != 403 || !strings.Contains(string(b), `"Message":"Forbidden"`) {
			t.Errorf("unsigned: %d %s", resp.StatusCode, b)
		}
		signed := func(body string) *http.Request {
			r, _ := http.NewRequest("POST", private+"echo", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			signRequest(t, r, body, u.creds, time.Now())
			return r
		}
		r := signed(`{"signed":true}`)
		resp, err := u.http.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		var ev events.LambdaFunctionURLRequest
		if resp.StatusCode != 200 || json.Unmarshal(b, &ev) != nil || ev.RequestContext.Authorizer == nil ||
			ev.RequestContext.Authorizer.IAM.AccessKey != u.creds.AccessKeyID {
			t.Errorf("signed: %d %s", resp.StatusCode, b)
		}
		r = signed(`{"signed":true}`)
		r.Body = io.NopCloser(strings.NewReader(`{"signed":TRUE}`)) // same length, other bytes
		resp, err = u.http.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("tampered: %d", resp.StatusCode)
		}
	})
}

// A client that hangs up mid-invocation does not cost the environment: the
// invocation runs to its end and the next request finds the env warm.
func TestClientHangUpKeepsEnvironment(t *testing.T) {
	u := startWithURLs(t)
	ctx := context.Background()
	if _, err := u.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("web"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/web")}, Timeout: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	base := u.createURL(t, "web", "NONE", nil)
	if resp, _ := do(t, u.http, "GET", base+"greet", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	short := loopbackClient(u.srv.URLAddrs()[0], nil)
	short.Timeout = 300 * time.Millisecond
	if resp, err := short.Get(base + "slow?ms=1500"); err == nil {
		resp.Body.Close()
		t.Fatal("the short client did not time out")
	}
	time.Sleep(2 * time.Second) // the invocation finishes meanwhile
	if st := u.srv.Scheduler().Stats(); st.Warm != 1 {
		t.Errorf("after the hang-up: %+v, want the env warm", st)
	}
	records, err := u.srv.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The guest's clock times its sleep, the host's the invocation: allow
	// them to disagree by a little, not by the 1.2 s a cancelled call
	// would have saved.
	if last := records[len(records)-1]; last.StartType != "warm" || last.DurationMs < 1400 || last.Error {
		t.Errorf("the abandoned invocation: %+v, want a warm one that ran its 1.5 s", last)
	}
}

// A function URL in RESPONSE_STREAM mode sends the status and headers the
// function gives at once, then each chunk as it is written; a stream that
// breaks ends early and leaves the environment usable.
func TestStreamingFunctionURL(t *testing.T) {
	u := startWithURLs(t)
	ctx := context.Background()
	if _, err := u.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("stream"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/stream")}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	out, err := u.client.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("stream"),
		AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream})
	if err != nil || out.InvokeMode != types.InvokeModeResponseStream {
		t.Fatalf("create: %+v %v", out, err)
	}
	base := aws.ToString(out.FunctionUrl)
	if resp, _ := do(t, u.http, "GET", base+"?n=1&ms=1", nil, nil); resp.StatusCode != 201 { // boot it
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	start := time.Now()
	resp, err := u.http.Get(base + "?n=5&ms=400")
	if err != nil {
		t.Fatal(err)
	}
	headersAt := time.Since(start)
	if resp.StatusCode != 201 || resp.Header.Get("X-Streamed") != "yes" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	var lines []string
	var firstAt time.Duration
	buf := make([]byte, 4096)
	var acc []byte
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && firstAt == 0 {
			firstAt = time.Since(start)
		}
		acc = append(acc, buf[:n]...)
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	total := time.Since(start)
	for _, l := range strings.Split(strings.TrimSpace(string(acc)), "\n") {
		lines = append(lines, l)
	}
	if len(lines) != 5 || !strings.HasPrefix(lines[4], "line 5 at ") {
		t.Fatalf("got %q", acc)
	}
	// Five lines 400 ms apart take 1.6 s; the status and the first line
	// must come long before the end, or nothing was streamed.
	if headersAt > total-time.Second || firstAt > total-time.Second {
		t.Errorf("headers at %v, first bytes at %v, end at %v: not streamed", headersAt, firstAt, total)
	}

	resp, b := do(t, u.http, "GET", base+"?fail=1", nil, nil)
	if !strings.HasPrefix(string(b), "line 1 at ") || strings.Contains(string(b), "line 2") {
		t.Errorf("broken stream: %d %q", resp.StatusCode, b)
	}
	if resp, b = do(t, u.http, "GET", base+"?n=2&ms=1", nil, nil); resp.StatusCode != 201 || strings.Count(string(b), "\n") != 2 {
		t.Errorf("after a broken stream: %d %q", resp.StatusCode, b)
	}
}
