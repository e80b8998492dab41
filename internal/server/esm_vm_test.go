package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/hearthdev/hearth/internal/server"
)

// 500 messages through a mapping with BatchSize 10 to a real function in
// real VMs, over the daemon's real queues, with the SDK's SQS and Lambda
// clients: every message is processed, the ones the function reports
// failed come back and are processed then, none is lost; a message the
// filter rejects is deleted without reaching the function; once the queue
// is empty the mapping is back to one poller, and the function's
// environments go idle and are suspended while it long-polls.
func TestEventSourceMappingThroughQueue(t *testing.T) {
	data := t.TempDir()
	d := startWith(t, server.Config{DataDir: data, KeepWarm: 5 * time.Second})
	ctx := context.Background()
	sq := sqs.New(sqs.Options{BaseEndpoint: aws.String(d.url), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(d.creds.AccessKeyID, d.creds.SecretAccessKey, "")})
	// A visibility timeout beyond a cold boot under TCG, so a batch in
	// flight does not come back while it runs.
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs"),
		Attributes: map[string]string{"VisibilityTimeout": "20"}})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	queueARN := attrs.Attributes["QueueArn"]
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("sqsfn"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testsqsfunction")}, Timeout: aws.Int32(15)}); err != nil {
		t.Fatal(err)
	}

	const total = 500
	var bodies []string
	for i := range total {
		b := fmt.Sprintf("msg-%03d", i)
		if i%25 == 0 {
			b = fmt.Sprintf("fail-%03d", i)
		}
		bodies = append(bodies, b)
	}
	bodies = append(bodies, "skip-me")
	for i := 0; i < len(bodies); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, b := range bodies[i:min(i+10, len(bodies))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(b)})
		}
		out, err := sq.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: entries})
		if err != nil || len(out.Failed) > 0 {
			t.Fatalf("send: %v %+v", err, out)
		}
	}

	m, err := d.client.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("sqsfn"),
		EventSourceArn: aws.String(queueARN), BatchSize: aws.Int32(10),
		FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		ScalingConfig:         &types.ScalingConfig{MaximumConcurrency: aws.Int32(2)},
		FilterCriteria:        &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":[{"anything-but":{"prefix":"skip"}}]}`)}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(m.UUID)

	logPath := filepath.Join(data, "logs", "sqsfn.log")
	deadline := time.Now().Add(8 * time.Minute)
	var processed, failed map[string]int
	for {
		processed, failed = readSQSLog(t, logPath)
		done := true
		for _, b := range bodies[:total] {
			if processed[b] == 0 {
				done = false
				break
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 8 minutes %d of %d messages processed", len(processed), total)
		}
		if time.Now().Second()%20 == 0 {
			t.Logf("%d of %d messages processed, %d failed, %d pollers", len(processed), total, len(failed), d.srv.EventSources().Pollers(id))
		}
		time.Sleep(time.Second)
	}
	for _, b := range bodies[:total] {
		if strings.HasPrefix(b, "fail") && failed[b] != 1 {
			t.Errorf("%s reported failed %d times, want once (then processed)", b, failed[b])
		}
	}
	if processed["skip-me"]+failed["skip-me"] != 0 {
		t.Error("the filtered message reached the function")
	}
	// The queue empties: processed and filtered messages deleted.
	waitQueueEmpty(t, sq, q.QueueUrl, time.Minute)
	if n := d.srv.EventSources().Pollers(id); n != 1 {
		// The pollers fall back to one within a few ticks.
		time.Sleep(5 * time.Second)
		if n = d.srv.EventSources().Pollers(id); n != 1 {
			t.Errorf("%d pollers on the empty queue, want 1", n)
		}
	}
	end := time.Now().Add(time.Minute)
	for {
		st := d.srv.Scheduler().StatsByFunction()["sqsfn"]
		if st.Busy == 0 && st.Warm == 0 && st.Suspended > 0 {
			break
		}
		if time.Now().After(end) {
			t.Errorf("the function's environments on the empty queue: %+v, want all suspended", st)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := d.srv.EventSources().Pollers(id); n != 1 {
		t.Errorf("%d pollers once the environments are suspended, want 1", n)
	}
	metrics := scrape(t, d.url+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`hearth_esm_messages_total{function="sqsfn",mapping="%s",outcome="filtered"} 1`, id),
		fmt.Sprintf(`hearth_esm_messages_total{function="sqsfn",mapping="%s",outcome="failed"} %d`, id, total/25),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// readSQSLog counts, by body, the messages testsqsfunction processed and
// the ones it reported failed.
func readSQSLog(t *testing.T, path string) (processed, failed map[string]int) {
	t.Helper()
	processed, failed = map[string]int{}, map[string]int{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[0] {
		case "processed":
			if len(fields) != 5 || fields[3] != "aws:sqs" || !strings.HasSuffix(fields[4], ":jobs") {
				t.Errorf("a record without its source: %q", sc.Text())
			}
			processed[fields[2]]++
		case "failed":
			failed[fields[2]]++
		}
	}
	return
}

func waitQueueEmpty(t *testing.T, sq *sqs.Client, url *string, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		a, err := sq.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: url,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		if a.Attributes["ApproximateNumberOfMessages"] == "0" && a.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the queue is not empty: %v", a.Attributes)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
