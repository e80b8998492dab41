package console_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	mvc "github.com/hearthdev/hearth/client/microvm"
	hnetwork "github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// keepPaused is the test daemon's: long enough for the page to see a
// paused environment (it polls each second), short for the test.
const keepPaused = 3 * time.Second

// consoleDaemon is a real daemon with real VMs, idle environments paused
// after a few seconds and suspended a few seconds later (so that warm →
// paused → suspended shows), a queue and a bucket.
func consoleDaemon(t *testing.T) (*server.Server, server.Profile) {
	t.Helper()
	testvm.Driver(t)
	data := t.TempDir()
	objs, err := objects.Open(server.BucketsDir(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := objs.CreateBucket("photos"); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0", URLListen: "127.0.0.1:0",
		KeepWarm: 6 * time.Second, KeepPaused: keepPaused,
		Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		_ = hnetwork.RemoveEnvNetworks(filepath.Join(data, "envs"))
	})
	if _, err := srv.Queues().Create(context.Background(), "jobs", nil); err != nil {
		t.Fatal(err)
	}
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil || len(profiles) == 0 {
		t.Fatalf("credentials: %v %v", profiles, err)
	}
	return srv, profiles[0]
}

// pushImage pushes img to a registry on loopback, for the daemon to pull,
// and returns its reference.
func pushImage(t *testing.T, repo string, img v1.Image) string {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	uri := strings.TrimPrefix(reg.URL, "http://") + "/" + repo
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return uri
}

