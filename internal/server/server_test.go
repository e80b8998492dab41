package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

type daemon struct {
	srv    *server.Server
	client *lambda.Client
	creds  aws.Credentials
	url    string
}

// start runs a daemon in-process on dataDir and returns an SDK client
// signed with its keys.
func start(t *testing.T, dataDir string, keepWarm time.Duration) *daemon {
	t.Helper()
	return startWith(t, server.Config{DataDir: dataDir, KeepWarm: keepWarm})
}

func startWith(t *testing.T, cfg server.Config) *daemon {
	t.Helper()
	testvm.Driver(t)
	ctx := context.Background()
	dataDir := cfg.DataDir
	cfg.Listen, cfg.MaxConcurrency = "127.0.0.1:0", 4
	if cfg.KeepPaused == 0 {
		// These tests follow warm → suspended; the paused tier between
		// is tested in the scheduler and the sandbox.
		cfg.KeepPaused = -1
	}
	cfg.Host = vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = srv.Shutdown(context.Background())
		}
		// What the shutdown kept for a next daemon: the suspended
		// environments' networks.
		_ = network.RemoveEnvNetworks(filepath.Join(dataDir, "envs"))
	})
	profiles, err := server.ReadCredentials(server.CredentialsFile(dataDir))
	if err != nil || len(profiles) == 0 {
		t.Fatalf("credentials: %v %v", profiles, err)
	}
	if fi, _ := os.Stat(server.CredentialsFile(dataDir)); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %o, want 600", fi.Mode().Perm())
	}
	creds := aws.Credentials{AccessKeyID: profiles[0].AccessKeyID, SecretAccessKey: profiles[0].SecretAccessKey}
	d := &daemon{srv: srv, creds: creds, url: "http://" + srv.Addr()}
	d.client = lambda.New(lambda.Options{
		BaseEndpoint: aws.String(d.url), Region: "local",
		Credentials:      credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
	})
	return d
}

func readZip(t *testing.T, pkg string) []byte {
	b, err := os.ReadFile(testvm.FunctionZip(t, pkg))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkLogTail checks an X-Amz-Log-Result as Lambda shapes it: base64 of
// the invocation's log, START to REPORT, at most 4 KB.
func checkLogTail(t *testing.T, b64 string, cold bool) {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("log result is not base64: %v", err)
	}
	tail := string(b)
	lines := strings.Split(strings.TrimSuffix(tail, "\n"), "\n")
	if len(b) > 4096 || len(lines) < 3 {
		t.Fatalf("log tail of %d bytes, %d lines:\n%s", len(b), len(lines), tail)
	}
	id, ok := strings.CutPrefix(lines[0], "START RequestId: ")
	id, _, _ = strings.Cut(id, " ")
	if !ok || !strings.HasSuffix(lines[0], " Version: $LATEST") {
		t.Errorf("first line %q, want START RequestId: … Version: $LATEST", lines[0])
	}
	end, report := lines[len(lines)-2], lines[len(lines)-1]
	if end != "END RequestId: "+id || !strings.HasPrefix(report, "REPORT RequestId: "+id+"\tDuration: ") || !strings.HasSuffix(tail, "\n") {
		t.Errorf("last lines %q, %q: want END and REPORT of %s", end, report, id)
	}
	if strings.Contains(report, "Init Duration: ") != cold {
		t.Errorf("REPORT %q: Init Duration present should be %v", report, cold)
	}
}

