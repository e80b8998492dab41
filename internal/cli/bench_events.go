package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/fnzip"
	"github.com/hearthdev/hearth/internal/server"
)

type benchEventsFlags struct {
	host        hostFlags
	zip         string
	messages    int
	batchSize   int
	concurrency int
	probes      int
	duration    time.Duration
	json        bool
}

func (c *CLI) benchEventsCmd() *cobra.Command {
	var f benchEventsFlags
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Messages/s through an event source mapping and latency to the handler, against direct and async invokes, in one run",
		Long: `Starts a daemon in this process (its own data folder) with
internal/testsqsfunction, which logs "seen <id> <unix-nanos> <body>" for
each record at the start of its handler, the time read from the guest's
wall clock (set from the host's at every boot and resume). Every event the
bench makes carries its send time in the body, so the latency to the
handler is read from the function's log. In one run, at --concurrency:

  direct    RequestResponse invokes of a one-record SQS event through the
            Invoke API, a closed loop for --duration: invokes/s, round
            trip p50/p99, call → handler start p50/p99
  async     --probes Event invokes one at a time: the 202, and
            call → handler start
  mapping   a queue and an event source mapping (--batch-size,
            MaximumConcurrency --concurrency): --probes single messages to
            the idle mapping, SendMessage → handler start; then
            --messages sent with SendMessageBatch as fast as possible:
            messages/s from the first send to the queue being empty, and
            SendMessage → handler start under that burst`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchEvents(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "", "the function's zip (an SQS handler that logs seen lines as internal/testsqsfunction); default: build internal/testsqsfunction from the source tree in this folder")
	cmd.Flags().IntVar(&f.messages, "messages", 500, "messages in the burst through the mapping")
	cmd.Flags().IntVar(&f.batchSize, "batch-size", 10, "the mapping's BatchSize")
	cmd.Flags().IntVar(&f.concurrency, "concurrency", 2, "the mapping's MaximumConcurrency, and the direct invokes' concurrency")
	cmd.Flags().IntVar(&f.probes, "probes", 20, "single async events, and single messages to the idle mapping")
	cmd.Flags().DurationVar(&f.duration, "duration", 5*time.Second, "the direct invokes' closed loop")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// latencyStat is a sample of latencies in milliseconds.
type latencyStat struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

func newLatencyStat(ms []float64) latencyStat {
	return latencyStat{N: len(ms), P50: round2(percentile(ms, 50)), P99: round2(percentile(ms, 99))}
}

// toHandler is one path's latency from the send to the function, measured
// two ways: to the handler's start on the guest's clock, calibrated
// (clockReport), and to its log line as the host reads it, on the host's
// clock alone — an upper bound that adds the log's way out and the
// bench's 2 ms polling.
type toHandler struct {
	Handler latencyStat `json:"handler_start_guest_clock"`
	LogLine latencyStat `json:"log_line_host_clock"`
}

// clockReport says how the guest's clock was calibrated: each setting of
// it (an epoch: a boot, resume or clone) gets the offset that puts the
// handler's start inside every direct call it served.
type clockReport struct {
	Epochs int `json:"epochs"`
	// Calibrated counts the epochs that served direct calls.
	Calibrated int `json:"calibrated"`
	// MaxWidth is the widest range of offsets an epoch's calls allow, in
	// ms: the midpoint is taken, so a guest-clock latency is good to half
	// of it.
	MaxWidth float64 `json:"max_width_ms"`
	// Inconsistent counts epochs whose calls allow no offset at all (the
	// guest's clock ran at another rate than the host's).
	Inconsistent int `json:"inconsistent"`
	// Uncalibrated counts records left out of the guest-clock latencies,
	// their epoch having served no direct call.
	Uncalibrated int `json:"uncalibrated_records"`
}

// eventsReport is one run of `hearth bench events`.
type eventsReport struct {
	Function    string `json:"function"`
	Concurrency int    `json:"concurrency"`
	BatchSize   int    `json:"batch_size"`
	Direct      struct {
		Invokes    int         `json:"invokes"`
		Errors     int         `json:"errors"`
		Throughput float64     `json:"invokes_per_s"`
		RoundTrip  latencyStat `json:"round_trip"`
		LogLine    latencyStat `json:"call_to_log_line_host_clock"`
		// Single is one call at a time: the latency baseline. Its
		// guest-clock figure comes from the calibration these calls are
		// part of, so it lies within the calibration's width by
		// construction.
		Single toHandler `json:"one_at_a_time"`
	} `json:"direct"`
	Async struct {
		Accepted latencyStat `json:"accepted_202"`
		toHandler
		// Retries are the attempts that were retried, by reason, from
		// the daemon's /metrics: a throttled one waits 1 s.
		Retries map[string]int `json:"retries"`
	} `json:"async"`
	Mapping struct {
		Idle        toHandler `json:"idle"`
		Messages    int       `json:"messages"`
		SendSeconds float64   `json:"send_s"`
		DrainSecs   float64   `json:"first_send_to_empty_s"`
		Throughput  float64   `json:"messages_per_s"`
		Invocations int       `json:"invocations"`
		Duplicates  int       `json:"duplicates"`
		Burst       toHandler `json:"burst"`
	} `json:"mapping"`
	Clock  clockReport `json:"clock"`
	Ratios struct {
		MappingOverDirectRate float64 `json:"mapping_msgs_per_direct_invoke"`
		IdleOverDirectP50     float64 `json:"idle_mapping_p50_over_direct_p50"`
		AsyncOverDirectP50    float64 `json:"async_p50_over_direct_p50"`
	} `json:"ratios"`
}

// ratios fills r.Ratios from the rest; latencies compare on the host's
// clock alone (to the log line).
func (r *eventsReport) ratios() {
	r.Ratios.MappingOverDirectRate = round2(safeDiv(r.Mapping.Throughput, r.Direct.Throughput))
	r.Ratios.IdleOverDirectP50 = round2(safeDiv(r.Mapping.Idle.LogLine.P50, r.Direct.Single.LogLine.P50))
	r.Ratios.AsyncOverDirectP50 = round2(safeDiv(r.Async.LogLine.P50, r.Direct.Single.LogLine.P50))
}

// writeTable prints r for people.
func (r *eventsReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "events to %s (warm), concurrency %d, batch size %d\n\n", r.Function, r.Concurrency, r.BatchSize)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tfrom the call or SendMessage to\tn\tper s\thost p50 ms\thost p99 ms\tguest p50 ms\tguest p99 ms\t")
	row := func(path, what string, host, guest *latencyStat, rate string) {
		g50, g99 := "–", "–"
		if guest != nil {
			g50, g99 = fmt.Sprintf("%.2f", guest.P50), fmt.Sprintf("%.2f", guest.P99)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%.2f\t%s\t%s\t\n", path, what, host.N, rate, host.P50, host.P99, g50, g99)
	}
	d, a, m := r.Direct, r.Async, r.Mapping
	row(fmt.Sprintf("direct invoke, %d at once", r.Concurrency), "its answer", &d.RoundTrip, nil, fmt.Sprintf("%.1f", d.Throughput))
	row(fmt.Sprintf("direct invoke, %d at once", r.Concurrency), "the handler", &d.LogLine, nil, "")
	row("direct invoke, one at a time", "the handler", &d.Single.LogLine, &d.Single.Handler, "")
	row("async (Event), one at a time", "the 202", &a.Accepted, nil, "")
	row("async (Event), one at a time", "the handler", &a.LogLine, &a.Handler, "")
	row("mapping, one message at a time", "the handler", &m.Idle.LogLine, &m.Idle.Handler, "")
	row("mapping, burst", "the handler", &m.Burst.LogLine, &m.Burst.Handler, fmt.Sprintf("%.1f", m.Throughput))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhost: to the handler's log line as the host reads it (host clock); guest: to the handler's start (guest clock, calibrated)\n")
	fmt.Fprintf(w, "burst: %d messages sent in %.2f s, queue empty %.2f s after the first send: %.1f messages/s in %d invocations (%.1f a batch), %d delivered twice\n",
		m.Messages, m.SendSeconds, m.DrainSecs, m.Throughput, m.Invocations, safeDiv(float64(m.Messages), float64(m.Invocations)), m.Duplicates)
	if len(a.Retries) > 0 {
		var rs []string
		for _, k := range slices.Sorted(maps.Keys(a.Retries)) {
			rs = append(rs, fmt.Sprintf("%d %s", a.Retries[k], k))
		}
		fmt.Fprintf(w, "async: attempts retried: %s\n", strings.Join(rs, ", "))
	}
	cl := r.Clock
	fmt.Fprintf(w, "direct: %d invokes, %d errors; guest clock: %d of %d epochs calibrated by direct calls, good to ±%.2f ms, %d inconsistent, %d records uncalibrated\n",
		d.Invokes, d.Errors, cl.Calibrated, cl.Epochs, cl.MaxWidth/2, cl.Inconsistent, cl.Uncalibrated)
	fmt.Fprintf(w, "ratios: mapping messages/s ÷ direct invokes/s %.2f; to the handler (host clock), one at a time, p50: mapping ÷ direct %.2f, async ÷ direct %.2f\n",
		r.Ratios.MappingOverDirectRate, r.Ratios.IdleOverDirectP50, r.Ratios.AsyncOverDirectP50)
	return nil
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// benchBody is a bench event's body: its tag (unique in the run) and the
// host's time just before it was sent.
func benchBody(tag string, sent time.Time) string {
	return tag + "/" + strconv.FormatInt(sent.UnixNano(), 10)
}

// seenRecord is one record the function reported at its handler's start.
type seenRecord struct {
	// At is the guest's wall clock when the handler started, Epoch the
	// setting of that clock it ran under.
	At, Epoch int64
	// Sent is the send time from the body.
	Sent int64
	// HostSeen is the host's time when the bench read the line.
	HostSeen int64
	// Times counts deliveries.
	Times int
}

// seenLog parses a function's log as it grows: testsqsfunction's seen
// lines by the tag in their body, and Lambda's START lines.
type seenLog struct {
	partial []byte
	byTag   map[string]*seenRecord
	starts  int
}

func newSeenLog() *seenLog { return &seenLog{byTag: map[string]*seenRecord{}} }

// feed takes the log's next bytes, read at host time now; a line cut at
// the end waits for the rest.
func (s *seenLog) feed(b []byte, now int64) {
	data := append(s.partial, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		s.line(string(data[:i]), now)
		data = data[i+1:]
	}
	s.partial = append([]byte(nil), data...)
}

func (s *seenLog) line(l string, now int64) {
	if strings.HasPrefix(l, "START RequestId: ") {
		s.starts++
		return
	}
	// seen <messageId> <unix-nanos> <tag>/<sent-unix-nanos> <epoch>
	f := strings.Fields(l)
	if len(f) != 5 || f[0] != "seen" {
		return
	}
	at, err1 := strconv.ParseInt(f[2], 10, 64)
	epoch, err2 := strconv.ParseInt(f[4], 10, 64)
	tag, sentS, ok := strings.Cut(f[3], "/")
	sent, err3 := strconv.ParseInt(sentS, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || !ok || tag == "" {
		return
	}
	if r := s.byTag[tag]; r != nil {
		// At least once: the first delivery is the latency.
		r.Times++
		return
	}
	s.byTag[tag] = &seenRecord{At: at, Epoch: epoch, Sent: sent, HostSeen: now, Times: 1}
}

// logLatencies are the send → log line read times, in ms, of the tags
// seen: the host's clock alone.
func (s *seenLog) logLatencies(tags []string) []float64 {
	var ms []float64
	for _, t := range tags {
		if r := s.byTag[t]; r != nil {
			ms = append(ms, float64(r.HostSeen-r.Sent)/1e6)
		}
	}
	return ms
}

// duplicates counts the extra deliveries of tags.
func (s *seenLog) duplicates(tags []string) int {
	n := 0
	for _, t := range tags {
		if r := s.byTag[t]; r != nil {
			n += r.Times - 1
		}
	}
	return n
}

// epochGap is how close two epochs must be to be one setting of the
// clock: the epoch is the wall clock less the monotonic time, read one
// after the other, so it wavers by the time between the two reads.
const epochGap = int64(time.Millisecond)

// epochKeys maps each epoch seen to the first of its run of epochs no
// more than epochGap apart.
func epochKeys(s *seenLog) map[int64]int64 {
	var all []int64
	for _, r := range s.byTag {
		all = append(all, r.Epoch)
	}
	slices.Sort(all)
	keys := map[int64]int64{}
	for i, e := range all {
		switch {
		case i == 0 || e-all[i-1] > epochGap:
			keys[e] = e
		default:
			keys[e] = keys[all[i-1]]
		}
	}
	return keys
}

// calibration is the guest clock's offset from the host's (guest − host,
// ns) for each epoch that served direct calls.
type calibration struct {
	keys   map[int64]int64
	offset map[int64]int64
	report clockReport
}

// calibrate works out each epoch's offset from the direct calls (tag →
// the host's time at the answer): a handler started after its call was
// sent and before it was answered, so the offset lies in [At − answered,
// At − sent] for each call; the midpoint of their intersection is taken.
func calibrate(s *seenLog, answered map[string]int64) calibration {
	c := calibration{keys: epochKeys(s), offset: map[int64]int64{}}
	type bounds struct{ lo, hi int64 }
	b := map[int64]*bounds{}
	for tag, end := range answered {
		r := s.byTag[tag]
		if r == nil {
			continue
		}
		k := c.keys[r.Epoch]
		if b[k] == nil {
			b[k] = &bounds{lo: math.MinInt64, hi: math.MaxInt64}
		}
		b[k].lo = max(b[k].lo, r.At-end)
		b[k].hi = min(b[k].hi, r.At-r.Sent)
	}
	epochs := map[int64]bool{}
	for _, k := range c.keys {
		epochs[k] = true
	}
	c.report.Epochs, c.report.Calibrated = len(epochs), len(b)
	for k, bb := range b {
		c.offset[k] = bb.lo + (bb.hi-bb.lo)/2
		w := float64(bb.hi-bb.lo) / 1e6
		if w < 0 {
			c.report.Inconsistent++
			w = -w
		}
		c.report.MaxWidth = max(c.report.MaxWidth, round2(w))
	}
	return c
}

// handlerLatencies are the send → handler start times, in ms, of the tags
// whose epoch is calibrated, on the guest's clock less its offset; the
// others are counted in the report.
func (c *calibration) handlerLatencies(s *seenLog, tags []string) []float64 {
	var ms []float64
	for _, t := range tags {
		r := s.byTag[t]
		if r == nil {
			continue
		}
		off, ok := c.offset[c.keys[r.Epoch]]
		if !ok {
			c.report.Uncalibrated++
			continue
		}
		ms = append(ms, float64(r.At-off-r.Sent)/1e6)
	}
	return ms
}

// followedLog reads a function's log file as it grows, every 2 ms, so
// that when each line was read says when, at the latest, it was written.
type followedLog struct {
	path string
	off  int64
	mu   sync.Mutex
	seen *seenLog
}

func (l *followedLog) poll() error {
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(f)
	now := time.Now().UnixNano()
	l.off += int64(len(b))
	l.mu.Lock()
	l.seen.feed(b, now)
	l.mu.Unlock()
	return err
}

// follow polls until ctx ends.
func (l *followedLog) follow(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if err := l.poll(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return l.poll()
		case <-t.C:
		}
	}
}

func (l *followedLog) starts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen.starts
}

// wait returns once every tag is seen, or d passes.
func (l *followedLog) wait(ctx context.Context, tags []string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		l.mu.Lock()
		missing := 0
		for _, t := range tags {
			if l.seen.byTag[t] == nil {
				missing++
			}
		}
		l.mu.Unlock()
		if missing == 0 {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%d of %d events not seen by the handler after %s", missing, len(tags), d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// sqsEventPayload is a one-record SQS event, for the direct and async
// invokes: the same handler path as the mapping's batches.
func sqsEventPayload(tag string, sent time.Time) []byte {
	b, _ := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{{MessageId: tag, Body: benchBody(tag, sent),
		EventSource: "aws:sqs", EventSourceARN: "arn:aws:sqs:local:000000000000:bench", AWSRegion: "local"}}})
	return b
}

// buildSQSFunction builds internal/testsqsfunction statically (from the
// source tree in the current folder) into a zip in dir.
func buildSQSFunction(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "bootstrap")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./internal/testsqsfunction")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building internal/testsqsfunction (run from Hearth's source tree, or give --zip): %w\n%s", err, out)
	}
	zip := filepath.Join(dir, "testsqsfunction.zip")
	if err := fnzip.Write(zip, bin); err != nil {
		return "", err
	}
	return zip, nil
}