// artifacts is where screenshots go: $HEARTH_TEST_ARTIFACTS, else a new
// folder under the system's temporary folder; never the repository.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HEARTH_TEST_ARTIFACTS")
	var err error
	if dir != "" {
		dir = filepath.Join(dir, "console")
		err = os.MkdirAll(dir, 0o755)
	} else {
		dir, err = os.MkdirTemp("", "hearth-console-")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// responses records the status of every API call a tab makes.
type responses struct {
	mu  sync.Mutex
	got []string // "STATUS METHOD-less URL path"
}

func (r *responses) listen(ctx context.Context, t *testing.T) {
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && e.Type == network.ResourceTypeFetch {
			r.mu.Lock()
			r.got = append(r.got, fmt.Sprintf("%d %s", e.Response.Status, e.Response.URL))
			r.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func (r *responses) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// The console, in headless Chromium, against a real daemon with real VMs:
// sign in, create a function from a zip, invoke it, watch its environment
// go warm → paused → suspended, read and follow its log, see the cost and
// latency charts; a MicroVM (built from internal/testmicrovm's image while
// the function idles) listed with its endpoint, suspended, resumed and
// terminated with the page's buttons; the queues and buckets pages; then a
// tab without keys, and one with wrong keys, see none of it, and their
// calls are refused.
func TestConsoleInBrowser(t *testing.T) {
	zip := testvm.FunctionZip(t, "./examples/hello")
	imageURI := pushImage(t, "agent:v1", testvm.MicroVMImage(t))
	srv, keys := consoleDaemon(t)
	base := "http://" + srv.Addr() + "/console/"
	shots := artifacts(t)
	began := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bctx := newBrowser(ctx, t)
	var signed responses
	signed.listen(bctx, t)

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript condition in the page.
	waitFor := func(c context.Context, what, expr string, d time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(200*time.Millisecond))); err != nil {
			text, _ := chromedp.Run(c, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s (%s): %v\nthe page shows:\n%s", what, expr, err, text)
		}
	}
	shot := func(c context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(c context.Context, sel string) string {
		t.Helper()
		s, err := chromedp.Run(c, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// Sign in.
	do("open the console", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#signin")))
	shot(bctx, "01-signin")
	do("sign in", chromedp.SendKeys(chromedp.CSS("#access-key"), keys.AccessKeyID), chromedp.SendKeys(chromedp.CSS("#secret-key"), keys.SecretAccessKey),
		chromedp.Click(chromedp.CSS("#signin-btn")), chromedp.WaitVisible(chromedp.CSS("#page-functions")))
	waitFor(bctx, "no functions yet", `!!document.querySelector("#no-functions")`, 10*time.Second)

	// Create a function from a zip upload.
	do("create hello", chromedp.SendKeys(chromedp.CSS("#fn-name"), "hello"), chromedp.SetUploadFiles(chromedp.CSS("#fn-zip"), []string{zip}),
		chromedp.Click(chromedp.CSS("#create-btn")), chromedp.WaitVisible(chromedp.CSS("#fn-config")))
	if cfg := text(bctx, "#fn-config"); !strings.Contains(cfg, "arn:aws:lambda:") || !strings.Contains(cfg, "provided.al2023") {
		t.Errorf("configuration shows %q", cfg)
	}
	if v := text(bctx, "#fn-versions"); !strings.Contains(v, "$LATEST") {
		t.Errorf("versions show %q", v)
	}
	if l := text(bctx, "#fn-limits"); !strings.Contains(l, "Keep paused3 s (the daemon's default)") {
		t.Errorf("concurrency and idle policy show %q, want the daemon's keep-paused", l)
	}

	// Invoke from the page: cold, then warm.
	do("invoke", chromedp.Click(chromedp.CSS("#invoke-btn")))
	waitFor(bctx, "the cold invocation's REPORT", `(document.querySelector("#invoke-report")?.textContent || "").includes("Start Type: cold")`, 3*time.Minute)
	if r := text(bctx, "#invoke-response"); !strings.Contains(r, "Hello, Console!") {
		t.Errorf("response %q", r)
	}
	do("invoke again", chromedp.Evaluate[chromedp.Void](`document.querySelector("#invoke-report").textContent = ""`), chromedp.Click(chromedp.CSS("#invoke-btn")))
	waitFor(bctx, "the warm invocation's REPORT", `(document.querySelector("#invoke-report")?.textContent || "").includes("Start Type: warm")`, time.Minute)
	shot(bctx, "02-function")

	// The MicroVM image builds (a boot and a snapshot) while the function
	// idles.
	mv, err := mvc.New("http://"+srv.Addr(), mvc.Credentials{AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey, Region: "local"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mv.CreateImage(ctx, mvc.ImageInput{Name: "agent", ImageURI: imageURI, Resources: []mvc.Resources{{MinimumMemoryInMiB: 256}},
		Hooks: &mvc.Hooks{Port: 9000}})
	if err != nil {
		t.Fatalf("CreateMicrovmImage: %v", err)
	}

	// Environments: warm, paused after keep-warm, then suspended after
	// keep-paused.
	do("environments", chromedp.Navigate(base+"#/environments"))
	waitFor(bctx, "hello warm", `(document.querySelector('#env-table tr[data-fn="hello"]')||{}).dataset?.state === "warm"`, 10*time.Second)
	shot(bctx, "03-environments-warm")
	waitFor(bctx, "hello paused", `(document.querySelector('#env-table tr[data-fn="hello"]')||{}).dataset?.state === "paused"`, time.Minute)
	if row := text(bctx, `#env-table tr[data-fn="hello"] td.paused`); row != "1" {
		t.Errorf("paused column %q, want 1", row)
	}
	shot(bctx, "03b-environments-paused")
	waitFor(bctx, "hello suspended", `(document.querySelector('#env-table tr[data-fn="hello"]')||{}).dataset?.state === "suspended"`, 2*time.Minute)
	shot(bctx, "04-environments-suspended")

	// The function list shows it, with its environment.
	do("functions", chromedp.Navigate(base+"#/functions"), chromedp.WaitVisible(chromedp.CSS(`#functions-table tr[data-fn="hello"]`)))
	if row := text(bctx, `#functions-table tr[data-fn="hello"]`); !strings.Contains(row, "1 suspended") {
		t.Errorf("functions row %q", row)
	}
	shot(bctx, "05-functions")

	// Logs, followed: an invocation made elsewhere (a resume) appears.
	do("logs", chromedp.Navigate(base+"#/logs/hello"))
	waitFor(bctx, "the log", `(document.querySelector("#log-output")?.textContent || "").includes("Start Type: warm")`, 20*time.Second)
	lambdaClient := lambda.New(lambda.Options{Region: "local", BaseEndpoint: aws.String("http://" + srv.Addr()),
		Credentials: credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, "")})
	if _, err := lambdaClient.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"name":"Elsewhere"}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(bctx, "the followed log shows the resume", `(document.querySelector("#log-output")?.textContent || "").includes("Start Type: resume")`, 30*time.Second)
	shot(bctx, "06-logs")

	// Cost over time, and the always-on line beside it.
	do("cost", chromedp.Navigate(base+"#/cost"))
	waitFor(bctx, "the cost chart", `!!document.querySelector('#cost-chart g.series[data-name="hello (GB-s)"] circle') && !!document.querySelector('#cost-chart g.series[data-name="always-on (GB-s)"] path')`, 20*time.Second)
	if row := text(bctx, `#cost-table tr[data-fn="hello"]`); !strings.Contains(row, "hello3") {
		t.Errorf("cost row %q, want 3 requests", row)
	}
	shot(bctx, "07-cost")

	// Start latency: cold, resume and warm lines.
	do("latency", chromedp.Navigate(base+"#/latency"))
	waitFor(bctx, "the latency chart", `["cold","resume","warm"].every(s => !!document.querySelector('#latency-chart g.series[data-name="' + s + ' p50 (ms)"] circle'))`, 20*time.Second)
	shot(bctx, "08-latency")

	// MicroVMs: none yet; then one runs, listed with its endpoint, and the
	// page's buttons suspend, resume and terminate it.
	do("microvms", chromedp.Navigate(base+"#/microvms"), chromedp.WaitVisible(chromedp.CSS("#microvms-none")))
	if _, err := mv.WaitImage(ctx, "agent", img.ImageVersion); err != nil {
		t.Fatalf("the MicroVM image: %v", err)
	}
	vm, err := mv.Run(ctx, mvc.RunInput{ImageIdentifier: "agent"})
	if err != nil {
		t.Fatalf("RunMicrovm: %v", err)
	}
	if vm.State != "RUNNING" || !strings.Contains(vm.Endpoint, vm.MicrovmID+".lambda-microvm.localhost:") {
		t.Fatalf("RunMicrovm: %+v", vm)
	}
	row := fmt.Sprintf(`#microvms-table tr[data-id=%q]`, vm.MicrovmID)
	// microVMState waits until the page's row and the API both say state.
	microVMState := func(state string) {
		t.Helper()
		waitFor(bctx, "MicroVM "+state, fmt.Sprintf(`(document.querySelector(%q)||{}).dataset?.state === %q`, row, state), 2*time.Minute)
		got, err := mv.Get(ctx, vm.MicrovmID)
		if err != nil || got.State != state {
			t.Fatalf("the page shows %s, the API: %+v %v", state, got, err)
		}
	}
	microVMState("RUNNING")
	if ep := text(bctx, row+" a"); ep != vm.Endpoint {
		t.Errorf("the page shows the endpoint %q, want %q", ep, vm.Endpoint)
	}
	shot(bctx, "09-microvms-running")
	do("suspend", chromedp.Click(chromedp.CSS(row+` button[data-act="suspend"]`)))
	microVMState("SUSPENDED")
	shot(bctx, "09b-microvms-suspended")
	do("resume", chromedp.Click(chromedp.CSS(row+` button[data-act="resume"]`)))
	microVMState("RUNNING")
	do("terminate", chromedp.Click(chromedp.CSS(row+` button[data-act="terminate"]`)))
	microVMState("TERMINATED")
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, row+" button"))); err != nil || n != 0 {
		t.Errorf("a terminated MicroVM has %d buttons (%v)", n, err)
	}
	shot(bctx, "09c-microvms-terminated")

	// Queues and buckets.
	do("queues", chromedp.Navigate(base+"#/queues"), chromedp.WaitVisible(chromedp.CSS(`#queues-table tr[data-queue="jobs"]`)))
	shot(bctx, "10-queues")
	do("buckets", chromedp.Navigate(base+"#/buckets"), chromedp.WaitVisible(chromedp.CSS(`#buckets-table tr[data-bucket="photos"]`)))
	shot(bctx, "11-buckets")

	// Every call the signed-in page made was accepted: the daemon
	// verified the page's SigV4 (SQS's included).
	var apiCalls int
	for _, r := range signed.all() {
		if strings.HasPrefix(r, "403 ") || strings.HasPrefix(r, "5") {
			t.Errorf("signed call refused: %s", r)
		}
		apiCalls++
	}
	if apiCalls < 10 {
		t.Errorf("only %d API calls seen: %v", apiCalls, signed.all())
	}

	// A tab without keys (session storage is per tab) shows the sign-in
	// form and no data, makes no call, and its unsigned calls get 403.
	tctx, tcancel := chromedp.NewContext(bctx)
	defer tcancel()
	var anon responses
	anon.listen(tctx, t)
	if err := chromedp.Do(tctx, chromedp.Navigate(base+"#/functions"), chromedp.WaitVisible(chromedp.CSS("#signin"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // time for any call the page would make
	if calls := anon.all(); len(calls) != 0 {
		t.Errorf("a page without keys made calls: %v", calls)
	}
	statuses, err := chromedp.Run(tctx, chromedp.Evaluate[[]string](`Promise.all(["/2015-03-31/functions", "/hearth/v1/status", "/hearth/v1/usage/series",
		"/hearth/v1/functions/hello/logs", "/hearth/v1/cost", "/hearth/v1/buckets", "/2025-09-09/microvms"].map(u =>
		fetch(u).then(async r => r.status + " " + u + " " + (await r.text()).includes("hello")))).then(xs =>
		fetch("/", {method: "POST", headers: {"x-amz-target": "AmazonSQS.ListQueues", "content-type": "application/x-amz-json-1.0"}, body: "{}"})
		.then(async r => xs.concat([r.status + " sqs " + (await r.text()).includes("jobs")])))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statuses {
		if !strings.HasPrefix(s, "403 ") || !strings.HasSuffix(s, " false") {
			t.Errorf("unsigned call from the page: %s, want 403 and no data", s)
		}
	}
	if body := text(tctx, "body"); strings.Contains(body, "hello") || strings.Contains(body, "photos") || strings.Contains(body, "jobs") {
		t.Errorf("a page without keys shows data:\n%s", body)
	}
	shot(tctx, "12-no-keys")

	// Wrong keys in the session: the page's calls get 403, it asks to sign
	// in again, and shows nothing.
	if err := chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`sessionStorage.setItem("hearth.keys", JSON.stringify({accessKeyId: %q, secretAccessKey: "wrong", region: "local"}))`, keys.AccessKeyID)),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#signin-error"))); err != nil {
		t.Fatal(err)
	}
	var refused int
	for _, r := range anon.all() {
		if strings.HasPrefix(r, "403 ") {
			refused++
		} else {
			t.Errorf("with wrong keys: %s, want 403", r)
		}
	}
	if refused == 0 {
		t.Error("with wrong keys the page made no call")
	}
	if body := text(tctx, "body"); strings.Contains(body, "hello") || !strings.Contains(body, "refused") {
		t.Errorf("a page with wrong keys shows:\n%s", body)
	}
	stored, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`sessionStorage.getItem("hearth.keys") || ""`))
	if stored != "" {
		t.Errorf("refused keys are kept in the session: %q", stored)
	}
	shot(tctx, "13-wrong-keys")
	t.Logf("browser part took %s", time.Since(began).Round(time.Second))
}
