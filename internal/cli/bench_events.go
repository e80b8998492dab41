package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
		ToHandler  latencyStat `json:"call_to_handler"`
		// InsideCall counts the handler starts the guest's clock puts
		// between the host's call and its answer: the check that the
		// two clocks agree well enough to subtract.
		InsideCall int `json:"handler_start_inside_call"`
		// WorstSkew is how far the furthest outside one was, in ms.
		WorstSkew float64 `json:"worst_outside_ms"`
	} `json:"direct"`
	Async struct {
		Accepted  latencyStat `json:"accepted_202"`
		ToHandler latencyStat `json:"call_to_handler"`
	} `json:"async"`
	Mapping struct {
		Idle        latencyStat `json:"idle_send_to_handler"`
		Messages    int         `json:"messages"`
		SendSeconds float64     `json:"send_s"`
		DrainSecs   float64     `json:"first_send_to_empty_s"`
		Throughput  float64     `json:"messages_per_s"`
		Invocations int         `json:"invocations"`
		Duplicates  int         `json:"duplicates"`
		Burst       latencyStat `json:"burst_send_to_handler"`
	} `json:"mapping"`
	Ratios struct {
		MappingOverDirectRate float64 `json:"mapping_msgs_per_direct_invoke"`
		IdleOverDirectP50     float64 `json:"idle_mapping_p50_over_direct_p50"`
		AsyncOverDirectP50    float64 `json:"async_p50_over_direct_p50"`
	} `json:"ratios"`
}

// ratios fills r.Ratios from the rest.
func (r *eventsReport) ratios() {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return round2(a / b)
	}
	r.Ratios.MappingOverDirectRate = div(r.Mapping.Throughput, r.Direct.Throughput)
	r.Ratios.IdleOverDirectP50 = div(r.Mapping.Idle.P50, r.Direct.ToHandler.P50)
	r.Ratios.AsyncOverDirectP50 = div(r.Async.ToHandler.P50, r.Direct.ToHandler.P50)
}

// writeTable prints r for people.
func (r *eventsReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "events to %s (warm), concurrency %d, batch size %d\n\n", r.Function, r.Concurrency, r.BatchSize)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tmeasured\tn\tper s\tp50 ms\tp99 ms\t")
	row := func(path, what string, l latencyStat, rate string) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%.2f\t\n", path, what, l.N, rate, l.P50, l.P99)
	}
	d, a, m := r.Direct, r.Async, r.Mapping
	row("direct invoke", "round trip", d.RoundTrip, fmt.Sprintf("%.1f", d.Throughput))
	row("direct invoke", "call → handler start", d.ToHandler, "")
	row("async (Event)", "call → 202", a.Accepted, "")
	row("async (Event)", "call → handler start", a.ToHandler, "")
	row("mapping, idle", "SendMessage → handler start", m.Idle, "")
	row("mapping, burst", "SendMessage → handler start", m.Burst, fmt.Sprintf("%.1f", m.Throughput))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nburst: %d messages sent in %.2f s, queue empty %.2f s after the first send: %.1f messages/s in %d invocations (%.1f a batch), %d delivered twice\n",
		m.Messages, m.SendSeconds, m.DrainSecs, m.Throughput, m.Invocations, safeDiv(float64(m.Messages), float64(m.Invocations)), m.Duplicates)
	fmt.Fprintf(w, "direct: %d invokes, %d errors; the guest's clock put %d of %d handler starts inside their call (furthest outside %.2f ms)\n",
		d.Invokes, d.Errors, d.InsideCall, d.ToHandler.N, d.WorstSkew)
	fmt.Fprintf(w, "ratios: mapping messages/s ÷ direct invokes/s %.2f; to the handler, p50: idle mapping ÷ direct %.2f, async ÷ direct %.2f\n",
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
	// At is the guest's wall clock when the handler started.
	At int64
	// Sent is the send time from the body.
	Sent int64
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

// feed takes the log's next bytes; a line cut at the end waits for the rest.
func (s *seenLog) feed(b []byte) {
	data := append(s.partial, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		s.line(string(data[:i]))
		data = data[i+1:]
	}
	s.partial = append([]byte(nil), data...)
}

func (s *seenLog) line(l string) {
	if strings.HasPrefix(l, "START RequestId: ") {
		s.starts++
		return
	}
	// seen <messageId> <unix-nanos> <tag>/<sent-unix-nanos>
	f := strings.Fields(l)
	if len(f) != 4 || f[0] != "seen" {
		return
	}
	at, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return
	}
	tag, sentS, ok := strings.Cut(f[3], "/")
	if !ok || tag == "" {
		return
	}
	sent, err := strconv.ParseInt(sentS, 10, 64)
	if err != nil {
		return
	}
	if r := s.byTag[tag]; r != nil {
		// At least once: the first delivery is the latency.
		r.Times++
		return
	}
	s.byTag[tag] = &seenRecord{At: at, Sent: sent, Times: 1}
}