func (c *CLI) benchEvents(cmd *cobra.Command, f benchEventsFlags) error {
	ctx := cmd.Context()
	if f.messages < 1 || f.batchSize < 1 || f.batchSize > 10000 || f.concurrency < 2 || f.probes < 1 {
		return &exitError{code: ExitBadInput, err: fmt.Errorf("--messages and --probes must be positive, --batch-size 1 to 10000, --concurrency at least 2 (a mapping's MaximumConcurrency)")}
	}
	r := &eventsReport{Function: "internal/testsqsfunction", Concurrency: f.concurrency, BatchSize: f.batchSize}
	zip := f.zip
	if zip == "" {
		dir, err := os.MkdirTemp("", "hearth-bench-events-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if zip, err = buildSQSFunction(ctx, dir); err != nil {
			return err
		}
	} else {
		r.Function = zip
	}
	began := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(c.Stderr, "%6.1fs  %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}

	// The function is called "hello" by the bench daemon; its log is
	// <data>/logs/hello.log.
	bd, err := c.startBenchDaemon(cmd, f.host, zip, f.concurrency, false)
	if err != nil {
		return err
	}
	defer bd.close()
	const fn = "hello"
	logs := &followedLog{path: filepath.Join(bd.data, "logs", fn+".log"), seen: newSeenLog()}
	followCtx, stopFollow := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() { followed <- logs.follow(followCtx) }()
	defer stopFollow()
	profiles, err := server.ReadCredentials(server.CredentialsFile(bd.data))
	if err != nil {
		return err
	}
	sq := sqs.New(sqs.Options{BaseEndpoint: aws.String("http://" + bd.srv.Addr()), Region: "local", RetryMaxAttempts: 1,
		HTTPClient:  bd.httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})

	progress("warming %d environments…", f.concurrency)
	bd.warm(ctx, f.concurrency)

	// Direct: a closed loop of RequestResponse invokes. Every direct call
	// also calibrates the guest's clock (calibrate).
	var seq atomic.Int64
	var mu sync.Mutex
	answered := map[string]int64{}
	var directTags []string
	direct := func(ctx context.Context) error {
		tag := fmt.Sprintf("d%d", seq.Add(1))
		sent := time.Now()
		out, err := bd.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: sqsEventPayload(tag, sent)})
		end := time.Now().UnixNano()
		if err == nil && out.FunctionError != nil {
			err = fmt.Errorf("function error: %s", out.Payload)
		}
		if err != nil {
			return err
		}
		mu.Lock()
		answered[tag] = end
		directTags = append(directTags, tag)
		mu.Unlock()
		return nil
	}
	_ = closedLoop(ctx, f.concurrency, time.Second, direct) // settles the warm environments
	mu.Lock()
	directTags = nil
	mu.Unlock()
	progress("direct invokes for %s at concurrency %d…", f.duration, f.concurrency)
	lr := closedLoop(ctx, f.concurrency, f.duration, direct)
	r.Direct.Invokes, r.Direct.Errors, r.Direct.Throughput = lr.Requests, lr.Errors, lr.Throughput
	r.Direct.RoundTrip = latencyStat{N: lr.Requests, P50: lr.P50, P99: lr.P99}
	mu.Lock()
	measuredDirect := directTags
	mu.Unlock()
	if err := logs.wait(ctx, measuredDirect, 30*time.Second); err != nil {
		return fmt.Errorf("direct invokes: %w", err)
	}
	// The latency baseline: one call at a time, as the async events and
	// the idle mapping's messages are sent.
	progress("%d direct invokes, one at a time…", f.probes)
	var probeTags []string
	for range f.probes {
		if err := direct(ctx); err != nil {
			return fmt.Errorf("direct invoke: %w", apiError(err))
		}
		mu.Lock()
		probeTags = append(probeTags, directTags[len(directTags)-1])
		mu.Unlock()
		if err := logs.wait(ctx, probeTags[len(probeTags)-1:], 30*time.Second); err != nil {
			return fmt.Errorf("direct invokes: %w", err)
		}
	}

	// Async: one Event at a time, so each is latency, not a backlog.
	progress("%d async invokes, one at a time…", f.probes)
	var accepted []float64
	var asyncTags []string
	for i := range f.probes {
		tag := fmt.Sprintf("a%d", i)
		sent := time.Now()
		if _, err := bd.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent,
			Payload: sqsEventPayload(tag, sent)}); err != nil {
			return fmt.Errorf("async invoke: %w", apiError(err))
		}
		accepted = append(accepted, msf(time.Since(sent)))
		asyncTags = append(asyncTags, tag)
		if err := logs.wait(ctx, []string{tag}, 60*time.Second); err != nil {
			return fmt.Errorf("async invoke: %w", err)
		}
	}
	r.Async.Accepted = newLatencyStat(accepted)

	// The mapping: a queue whose visibility timeout outlasts a cold boot
	// under emulation, so a batch in flight does not come back meanwhile.
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("bench"), Attributes: map[string]string{"VisibilityTimeout": "60"}})
	if err != nil {
		return fmt.Errorf("create queue: %w", err)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("queue attributes: %w", err)
	}
	progress("a mapping (batch size %d, maximum concurrency %d)…", f.batchSize, f.concurrency)
	if _, err := bd.client.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String(fn),
		EventSourceArn: aws.String(attrs.Attributes["QueueArn"]), BatchSize: aws.Int32(int32(f.batchSize)),
		ScalingConfig: &types.ScalingConfig{MaximumConcurrency: aws.Int32(int32(f.concurrency))}}); err != nil {
		return fmt.Errorf("create event source mapping: %w", apiError(err))
	}
	send := func(tag string) error {
		_, err := sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(benchBody(tag, time.Now()))})
		return err
	}
	// A first message shows the poller is up; it is not measured.
	if err := send("w0"); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := logs.wait(ctx, []string{"w0"}, 60*time.Second); err != nil {
		return fmt.Errorf("the mapping's first message: %w", err)
	}
	progress("%d messages to the idle mapping, one at a time…", f.probes)
	var idleTags []string
	for i := range f.probes {
		tag := fmt.Sprintf("i%d", i)
		if err := send(tag); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		idleTags = append(idleTags, tag)
		if err := logs.wait(ctx, []string{tag}, 60*time.Second); err != nil {
			return fmt.Errorf("idle mapping: %w", err)
		}
	}
	// Let the last invocation's delete land, so the burst starts on an
	// empty queue.
	if err := waitEmpty(ctx, sq, q.QueueUrl, time.Minute); err != nil {
		return err
	}

	progress("a burst of %d messages…", f.messages)
	startsBefore := logs.starts()
	burstTags := make([]string, f.messages)
	for i := range burstTags {
		burstTags[i] = fmt.Sprintf("m%d", i)
	}
	first := time.Now()
	sendErr := sendBurst(ctx, sq, q.QueueUrl, burstTags, 4)
	r.Mapping.SendSeconds = round2(time.Since(first).Seconds())
	if sendErr != nil {
		return sendErr
	}
	if err := waitEmpty(ctx, sq, q.QueueUrl, 15*time.Minute); err != nil {
		return err
	}
	drain := time.Since(first)
	if err := logs.wait(ctx, burstTags, 30*time.Second); err != nil {
		return fmt.Errorf("burst: %w", err)
	}
	// The START lines up to the queue's emptying.
	invocations := logs.starts() - startsBefore

	// More direct calls calibrate any clock setting since the first loop
	// and check the first ones' offsets still hold.
	progress("direct invokes for 1s, to check the guest's clock…")
	_ = closedLoop(ctx, f.concurrency, time.Second, direct)
	mu.Lock()
	allDirect := slices.Collect(maps.Keys(answered))
	mu.Unlock()
	if err := logs.wait(ctx, allDirect, 30*time.Second); err != nil {
		return fmt.Errorf("direct invokes: %w", err)
	}
	stopFollow()
	if err := <-followed; err != nil {
		return fmt.Errorf("reading the function's log: %w", err)
	}
	if r.Async.Retries, err = asyncRetries(ctx, bd); err != nil {
		return err
	}
	progress("done; stopping the daemon")

	seen := logs.seen
	cal := calibrate(seen, answered)
	r.Direct.LogLine = newLatencyStat(seen.logLatencies(measuredDirect))
	r.Direct.Single.LogLine = newLatencyStat(seen.logLatencies(probeTags))
	r.Direct.Single.Handler = newLatencyStat(cal.handlerLatencies(seen, probeTags))
	r.Async.LogLine = newLatencyStat(seen.logLatencies(asyncTags))
	r.Async.Handler = newLatencyStat(cal.handlerLatencies(seen, asyncTags))
	m := &r.Mapping
	m.Idle.LogLine = newLatencyStat(seen.logLatencies(idleTags))
	m.Idle.Handler = newLatencyStat(cal.handlerLatencies(seen, idleTags))
	m.Messages, m.DrainSecs = f.messages, round2(drain.Seconds())
	m.Throughput = round2(float64(f.messages) / drain.Seconds())
	m.Invocations = invocations
	m.Duplicates = seen.duplicates(burstTags)
	m.Burst.LogLine = newLatencyStat(seen.logLatencies(burstTags))
	m.Burst.Handler = newLatencyStat(cal.handlerLatencies(seen, burstTags))
	r.Clock = cal.report
	r.ratios()

	if f.json {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	return r.writeTable(c.Stdout)
}

