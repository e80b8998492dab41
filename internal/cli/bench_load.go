package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/vmboot"
)

type benchLoadFlags struct {
	host        hostFlags
	zip         string
	concurrency string
	duration    time.Duration
	json        bool
	profile     string
}

func (c *CLI) benchLoadCmd() *cobra.Command {
	var f benchLoadFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Closed-loop load of warm invocations through the daemon, against the same handler called directly",
		Long: `Starts a daemon in this process (its own data folder), creates the hello
function, and for each concurrency runs a closed loop of warm invocations
through the Lambda API for --duration: throughput and p50/p99 latency. As the
baseline, the same handler runs on the host behind a plain HTTP server and gets
the same load in the same run; the difference is the platform's share.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchLoad(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function")
	cmd.Flags().StringVar(&f.concurrency, "concurrency", "1,4,16", "comma-separated concurrencies")
	cmd.Flags().DurationVar(&f.duration, "duration", 5*time.Second, "measuring time at each concurrency")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&f.profile, "profile", "", "write CPU, mutex and block profiles of the daemon under load (the Hearth loops only) into this folder")
	return cmd
}

// loadResult is one closed loop's outcome.
type loadResult struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Throughput float64 `json:"throughput_rps"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
}

// closedLoop runs n workers calling call back to back for d.
func closedLoop(ctx context.Context, n int, d time.Duration, call func(context.Context) error) loadResult {
	var mu sync.Mutex
	var lat []float64
	errs := 0
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				err := call(ctx)
				ms := msf(time.Since(t0))
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, ms)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return loadResult{Requests: len(lat), Errors: errs, Throughput: round2(float64(len(lat)) / el),
		P50: round2(percentile(lat, 50)), P99: round2(percentile(lat, 99))}
}

// benchDaemon is a daemon started in-process for a benchmark, with the
// function "hello" created from zip.
type benchDaemon struct {
	srv        *server.Server
	data       string
	client     *lambda.Client
	httpClient *http.Client
}

func (b *benchDaemon) close() {
	_ = b.srv.Shutdown(context.Background())
	// The shutdown keeps the suspended environments' networks for a next
	// daemon; this throwaway one has none.
	_ = network.RemoveEnvNetworks(filepath.Join(b.data, "envs"))
	_ = os.RemoveAll(b.data)
}