func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestLambdaAPIWithTheSDK(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	hello := readZip(t, "./examples/hello")

	created, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Role: aws.String("arn:aws:iam::000000000000:role/none"), Code: &types.FunctionCode{ZipFile: hello},
		MemorySize: aws.Int32(256), Timeout: aws.Int32(10),
		Environment: &types.Environment{Variables: map[string]string{"GREETING": "hi"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(created.MemorySize) != 256 || created.State != types.StateActive || aws.ToString(created.CodeSha256) == "" {
		t.Errorf("created: %+v", created)
	}

	t.Run("invoke", func(t *testing.T) {
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"),
			Payload: []byte(`{"name":"Ada"}`), LogType: types.LogTypeTail})
		if err != nil {
			t.Fatal(err)
		}
		if out.StatusCode != 200 || out.FunctionError != nil || !strings.Contains(string(out.Payload), "Hello, Ada!") {
			t.Fatalf("invoke: %d %v %s", out.StatusCode, out.FunctionError, out.Payload)
		}
		if aws.ToString(out.ExecutedVersion) != "$LATEST" || out.LogResult == nil {
			t.Fatalf("executed version %v, log result %v", out.ExecutedVersion, out.LogResult)
		}
		checkLogTail(t, aws.ToString(out.LogResult), true)
		dry, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeDryRun})
		if err != nil || dry.StatusCode != 204 {
			t.Errorf("dry run: %v %v", dry, err)
		}
	})

	t.Run("logs", func(t *testing.T) {
		r, _ := http.NewRequest(http.MethodGet, d.url+"/hearth/v1/functions/hello/logs?tail=50", nil)
		signRequest(t, r, "", d.creds, time.Now())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{"START RequestId: ", "Version: $LATEST", "END RequestId: ", "REPORT RequestId: ", "Init Duration: "} {
			if !strings.Contains(string(b), want) {
				t.Errorf("log lacks %q:\n%s", want, b)
			}
		}
	})

	t.Run("errors in Lambda's shape", func(t *testing.T) {
		_, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("missing function: %v", err)
		}
		_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}})
		var conflict *types.ResourceConflictException
		if !errors.As(err, &conflict) {
			t.Errorf("duplicate: %v", err)
		}
		_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("broken"), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: []byte("not a zip")}})
		if code := apiErrorCode(err); code != "InvalidParameterValueException" {
			t.Errorf("bad zip: %v", err)
		}
		_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("big"), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}, MemorySize: aws.Int32(64)})
		var inv *types.InvalidParameterValueException
		if !errors.As(err, &inv) {
			t.Errorf("memory 64: %v", err)
		}
		_, err = d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`"` + strings.Repeat("a", 6<<20) + `"`)})
		var tooLarge *types.RequestTooLargeException
		if !errors.As(err, &tooLarge) {
			t.Errorf("7 MB payload: %v", err)
		}
		_, err = d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("huge"), Runtime: types.RuntimeProvidedal2023,
			Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: make([]byte, 60<<20)}})
		if !errors.As(err, &tooLarge) {
			t.Errorf("a 60 MB zip (80 MB of JSON): %v", err)
		}
	})

	t.Run("list with paging", func(t *testing.T) {
		for _, n := range []string{"a-fn", "b-fn", "c-fn"} {
			if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(n), Runtime: types.RuntimeProvidedal2023,
				Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: hello}}); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		p := lambda.NewListFunctionsPaginator(d.client, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
		pages := 0
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, f := range out.Functions {
				names = append(names, aws.ToString(f.FunctionName))
			}
		}
		if strings.Join(names, ",") != "a-fn,b-fn,c-fn,hello" || pages != 2 {
			t.Errorf("listed %v in %d pages", names, pages)
		}
	})

	t.Run("update configuration and code", func(t *testing.T) {
		if _, err := d.client.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
			FunctionName: aws.String("hello"), MemorySize: aws.Int32(512)}); err != nil {
			t.Fatal(err)
		}
		got, err := d.client.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("hello")})
		if err != nil || aws.ToInt32(got.MemorySize) != 512 {
			t.Fatalf("after update: %v %v", got, err)
		}
		if _, err := d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"),
			ZipFile: readZip(t, "./examples/counter")}); err != nil {
			t.Fatal(err)
		}
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`)})
		if err != nil || !strings.Contains(string(out.Payload), `"count":1`) {
			t.Fatalf("new code: %s %v", out.Payload, err)
		}
	})

	t.Run("versions and aliases", func(t *testing.T) {
		v, err := d.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")})
		if err != nil || aws.ToString(v.Version) != "1" {
			t.Fatalf("publish: %v %v", v, err)
		}
		if _, err := d.client.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("hello"), Name: aws.String("live"),
			FunctionVersion: aws.String("1")}); err != nil {
			t.Fatal(err)
		}
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Qualifier: aws.String("live"), Payload: []byte(`{}`)})
		if err != nil || aws.ToString(out.ExecutedVersion) != "1" {
			t.Fatalf("invoke alias: %v %v", out, err)
		}
	})

	t.Run("concurrency", func(t *testing.T) {
		if _, err := d.client.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"),
			ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
			t.Fatal(err)
		}
		_, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`)})
		var tmr *types.TooManyRequestsException
		if !errors.As(err, &tmr) || tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
			t.Fatalf("throttled invoke: %v", err)
		}
		got, err := d.client.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("hello")})
		if err != nil || aws.ToInt32(got.ReservedConcurrentExecutions) != 0 {
			t.Errorf("get concurrency: %v %v", got, err)
		}
		if _, err := d.client.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("hello")}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`)}); err != nil {
			t.Errorf("after the limit is gone: %v", err)
		}
	})

	t.Run("bad signatures change nothing", func(t *testing.T) {
		body := `{"FunctionName":"sneaky","Runtime":"provided.al2023","Role":"r","Code":{"ZipFile":""}}`
		tests := []struct {
			name, wantType string
			sign           func(r *http.Request)
		}{
			{"unsigned", "UnrecognizedClientException", func(r *http.Request) {}},
			{"unknown key", "UnrecognizedClientException", func(r *http.Request) {
				signRequest(t, r, body, aws.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "x"}, time.Now())
			}},
			{"wrong secret", "InvalidSignatureException", func(r *http.Request) {
				signRequest(t, r, body, aws.Credentials{AccessKeyID: d.creds.AccessKeyID, SecretAccessKey: "wrong"}, time.Now())
			}},
			{"expired", "InvalidSignatureException", func(r *http.Request) {
				signRequest(t, r, body, d.creds, time.Now().Add(-20*time.Minute))
			}},
			{"tampered body", "InvalidSignatureException", func(r *http.Request) {
				signRequest(t, r, `{"FunctionName":"other"}`, d.creds, time.Now())
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, _ := http.NewRequest(http.MethodPost, d.url+"/2015-03-31/functions", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				tt.sign(r)
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != tt.wantType {
					t.Errorf("status %d type %q, want 403 %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tt.wantType)
				}
			})
		}
		if _, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sneaky")}); err == nil {
			t.Error("a badly signed request created a function")
		}
		resp, err := http.Get(d.url + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("healthz unsigned: %v %v", resp, err)
		}
		resp, err = http.Get(d.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `hearth_invocations_total{function="hello",outcome="ok",start_type="cold"} `) ||
			!strings.Contains(string(b), "hearth_environments_warm") {
			t.Errorf("metrics unsigned: %d\n%s", resp.StatusCode, b)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if _, err := d.client.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
			t.Fatal(err)
		}
		_, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello")})
		var nf *types.ResourceNotFoundException
		if !errors.As(err, &nf) {
			t.Errorf("invoke after delete: %v", err)
		}
		if st := d.srv.Scheduler().Stats(); st.Warm != 0 || st.Suspended != 0 {
			t.Errorf("environments left after delete: %+v", st)
		}
	})
}

// signRequest signs r as the SDK would, with creds at time at.
func signRequest(t *testing.T, r *http.Request, body string, creds aws.Credentials, at time.Time) {
	t.Helper()
	sum := sha256hex(body)
	r.Header.Set("X-Amz-Content-Sha256", sum)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, sum, "lambda", "local", at); err != nil {
		t.Fatal(err)
	}
}

// Idle environments are suspended after the keep-warm time and resumed by
// the next call; a graceful restart keeps them, suspended, for the next
// daemon to resume.
func TestScaleToZeroAndRestart(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Second)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("counter"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./examples/counter")}}); err != nil {
		t.Fatal(err)
	}
	call := func(d *daemon) int {
		t.Helper()
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("counter"), Payload: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		var c struct{ Count int }
		if err := json.Unmarshal(out.Payload, &c); err != nil {
			t.Fatalf("%s: %v", out.Payload, err)
		}
		return c.Count
	}
	if n := call(d); n != 1 {
		t.Fatalf("first call %d", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Suspended != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Suspended != 1 || st.Warm != 0 {
		t.Fatalf("after the keep-warm time: %+v, want one suspended env", st)
	}
	if n := call(d); n != 2 {
		t.Fatalf("call after suspend %d, want 2 (resumed)", n)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, data, time.Minute)
	if st := d2.srv.Scheduler().Stats(); st.Suspended != 1 {
		t.Fatalf("restarted daemon adopted %+v, want one suspended env", st)
	}
	if n := call(d2); n != 3 {
		t.Fatalf("call after restart %d, want 3 (resumed, not booted)", n)
	}
}

// N parallel invocations get N environments up to the function's limit;
// one more is throttled; idle, they are suspended, and resumed later.
func TestConcurrencyLimit(t *testing.T) {
	d := start(t, t.TempDir(), time.Second)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"),
		ReservedConcurrentExecutions: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	invoke := func(payload string) error {
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(payload)})
		if err == nil && out.FunctionError != nil {
			err = fmt.Errorf("function error: %s", out.Payload)
		}
		return err
	}
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errs <- invoke(`{"action":"sleep","ms":4000}`) }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Busy != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	err := invoke(`{}`)
	var tmr *types.TooManyRequestsException
	if !errors.As(err, &tmr) {
		t.Errorf("third invocation: %v, want TooManyRequestsException", err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := d.srv.Scheduler().Stats(); st.Warm != 2 {
		t.Errorf("after the calls: %+v, want 2 warm environments", st)
	}
	deadline = time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Suspended != 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Suspended != 2 || st.Warm != 0 {
		t.Fatalf("after the idle time: %+v, want 2 suspended", st)
	}
	for i := 0; i < 2; i++ {
		go func() { errs <- invoke(`{"action":"sleep","ms":1000}`) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := d.srv.Scheduler().Stats(); st.Suspended+st.Warm != 2 {
		t.Errorf("after resuming: %+v, want the same 2 environments", st)
	}
}

// With snap-start, the daemon makes a template after the first cold boot
// and an environment beyond the warm one is cloned from it, not booted.
func TestSnapStartClonesThroughTheDaemon(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, SnapStart: true})
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	call := func(payload string) error {
		_, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(payload)})
		return err
	}
	if err := call(`{}`); err != nil {
		t.Fatal(err)
	}
	// The template is made in the background, after the first cold boot.
	deadline := time.Now().Add(60 * time.Second)
	for d.srv.Scheduler().Stats().Templates != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Templates != 1 {
		t.Fatalf("no template after a minute: %+v", st)
	}
	// Two calls at once: one takes the warm env, the other is cloned.
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errs <- call(`{"action":"sleep","ms":500}`) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	recs, err := d.srv.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	for _, r := range recs {
		starts[r.StartType]++
		if r.StartType == "clone" && r.RestoreMs <= 0 {
			t.Errorf("clone record without a restore time: %+v", r)
		}
	}
	if starts["cold"] != 1 || starts["warm"] != 1 || starts["clone"] != 1 {
		t.Errorf("start types %v, want one cold, one warm, one clone", starts)
	}
}

// New code while an invocation runs: the running environment finishes its
// invocation and then ends; it never serves the new revision.
func TestUpdateCodeWhileInvoking(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		out *lambda.InvokeOutput
		err error
	}
	first := make(chan answer, 1)
	go func() {
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"action":"sleep","ms":2000}`)})
		first <- answer{out, err}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for d.srv.Scheduler().Stats().Busy != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("f"),
		ZipFile: readZip(t, "./examples/hello")}); err != nil {
		t.Fatal(err)
	}
	a := <-first
	if a.err != nil || a.out.FunctionError != nil {
		t.Fatalf("the invocation in flight: %v %v", a.err, a.out)
	}
	if st := d.srv.Scheduler().Stats(); st.Warm != 0 || st.Suspended != 0 {
		t.Errorf("after the old revision's invocation: %+v, want its environment ended", st)
	}
	out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"name":"new"}`)})
	if err != nil || !strings.Contains(string(out.Payload), "Hello, new!") {
		t.Fatalf("after the update: %v %s", err, out.Payload)
	}
	recs, err := d.srv.Records(ctx)
	if err != nil || len(recs) != 2 {
		t.Fatalf("records %+v %v", recs, err)
	}
	if recs[1].StartType != "cold" || recs[1].EnvID == recs[0].EnvID {
		t.Errorf("the new revision ran %s on %s (the old env was %s): want a cold start on a new env", recs[1].StartType, recs[1].EnvID, recs[0].EnvID)
	}
}

// A function's own SnapStart (ApplyOn PublishedVersions), without the
// daemon's --snap-start: publishing a version makes its template, so the
// version's first invocation is a clone, not a cold start; $LATEST still
// boots.
func TestSnapStartPublishedVersions(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("snap"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30),
		SnapStart: &types.SnapStart{ApplyOn: types.SnapStartApplyOnPublishedVersions}}); err != nil {
		t.Fatal(err)
	}
	v, err := d.client.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("snap")})
	if err != nil {
		t.Fatal(err)
	}
	if v.SnapStart == nil || v.SnapStart.OptimizationStatus != types.SnapStartOptimizationStatusOn {
		t.Fatalf("published version's SnapStart: %+v", v.SnapStart)
	}
	deadline := time.Now().Add(90 * time.Second)
	for d.srv.Scheduler().Stats().Templates != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := d.srv.Scheduler().Stats(); st.Templates != 1 {
		t.Fatalf("no template after publishing: %+v", st)
	}
	for _, q := range []string{aws.ToString(v.Version), "$LATEST"} {
		if _, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("snap"), Qualifier: aws.String(q), Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := d.srv.Records(ctx)
	if err != nil || len(recs) != 2 {
		t.Fatalf("records %+v %v", recs, err)
	}
	if recs[0].Version != "1" || recs[0].StartType != "clone" || recs[1].Version != "$LATEST" || recs[1].StartType != "cold" {
		t.Errorf("version 1 started %s, $LATEST %s: want clone, cold", recs[0].StartType, recs[1].StartType)
	}
}