// asyncRetries reads the daemon's count of retried async attempts.
func asyncRetries(ctx context.Context, bd *benchDaemon) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+bd.srv.Addr()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := bd.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return parseRetries(string(b)), nil
}

// parseRetries sums hearth_async_retries_total by its reason label.
func parseRetries(metrics string) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(l, "hearth_async_retries_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		_, reason, ok := strings.Cut(labels, `reason="`)
		if !ok {
			continue
		}
		reason, _, _ = strings.Cut(reason, `"`)
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		out[reason] += int(v)
	}
	return out
}

// sendBurst sends one message per tag, in batches of ten (SendMessageBatch's
// most) from senders goroutines at once; each body carries the time just
// before its batch was sent.
func sendBurst(ctx context.Context, sq *sqs.Client, url *string, tags []string, senders int) error {
	batches := make(chan []string)
	errs := make(chan error, senders)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				sent := time.Now()
				entries := make([]sqstypes.SendMessageBatchRequestEntry, len(b))
				for i, tag := range b {
					entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(benchBody(tag, sent))}
				}
				out, err := sq.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: entries})
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("%d messages refused: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
				}
				if err != nil {
					errs <- fmt.Errorf("send message batch: %w", err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := 0; i < len(tags); i += 10 {
		select {
		case batches <- tags[i:min(i+10, len(tags))]:
		case err = <-errs:
			break feed
		}
	}
	close(batches)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
		return err
	default:
		return nil
	}
}

// waitEmpty polls the queue every 20 ms until it holds no message, visible
// or in flight.
func waitEmpty(ctx context.Context, sq *sqs.Client, url *string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		a, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			return fmt.Errorf("queue attributes: %w", err)
		}
		if a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("the queue is not empty after %s: %v", d, a.Attributes)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
