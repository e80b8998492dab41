package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/queue"
	"github.com/hearthdev/hearth/internal/server"
)

func sqsClient(d *daemon) *sqs.Client {
	return sqs.New(sqs.Options{
		BaseEndpoint: aws.String(d.url), Region: "local",
		Credentials:      credentials.NewStaticCredentialsProvider(d.creds.AccessKeyID, d.creds.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
	})
}

// errorCode is the code the SDK reports for err: for SQS, the query error
// code of x-amzn-query-error.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// aws-sdk-go-v2's sqs client, unmodified, against a daemon: every
// operation, and bad input answered in SQS's error shape.
func TestSQSWithTheSDK(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	c := sqsClient(d)
	ctx := context.Background()

	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	if want := d.url + "/000000000000/jobs-dlq"; aws.ToString(dlq.QueueUrl) != want {
		t.Errorf("queue URL %s, want %s", aws.ToString(dlq.QueueUrl), want)
	}
	created, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs"), Attributes: map[string]string{
		"VisibilityTimeout": "1",
		"RedrivePolicy":     `{"deadLetterTargetArn":"arn:aws:sqs:local:000000000000:jobs-dlq","maxReceiveCount":"2"}`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	q := created.QueueUrl
	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs")})
	if err != nil || aws.ToString(got.QueueUrl) != aws.ToString(q) {
		t.Errorf("GetQueueUrl: %v %v", got, err)
	}
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("none")})
	var dne *types.QueueDoesNotExist
	if !errors.As(err, &dne) || errorCode(err) != "AWS.SimpleQueueService.NonExistentQueue" {
		t.Errorf("GetQueueUrl of an unknown queue: %v (code %q)", err, errorCode(err))
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs.fifo"), Attributes: map[string]string{"FifoQueue": "true"}}); err == nil {
		t.Error("a FIFO queue was created")
	}
	var qne *types.QueueNameExists
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs")}); !errors.As(err, &qne) {
		t.Errorf("creating jobs again with other attributes: %v", err)
	}

	// ListQueues, with a prefix and by pages.
	list, err := c.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("jobs")})
	if err != nil || len(list.QueueUrls) != 2 {
		t.Fatalf("ListQueues: %+v %v", list, err)
	}
	var pages []string
	p := sqs.NewListQueuesPaginator(c, &sqs.ListQueuesInput{MaxResults: aws.Int32(1)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, page.QueueUrls...)
	}
	if len(pages) != 2 || !strings.HasSuffix(pages[0], "/jobs") || !strings.HasSuffix(pages[1], "/jobs-dlq") {
		t.Errorf("ListQueues by pages: %v", pages)
	}

	// SendMessage: the SDK checks MD5OfMessageBody itself.
	attrs := map[string]types.MessageAttributeValue{
		"kind": {DataType: aws.String("String"), StringValue: aws.String("order")},
		"raw":  {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2, 3}},
	}
	sent, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("one"), MessageAttributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	wantMD5 := queue.MD5OfAttributes(map[string]queue.MessageAttribute{"kind": {DataType: "String", StringValue: "order"}, "raw": {DataType: "Binary", BinaryValue: []byte{1, 2, 3}}})
	if aws.ToString(sent.MD5OfMessageAttributes) != wantMD5 || aws.ToString(sent.MessageId) == "" {
		t.Errorf("SendMessage: %+v", sent)
	}
	batch, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("two")},
		{Id: aws.String("b"), MessageBody: aws.String("three")},
		{Id: aws.String("bad"), MessageBody: aws.String("nul \x00")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Successful) != 2 || len(batch.Failed) != 1 || aws.ToString(batch.Failed[0].Id) != "bad" ||
		aws.ToString(batch.Failed[0].Code) != "InvalidMessageContents" || !batch.Failed[0].SenderFault {
		t.Errorf("SendMessageBatch: %+v", batch)
	}

	// Bad input.
	entry := func(id string) types.SendMessageBatchRequestEntry {
		return types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String("x")}
	}
	eleven := make([]types.SendMessageBatchRequestEntry, 11)
	for i := range eleven {
		eleven[i] = entry(string(rune('a' + i)))
	}
	big := strings.Repeat("x", 200<<10)
	bad := []struct {
		name string
		call func() error
		want string
	}{
		{"a message over 256 KiB", func() error {
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String(strings.Repeat("x", 256<<10+1))})
			return err
		}, "InvalidParameterValue"},
		{"an unknown queue", func() error {
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(d.url + "/000000000000/none"), MessageBody: aws.String("x")})
			return err
		}, "AWS.SimpleQueueService.NonExistentQueue"},
		{"duplicate batch ids", func() error {
			_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q, Entries: []types.SendMessageBatchRequestEntry{entry("a"), entry("a")}})
			return err
		}, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"},
		{"a bad batch id", func() error {
			_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q, Entries: []types.SendMessageBatchRequestEntry{entry("no spaces")}})
			return err
		}, "AWS.SimpleQueueService.InvalidBatchEntryId"},
		{"11 entries", func() error {
			_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q, Entries: eleven})
			return err
		}, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"},
		{"a batch over 256 KiB", func() error {
			_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q, Entries: []types.SendMessageBatchRequestEntry{
				{Id: aws.String("a"), MessageBody: aws.String(big)}, {Id: aws.String("b"), MessageBody: aws.String(big)}}})
			return err
		}, "AWS.SimpleQueueService.BatchRequestTooLong"},
		{"an empty delete batch", func() error {
			_, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: q, Entries: []types.DeleteMessageBatchRequestEntry{}})
			return err
		}, "AWS.SimpleQueueService.EmptyBatchRequest"},
		{"MaxNumberOfMessages 11", func() error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 11})
			return err
		}, "InvalidParameterValue"},
		{"WaitTimeSeconds 21", func() error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 21})
			return err
		}, "InvalidParameterValue"},
		{"a bad receipt handle", func() error {
			_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: aws.String("forged")})
			return err
		}, "ReceiptHandleIsInvalid"},
		{"a bad attribute value", func() error {
			_, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: q, Attributes: map[string]string{"VisibilityTimeout": "43201"}})
			return err
		}, "InvalidAttributeValue"},
		{"an unknown attribute", func() error {
			_, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q, AttributeNames: []types.QueueAttributeName{"Color"}})
			return err
		}, "InvalidAttributeName"},
	}
	for _, b := range bad {
		if err := b.call(); errorCode(err) != b.want {
			t.Errorf("%s: %v (code %q), want %s", b.name, err, errorCode(err), b.want)
		}
	}

	// ReceiveMessage with every attribute.
	recv, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}, MessageAttributeNames: []string{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(recv.Messages) != 3 {
		t.Fatalf("received %d messages", len(recv.Messages))
	}
	bodies := map[string]types.Message{}
	for _, m := range recv.Messages {
		bodies[aws.ToString(m.Body)] = m
	}
	one := bodies["one"]
	if one.Attributes["ApproximateReceiveCount"] != "1" || one.Attributes["SentTimestamp"] == "" || aws.ToString(one.MD5OfMessageAttributes) != wantMD5 ||
		aws.ToString(one.MessageAttributes["kind"].StringValue) != "order" || string(one.MessageAttributes["raw"].BinaryValue) != "\x01\x02\x03" {
		t.Errorf("received %+v", one)
	}
	attrsOf := func(url *string, names ...types.QueueAttributeName) map[string]string {
		t.Helper()
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url, AttributeNames: names})
		if err != nil {
			t.Fatal(err)
		}
		return out.Attributes
	}
	a := attrsOf(q, types.QueueAttributeNameAll)
	if a["ApproximateNumberOfMessagesNotVisible"] != "3" || a["ApproximateNumberOfMessages"] != "0" || a["QueueArn"] != "arn:aws:sqs:local:000000000000:jobs" ||
		a["VisibilityTimeout"] != "1" || a["MaximumMessageSize"] != "262144" || a["CreatedTimestamp"] == "" || !strings.Contains(a["RedrivePolicy"], `"maxReceiveCount":2`) {
		t.Errorf("GetQueueAttributes All: %v", a)
	}
	if a := attrsOf(q, types.QueueAttributeNameVisibilityTimeout); len(a) != 1 {
		t.Errorf("GetQueueAttributes VisibilityTimeout: %v", a)
	}

	// ChangeMessageVisibility 0: visible again at once.
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: q, ReceiptHandle: bodies["two"].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	again, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 1, VisibilityTimeout: 30})
	if err != nil || len(again.Messages) != 1 || aws.ToString(again.Messages[0].Body) != "two" {
		t.Fatalf("after ChangeMessageVisibility 0: %+v %v", again, err)
	}
	cmv, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: q, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("x"), ReceiptHandle: again.Messages[0].ReceiptHandle, VisibilityTimeout: 60},
		{Id: aws.String("y"), ReceiptHandle: aws.String("forged"), VisibilityTimeout: 60},
	}})
	if err != nil || len(cmv.Successful) != 1 || len(cmv.Failed) != 1 || aws.ToString(cmv.Failed[0].Code) != "ReceiptHandleIsInvalid" {
		t.Errorf("ChangeMessageVisibilityBatch: %+v %v", cmv, err)
	}

	// DeleteMessage and DeleteMessageBatch.
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: one.ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	del, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: q, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("two"), ReceiptHandle: again.Messages[0].ReceiptHandle},
		{Id: aws.String("three"), ReceiptHandle: bodies["three"].ReceiptHandle},
		{Id: aws.String("one-again"), ReceiptHandle: one.ReceiptHandle},
	}})
	if err != nil || len(del.Successful) != 2 || len(del.Failed) != 1 || aws.ToString(del.Failed[0].Id) != "one-again" {
		t.Fatalf("DeleteMessageBatch: %+v %v", del, err)
	}
	if a := attrsOf(q, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Errorf("after the deletes: %v", a)
	}

	// Redrive: received twice (visible again after the queue's 1 s), the
	// message goes to the dead-letter queue at its third delivery.
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 3})
		if err != nil || len(r.Messages) != 1 || r.Messages[0].Attributes != nil {
			t.Fatalf("receive %d of the poison message: %+v %v", i+1, r, err)
		}
	}
	if r, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 3}); err != nil || len(r.Messages) != 0 {
		t.Fatalf("a third receive: %+v %v", r, err)
	}
	moved, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 2})
	if err != nil || len(moved.Messages) != 1 || aws.ToString(moved.Messages[0].Body) != "poison" {
		t.Fatalf("the dead-letter queue: %+v %v", moved, err)
	}
	srcs, err := c.ListDeadLetterSourceQueues(ctx, &sqs.ListDeadLetterSourceQueuesInput{QueueUrl: dlq.QueueUrl})
	if err != nil || len(srcs.QueueUrls) != 1 || srcs.QueueUrls[0] != aws.ToString(q) {
		t.Errorf("ListDeadLetterSourceQueues: %+v %v", srcs, err)
	}

	// A long poll answers as soon as a message is sent.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("wake")})
	}()
	begin := time.Now()
	woke, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 10})
	if err != nil || len(woke.Messages) != 1 || time.Since(begin) > 3*time.Second {
		t.Errorf("a long poll: %+v %v after %s", woke, err, time.Since(begin))
	}

	// SetQueueAttributes, PurgeQueue, DeleteQueue.
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: q, Attributes: map[string]string{"VisibilityTimeout": "60", "DelaySeconds": "1"}}); err != nil {
		t.Fatal(err)
	}
	if a := attrsOf(q, "VisibilityTimeout", "DelaySeconds"); a["VisibilityTimeout"] != "60" || a["DelaySeconds"] != "1" {
		t.Errorf("after SetQueueAttributes: %v", a)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("delayed")}); err != nil {
		t.Fatal(err)
	}
	if a := attrsOf(q, "ApproximateNumberOfMessagesDelayed"); a["ApproximateNumberOfMessagesDelayed"] != "1" {
		t.Errorf("a delayed message: %v", a)
	}
	// The queue's gauges.
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hearth_queue_messages{queue="jobs",state="delayed"} 1`, `hearth_queue_messages{queue="jobs",state="in_flight"} 1`,
		`hearth_queue_oldest_message_age_seconds{queue="jobs"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: q}); err != nil {
		t.Fatal(err)
	}
	if a := attrsOf(q, types.QueueAttributeNameAll); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesDelayed"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Errorf("after PurgeQueue: %v", a)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String("x")}); !errors.As(err, &dne) {
		t.Errorf("sending to a deleted queue: %v", err)
	}
}