// invoke is one warm call of hello through the Invoke API.
func (b *benchDaemon) invoke(ctx context.Context) error {
	out, err := b.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"name":"load"}`)})
	if err == nil && out.FunctionError != nil {
		err = fmt.Errorf("function error: %s", out.Payload)
	}
	return err
}

// warm boots n environments with n calls at once.
func (b *benchDaemon) warm(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = b.invoke(ctx) }()
	}
	wg.Wait()
}

// direct serves hello's logic from the host, the baseline; call is one
// request to it.
func (b *benchDaemon) direct() (call func(context.Context) error, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(helloHandler)}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/"
	call = func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(`{"name":"load"}`)))
		resp, err := b.httpClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v map[string]string
		return json.NewDecoder(resp.Body).Decode(&v)
	}
	return call, func() { srv.Close() }, nil
}

func (c *CLI) startBenchDaemon(cmd *cobra.Command, hf hostFlags, zipPath string, maxConcurrency int, urls bool) (*benchDaemon, error) {
	return c.startBenchDaemonWith(cmd, hf, zipPath, maxConcurrency, func(cfg *server.Config) {
		if urls {
			cfg.URLListen = "127.0.0.1:0"
		}
	})
}

// startBenchDaemonWith is startBenchDaemon with the daemon's configuration
// changed by configure.
func (c *CLI) startBenchDaemonWith(cmd *cobra.Command, hf hostFlags, zipPath string, maxConcurrency int, configure func(*server.Config)) (*benchDaemon, error) {
	ctx := cmd.Context()
	zip, err := os.ReadFile(zipPath)
	if err != nil {
		return nil, &exitError{code: ExitBadInput, err: err}
	}
	data, err := os.MkdirTemp("", "hearth-bench-")
	if err != nil {
		return nil, err
	}
	cfg := server.Config{DataDir: data, Listen: "127.0.0.1:0", KeepWarm: time.Hour, MaxConcurrency: maxConcurrency,
		Log: c.logger(cmd), Host: vmboot.Options{Kernel: hf.kernel, Agent: hf.agent, Accel: hf.accel,
			QEMU: c.Getenv("HEARTH_QEMU"), CacheDir: c.cacheDir()}}
	configure(&cfg)
	srv, err := server.New(ctx, cfg)
	if err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	b := &benchDaemon{srv: srv, data: data, httpClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	if err := srv.Start(ctx); err != nil {
		b.close()
		return nil, err
	}
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil {
		b.close()
		return nil, err
	}
	b.client = lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + srv.Addr()), Region: "local", RetryMaxAttempts: 1,
		HTTPClient:  b.httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})
	if _, err := b.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)}); err != nil {
		b.close()
		return nil, apiError(err)
	}
	return b, nil
}

// helloHandler is the hello function's logic as a plain HTTP handler: the
// baseline of what the work costs without a platform.
func helloHandler(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Name string `json:"name"`
	}
	_ = json.NewDecoder(r.Body).Decode(&ev)
	if ev.Name == "" {
		ev.Name = "world"
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"message": "Hello, " + ev.Name + "!", "function": "hello"})
}

func (c *CLI) benchLoad(cmd *cobra.Command, f benchLoadFlags) error {
	ctx := cmd.Context()
	var levels []int
	for _, s := range strings.Split(f.concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return &exitError{code: ExitBadInput, err: fmt.Errorf("--concurrency: %q is not a positive number", s)}
		}
		levels = append(levels, n)
	}
	maxC := 0
	for _, n := range levels {
		maxC = max(maxC, n)
	}
	bd, err := c.startBenchDaemon(cmd, f.host, f.zip, maxC, false)
	if err != nil {
		return err
	}
	defer bd.close()
	shares := &hostShares{}
	viaAPI := func(ctx context.Context) error { return bd.invokeMeasured(ctx, shares) }
	viaHTTP, stopDirect, err := bd.direct()
	if err != nil {
		return err
	}
	defer stopDirect()

	type row struct {
		Concurrency int        `json:"concurrency"`
		Hearth      loadResult `json:"hearth"`
		Direct      loadResult `json:"direct"`
		OverheadMs  float64    `json:"overhead_p50_ms"`
		// HostShare is the host's own share of each Hearth call, as the
		// daemon measured it (package spans).
		HostShare hostShareResult `json:"host_share"`
	}
	var rows []row
	for _, n := range levels {
		fmt.Fprintf(c.Stderr, "concurrency %d: warming %d environments…\n", n, n)
		// Warm up: n parallel calls boot n environments, a short loop
		// settles them.
		bd.warm(ctx, n)
		_ = closedLoop(ctx, n, f.duration/4, viaAPI)
		_ = shares.take()
		r := row{Concurrency: n}
		prof, err := startBenchProfile(f.profile)
		if err != nil {
			return err
		}
		r.Hearth = closedLoop(ctx, n, f.duration, viaAPI)
		if err := prof.stop(); err != nil {
			return err
		}
		r.HostShare = shares.take()
		r.Direct = closedLoop(ctx, n, f.duration, viaHTTP)
		r.OverheadMs = round2(r.Hearth.P50 - r.Direct.P50)
		rows = append(rows, r)
	}
	if f.json {
		b, _ := json.MarshalIndent(map[string]any{"levels": rows, "duration_s": f.duration.Seconds()}, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "concurrency\thearth rps\tp50 ms\tp99 ms\thost p50 ms\thost p99 ms\tdirect rps\tp50 ms\tp99 ms\tplatform p50 ms\terrors\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.2f\t%.3f\t%.3f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t\n", r.Concurrency, r.Hearth.Throughput, r.Hearth.P50, r.Hearth.P99,
			r.HostShare.P50/1000, r.HostShare.P99/1000, r.Direct.Throughput, r.Direct.P50, r.Direct.P99, r.OverheadMs, r.Hearth.Errors+r.Direct.Errors)
	}
	return tw.Flush()
}