// latencies are the send → handler times, in ms, of the tags seen.
func (s *seenLog) latencies(tags []string) []float64 {
	var ms []float64
	for _, t := range tags {
		if r := s.byTag[t]; r != nil {
			ms = append(ms, float64(r.At-r.Sent)/1e6)
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

// insideCall checks each direct call's handler start against the host's
// call (Sent) and answer: how many lie inside, and how far, in ms, the
// furthest outside one is.
func insideCall(s *seenLog, answered map[string]int64) (inside int, worst float64) {
	for tag, end := range answered {
		r := s.byTag[tag]
		if r == nil {
			continue
		}
		var off int64
		switch {
		case r.At < r.Sent:
			off = r.Sent - r.At
		case r.At > end:
			off = r.At - end
		default:
			inside++
			continue
		}
		worst = max(worst, float64(off)/1e6)
	}
	return inside, round2(worst)
}

// followedLog reads a function's log file from where it last stopped.
type followedLog struct {
	path string
	off  int64
	seen *seenLog
	mu   sync.Mutex
}

func (l *followedLog) poll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l.off += int64(len(b))
	l.seen.feed(b)
	return err
}

// wait polls until every tag is seen, or d passes.
func (l *followedLog) wait(ctx context.Context, tags []string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		if err := l.poll(); err != nil {
			return err
		}
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
		case <-time.After(2 * time.Millisecond):
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
	progress := func(format string, args ...any) { fmt.Fprintf(c.Stderr, format+"\n", args...) }

	// The function is called "hello" by the bench daemon; its log is
	// <data>/logs/hello.log.
	bd, err := c.startBenchDaemon(cmd, f.host, zip, f.concurrency, false)
	if err != nil {
		return err
	}
	defer bd.close()
	const fn = "hello"
	logs := &followedLog{path: filepath.Join(bd.data, "logs", fn+".log"), seen: newSeenLog()}
	profiles, err := server.ReadCredentials(server.CredentialsFile(bd.data))
	if err != nil {
		return err
	}
	sq := sqs.New(sqs.Options{BaseEndpoint: aws.String("http://" + bd.srv.Addr()), Region: "local", RetryMaxAttempts: 1,
		HTTPClient:  bd.httpClient,
		Credentials: credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")})

	progress("warming %d environments…", f.concurrency)
	bd.warm(ctx, f.concurrency)

	// Direct: a closed loop of RequestResponse invokes.
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
	answered, directTags = map[string]int64{}, nil
	mu.Unlock()
	progress("direct invokes for %s at concurrency %d…", f.duration, f.concurrency)
	lr := closedLoop(ctx, f.concurrency, f.duration, direct)
	r.Direct.Invokes, r.Direct.Errors, r.Direct.Throughput = lr.Requests, lr.Errors, lr.Throughput
	r.Direct.RoundTrip = latencyStat{N: lr.Requests, P50: lr.P50, P99: lr.P99}
	if err := logs.wait(ctx, directTags, 30*time.Second); err != nil {
		return fmt.Errorf("direct invokes: %w", err)
	}
	r.Direct.ToHandler = newLatencyStat(logs.seen.latencies(directTags))
	r.Direct.InsideCall, r.Direct.WorstSkew = insideCall(logs.seen, answered)

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
	r.Async.ToHandler = newLatencyStat(logs.seen.latencies(asyncTags))

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
	r.Mapping.Idle = newLatencyStat(logs.seen.latencies(idleTags))
	// Let the last invocation's delete land, so the burst starts on an
	// empty queue.
	if err := waitEmpty(ctx, sq, q.QueueUrl, time.Minute); err != nil {
		return err
	}

	progress("a burst of %d messages…", f.messages)
	if err := logs.poll(); err != nil {
		return err
	}
	startsBefore := logs.seen.starts
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
	m := &r.Mapping
	m.Messages, m.DrainSecs = f.messages, round2(drain.Seconds())
	m.Throughput = round2(float64(f.messages) / drain.Seconds())
	m.Invocations = logs.seen.starts - startsBefore
	m.Duplicates = logs.seen.duplicates(burstTags)
	m.Burst = newLatencyStat(logs.seen.latencies(burstTags))
	r.ratios()

	if f.json {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	return r.writeTable(c.Stdout)
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