// An SQS request is refused, in SQS's shape, unsigned or signed for
// another service.
func TestSQSNeedsItsSignature(t *testing.T) {
	d := start(t, t.TempDir(), time.Minute)
	body := `{"QueueName":"q"}`
	for _, sign := range []string{"", "lambda"} {
		r, _ := http.NewRequest(http.MethodPost, d.url+"/", strings.NewReader(body))
		r.Header.Set("X-Amz-Target", "AmazonSQS.CreateQueue")
		r.Header.Set("Content-Type", "application/x-amz-json-1.0")
		if sign != "" {
			signRequest(t, r, body, d.creds, time.Now()) // for service lambda
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(e["__type"], "com.amazon.coral.service#") || e["message"] == "" ||
			!strings.HasSuffix(resp.Header.Get("X-Amzn-Query-Error"), ";Sender") {
			t.Errorf("signed for %q: %d %v %q", sign, resp.StatusCode, e, resp.Header.Get("X-Amzn-Query-Error"))
		}
	}
	if qs, _ := d.srv.Queues().List(context.Background(), ""); len(qs) != 0 {
		t.Errorf("queues made: %+v", qs)
	}
}

// The aws CLI's sqs commands work against the daemon. It must be one
// that speaks SQS's JSON protocol (aws-cli 1.29.x/botocore 1.31.57 or
// 2.13.36 and later): the first aws on PATH. Debian 12's aws-cli 2.9.19
// speaks the older query protocol, which Hearth does not serve.
func TestSQSWithTheAWSCLI(t *testing.T) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("the aws CLI is not installed: %v", err)
	}
	data := t.TempDir()
	d := start(t, data, time.Minute)
	home := t.TempDir()
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") {
			env = append(env, e)
		}
	}
	env = append(env, "AWS_SHARED_CREDENTIALS_FILE="+server.CredentialsFile(data), "AWS_CONFIG_FILE="+filepath.Join(home, "none"), "AWS_PAGER=")
	run := func(args ...string) map[string]any {
		t.Helper()
		cmd := exec.Command(awsBin, append(args, "--endpoint-url", d.url, "--region", "local", "--output", "json")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", awsBin, args, err, out)
		}
		v := map[string]any{}
		if len(strings.TrimSpace(string(out))) > 0 {
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("aws %v printed %s", args, out)
			}
		}
		return v
	}
	url, _ := run("sqs", "create-queue", "--queue-name", "cli")["QueueUrl"].(string)
	if url != d.url+"/000000000000/cli" {
		t.Fatalf("create-queue: %q", url)
	}
	sent := run("sqs", "send-message", "--queue-url", url, "--message-body", "from the CLI",
		"--message-attributes", `{"kind":{"DataType":"String","StringValue":"cli"}}`)
	if sent["MD5OfMessageBody"] != queue.MD5OfBody("from the CLI") || sent["MD5OfMessageAttributes"] == nil {
		t.Errorf("send-message: %v", sent)
	}
	recv := run("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "2", "--message-attribute-names", "All", "--attribute-names", "All")
	msgs, _ := recv["Messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("receive-message: %v", recv)
	}
	m := msgs[0].(map[string]any)
	if m["Body"] != "from the CLI" || m["Attributes"].(map[string]any)["ApproximateReceiveCount"] != "1" {
		t.Errorf("received %v", m)
	}
	run("sqs", "delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"].(string))
	a := run("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"].(map[string]any)
	if a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Errorf("after delete-message: %v", a)
	}
	if l := run("sqs", "list-queues"); !strings.Contains(toJSON(l), "/000000000000/cli") {
		t.Errorf("list-queues: %v", l)
	}
	run("sqs", "delete-queue", "--queue-url", url)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
