package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/server"
)

type benchBucketsFlags struct {
	host    hostFlags
	zip     string
	events  int
	objects int
	sizeMB  int
	json    bool
}

func (c *CLI) benchBucketsCmd() *cobra.Command {
	var f benchBucketsFlags
	cmd := &cobra.Command{
		Use:   "buckets",
		Short: "Object put → function start latency, and put/get throughput of objects beside a plain file copy on the same disk, in one run",
		Long: `Starts a daemon on a scratch data folder with the S3 endpoint, and measures:

  - put → start: a bucket notification sends each object created to the
    function (a warm environment); the time from the PutObject call to the
    START line of the invocation it caused in the function's log (the
    host writes it as the environment is leased, before the guest runs).
  - throughput: PutObject and GetObject of --size-mb objects, one at a
    time, through aws-sdk-go-v2's s3 client, beside writing the same bytes
    to a file (fsync'd and renamed, as the store does) and reading it
    back, in the same folder.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchBuckets(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function the events invoke")
	cmd.Flags().IntVar(&f.events, "events", 20, "puts whose event's start is timed")
	cmd.Flags().IntVar(&f.objects, "objects", 20, "objects put and got for throughput")
	cmd.Flags().IntVar(&f.sizeMB, "size-mb", 1, "size of each object for throughput, MB")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

type throughput struct {
	Path   string  `json:"path"`
	MBps   float64 `json:"mb_per_s"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	Counts int     `json:"count"`
}

func throughputOf(path string, ms []float64, sizeMB int) throughput {
	var total float64
	for _, m := range ms {
		total += m
	}
	return throughput{Path: path, MBps: round2(float64(len(ms)*sizeMB) / (total / 1000)), P50ms: round2(percentile(ms, 50)),
		P99ms: round2(percentile(ms, 99)), Counts: len(ms)}
}

func (c *CLI) benchBuckets(cmd *cobra.Command, f benchBucketsFlags) error {
	ctx := cmd.Context()
	if f.events < 1 || f.objects < 1 || f.sizeMB < 1 {
		return &exitError{code: ExitBadInput, err: fmt.Errorf("--events, --objects and --size-mb must be positive")}
	}
	bd, err := c.startBenchDaemonWith(cmd, f.host, f.zip, 2, func(cfg *server.Config) { cfg.S3Listen = "127.0.0.1:0" })
	if err != nil {
		return err
	}
	defer bd.close()
	profiles, err := server.ReadCredentials(server.CredentialsFile(bd.data))
	if err != nil {
		return err
	}
	cl := s3.New(s3.Options{BaseEndpoint: aws.String("http://" + bd.srv.S3Addr()), Region: "local", UsePathStyle: true, RetryMaxAttempts: 1,
		HTTPClient:  bd.httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})
	for _, b := range []string{"events", "bulk"} {
		if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			return apiError(err)
		}
	}
	if _, err := cl.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("events"),
		NotificationConfiguration: &types.NotificationConfiguration{LambdaFunctionConfigurations: []types.LambdaFunctionConfiguration{{
			LambdaFunctionArn: aws.String("arn:aws:lambda:local:000000000000:function:hello"), Events: []types.Event{types.EventS3ObjectCreated}}}}}); err != nil {
		return apiError(err)
	}

	// put → start. The log is read by its size: each START is a new line.
	logPath := filepath.Join(bd.data, "logs", "hello.log")
	count := func(line string) int {
		b, _ := os.ReadFile(logPath)
		return bytes.Count(b, []byte(line))
	}
	starts := func() int { return count("START RequestId: ") }
	var startMS []float64
	for i := -1; i < f.events; i++ { // the first (a cold start) is not counted
		before := starts()
		t0 := time.Now()
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("events"), Key: aws.String(fmt.Sprintf("in/%d.txt", i+1)),
			Body: bytes.NewReader([]byte("hello"))}); err != nil {
			return apiError(err)
		}
		deadline := t0.Add(2 * time.Minute)
		for starts() == before {
			if time.Now().After(deadline) {
				return fmt.Errorf("put %d: the function never started", i+1)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if i >= 0 {
			startMS = append(startMS, float64(time.Since(t0).Microseconds())/1000)
		}
		// Let the invocation end: the next one then finds the environment
		// idle (and boots no other).
		for count("END RequestId: ") < before+1 {
			if time.Now().After(deadline) {
				return fmt.Errorf("put %d: the function never ended", i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Throughput, beside plain files in the same folder.
	body := make([]byte, f.sizeMB<<20)
	_, _ = rand.Read(body)
	var putMS, getMS, writeMS, readMS []float64
	timed := func(into *[]float64, fn func() error) error {
		t0 := time.Now()
		err := fn()
		*into = append(*into, float64(time.Since(t0).Microseconds())/1000)
		return err
	}
	plain := filepath.Join(bd.data, "plain")
	if err := os.MkdirAll(plain, 0o700); err != nil {
		return err
	}
	for i := range f.objects {
		key := fmt.Sprintf("obj/%d", i)
		if err := timed(&putMS, func() error {
			if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bulk"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
				return apiError(err)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := timed(&getMS, func() error {
			out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bulk"), Key: aws.String(key)})
			if err != nil {
				return apiError(err)
			}
			defer out.Body.Close()
			n, err := io.Copy(io.Discard, out.Body)
			if err == nil && n != int64(len(body)) {
				err = fmt.Errorf("got %d bytes of %d", n, len(body))
			}
			return err
		}); err != nil {
			return err
		}
		path := filepath.Join(plain, fmt.Sprint(i))
		if err := timed(&writeMS, func() error { return atomicfile.Write(path, body, 0o600) }); err != nil {
			return err
		}
		if err := timed(&readMS, func() error {
			fh, err := os.Open(path)
			if err != nil {
				return err
			}
			defer fh.Close()
			_, err = io.Copy(io.Discard, fh)
			return err
		}); err != nil {
			return err
		}
	}
	rows := []throughput{throughputOf("S3 PutObject", putMS, f.sizeMB), throughputOf("file write (fsync, rename)", writeMS, f.sizeMB),
		throughputOf("S3 GetObject", getMS, f.sizeMB), throughputOf("file read", readMS, f.sizeMB)}
	lat := map[string]float64{"p50_ms": round2(percentile(startMS, 50)), "p99_ms": round2(percentile(startMS, 99)), "count": float64(len(startMS))}
	if f.json {
		b, _ := json.MarshalIndent(map[string]any{"put_to_start": lat, "size_mb": f.sizeMB, "throughput": rows}, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(c.Stdout, "object put → function start (warm, %d puts): p50 %.2f ms  p99 %.2f ms\n\n", len(startMS), lat["p50_ms"], lat["p99_ms"])
	fmt.Fprintf(c.Stdout, "%d MB objects, one at a time, same disk, same run\n", f.sizeMB)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tMB/s\tp50 ms\tp99 ms\tcount\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%d\t\n", r.Path, r.MBps, r.P50ms, r.P99ms, r.Counts)
	}
	return tw.Flush()
}
