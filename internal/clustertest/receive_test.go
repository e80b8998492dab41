package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/hearthdev/hearth/internal/clustertest"
)

// drain receives the messages of queue through hosts in turn, deleting
// each batch as received, and hands every body to seen until done says
// the test has what it waits for. A loaded machine may take minutes over
// a backlog, so the wait ends when messages stop coming (idle), not at a
// fixed time; what is still queued is logged as it goes.
func drain(ctx context.Context, t *testing.T, hosts []*clustertest.Host, queue *string, idle time.Duration, seen func(body string), done func() bool) {
	t.Helper()
	clients := make([]*sqs.Client, len(hosts))
	for i, h := range hosts {
		clients[i] = h.SQS()
	}
	const limit = 5 * time.Minute
	start, last, report := time.Now(), time.Now(), time.Now()
	received, errs := 0, 0
	for i := 0; !done() && time.Since(last) < idle && time.Since(start) < limit; i++ {
		if time.Since(report) >= 15*time.Second {
			report = time.Now()
			t.Logf("still waiting after %s (%d received): %s", time.Since(start).Round(time.Second), received, backlogOf(ctx, hosts[0], queue))
		}
		h, client := hosts[i%len(hosts)], clients[i%len(hosts)]
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
		if err != nil {
			// Seen about once a run under load, right after it: a 200
			// whose body the client could not read ("use of closed
			// network connection", not traced yet). The messages come
			// back after their visibility timeout; the checks are that
			// they all arrive.
			t.Logf("receive through %s (tried again): %v", h.Node, err)
			if errs++; errs > 5 {
				t.Fatalf("receive: %d failures", errs)
			}
			continue
		}
		if len(out.Messages) == 0 {
			continue
		}
		entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
		for j, m := range out.Messages {
			seen(aws.ToString(m.Body))
			entries[j] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), ReceiptHandle: m.ReceiptHandle}
		}
		received += len(out.Messages)
		last = time.Now()
		del, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: queue, Entries: entries})
		if err != nil {
			t.Fatalf("delete through %s: %v", h.Node, err)
		}
		for _, f := range del.Failed {
			t.Fatalf("delete through %s: %s %s", h.Node, aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	t.Logf("%d messages received in %s", received, time.Since(start).Round(100*time.Millisecond))
}

// requestIDOf is the invocation an OnSuccess or OnFailure record is of.
func requestIDOf(t *testing.T, record string) string {
	t.Helper()
	var rec struct {
		RequestContext struct {
			RequestID string `json:"requestId"`
		} `json:"requestContext"`
	}
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		t.Fatalf("record %s: %v", record, err)
	}
	return rec.RequestContext.RequestID
}

// backlogOf says what is still queued, as h sees it: the async events
// kept and the messages of queue.
func backlogOf(ctx context.Context, h *clustertest.Host, queue *string) string {
	events := "?"
	if resp, err := http.Get(h.API + "/metrics"); err == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "hearth_async_events "); ok {
				events = v
			}
		}
	}
	messages := "?"
	if out, err := h.SQS().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: queue,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}}); err == nil {
		messages = fmt.Sprintf("%s visible, %s in flight", out.Attributes["ApproximateNumberOfMessages"], out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	}
	return fmt.Sprintf("async events kept %s; queue %s", events, messages)
}
