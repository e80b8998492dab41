package server_test

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
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/hearthdev/hearth/internal/server"
)

// invocationRecord is Lambda's record, as a destination gets it.
type invocationRecord struct {
	Version        string `json:"version"`
	Timestamp      string `json:"timestamp"`
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

// sinkRecords reads the records the sink function logged, by the request
// id they are of.
func sinkRecords(t *testing.T, d *daemon) map[string]invocationRecord {
	t.Helper()
	out := map[string]invocationRecord{}
	for _, line := range strings.Split(string(d.signedGet(t, "/hearth/v1/functions/sink/logs?tail=1000")), "\n") {
		_, ev, ok := strings.Cut(line, "testfn: event ")
		if !ok {
			continue
		}
		var r invocationRecord
		if err := json.Unmarshal([]byte(ev), &r); err != nil {
			t.Fatalf("the sink got %q: %v", ev, err)
		}
		out[r.RequestContext.RequestID] = r
	}
	return out
}

// Asynchronous invocations on a real daemon with real VMs, through the
// SDK: a failing event is attempted 1 + MaximumRetryAttempts times with
// the same request id, then its RetriesExhausted record goes to the
// OnFailure function; a succeeding one's Success record to OnSuccess.
func TestAsyncInvocationDestinations(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, Async: server.AsyncOptions{
		RetryDelays: []time.Duration{time.Second, 2 * time.Second}, BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second}})
	ctx := context.Background()
	zip := readZip(t, "./internal/testfunction")
	for _, fn := range []struct {
		name string
		env  map[string]string
	}{{"work", nil}, {"sink", map[string]string{"TESTFN_LOG_EVENT": "1"}}} {
		if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn.name), Role: aws.String("r"),
			Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30), Environment: &types.Environment{Variables: fn.env}}); err != nil {
			t.Fatal(err)
		}
	}
	sinkARN := "arn:aws:lambda:local:000000000000:function:sink"
	if _, err := d.client.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("work"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String(sinkARN)},
			OnFailure: &types.OnFailure{Destination: aws.String(sinkARN)}}}); err != nil {
		t.Fatal(err)
	}
	invoke := func(payload string) string {
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("work"), InvocationType: types.InvocationTypeEvent,
			Payload: []byte(payload)})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("invoke: %+v %v", out, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		if id == "" {
			t.Fatal("a 202 without a request id")
		}
		return id
	}
	failID := invoke(`{"action":"error"}`)
	okID := invoke(`{"action":"echo","n":7}`)

	var recs map[string]invocationRecord
	deadline := time.Now().Add(4 * time.Minute)
	for {
		recs = sinkRecords(t, d)
		if len(recs) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fail, okRec := recs[failID], recs[okID]
	wantArn := "arn:aws:lambda:local:000000000000:function:work:$LATEST"
	if fail.Version != "1.0" || fail.RequestContext.Condition != "RetriesExhausted" || fail.RequestContext.ApproximateInvokeCount != 3 ||
		fail.RequestContext.FunctionArn != wantArn || string(fail.RequestPayload) != `{"action":"error"}` ||
		fail.ResponseContext.StatusCode != 200 || fail.ResponseContext.ExecutedVersion != "$LATEST" || fail.ResponseContext.FunctionError != "Unhandled" ||
		!strings.Contains(string(fail.ResponsePayload), "testfn was asked to fail") {
		t.Errorf("the failure's record: %+v (all: %+v)", fail, recs)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", fail.Timestamp); err != nil {
		t.Errorf("timestamp %q: %v", fail.Timestamp, err)
	}
	var echoed struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(okRec.ResponsePayload, &echoed)
	if okRec.RequestContext.Condition != "Success" || okRec.RequestContext.ApproximateInvokeCount != 1 ||
		okRec.ResponseContext.FunctionError != "" || echoed.RequestID != okID {
		t.Errorf("the success's record: %+v, the function saw request id %q, want %q", okRec, echoed.RequestID, okID)
	}
	// Every attempt ran with the event's request id.
	log := string(d.signedGet(t, "/hearth/v1/functions/work/logs?tail=1000"))
	if n := strings.Count(log, "START RequestId: "+failID+" "); n != 3 {
		t.Errorf("%d attempts of the failing event in the log, want 3", n)
	}
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	for _, want := range []string{
		`hearth_async_retries_total{function="work",reason="function_error"} 2`,
		`hearth_async_deliveries_total{function="work",outcome="ok",target="on_failure"} 1`,
		`hearth_async_deliveries_total{function="work",outcome="ok",target="on_success"} 1`,
		`hearth_async_events_queued_total{function="work"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		fmt.Println(log)
	}
}

// An event waiting for its retry when the daemon stops runs after the next
// daemon starts on the same data folder: its record counts the attempts of
// both daemons.
func TestAsyncEventOutlivesARestart(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, KeepWarm: time.Minute, Async: server.AsyncOptions{RetryDelays: []time.Duration{4 * time.Second}, AckWait: 2 * time.Second}}
	d := startWith(t, cfg)
	ctx := context.Background()
	zip := readZip(t, "./internal/testfunction")
	for _, fn := range []struct {
		name string
		env  map[string]string
	}{{"work", nil}, {"sink", map[string]string{"TESTFN_LOG_EVENT": "1"}}} {
		if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn.name), Role: aws.String("r"),
			Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30), Environment: &types.Environment{Variables: fn.env}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.client.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("work"),
		MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{
			OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:local:000000000000:function:sink")}}}); err != nil {
		t.Fatal(err)
	}
	out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("work"), InvocationType: types.InvocationTypeEvent,
		Payload: []byte(`{"action":"error"}`)})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(string(d.signedGet(t, "/hearth/v1/functions/work/logs?tail=100")), "END RequestId: "+id) {
		if time.Now().After(deadline) {
			t.Fatal("the first attempt never ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if recs := sinkRecords(t, d); len(recs) != 0 {
		t.Fatalf("records before the retry: %+v", recs)
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	d = startWith(t, cfg)
	var rec invocationRecord
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var ok bool
		if rec, ok = sinkRecords(t, d)[id]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no record after the restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestContext.ApproximateInvokeCount != 2 {
		t.Fatalf("record %+v, want RetriesExhausted after 2 attempts", rec)
	}
	if n := strings.Count(string(d.signedGet(t, "/hearth/v1/functions/work/logs?tail=1000")), "START RequestId: "+id+" "); n != 2 {
		t.Fatalf("%d attempts in the log, want 2", n)
	}
}

// Destinations and the dead-letter queue that are Hearth's queues: a
// failing event's record lands in the OnFailure queue and the event itself
// in the DLQ; a succeeding event's record in the OnSuccess queue.
func TestAsyncDestinationQueues(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, Async: server.AsyncOptions{
		RetryDelays: []time.Duration{time.Second}, BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second}})
	ctx := context.Background()
	sq := sqsClient(d)
	arns := map[string]string{}
	for _, name := range []string{"ok", "failed", "dlq"} {
		q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := sq.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
		if err != nil {
			t.Fatal(err)
		}
		arns[name] = attrs.Attributes["QueueArn"]
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("work"), Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, Timeout: aws.Int32(30),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String(arns["dlq"])}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("work"),
		MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String(arns["ok"])},
			OnFailure: &types.OnFailure{Destination: aws.String(arns["failed"])}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"action":"error"}`, `{"action":"echo"}`} {
		if out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("work"), InvocationType: types.InvocationTypeEvent,
			Payload: []byte(p)}); err != nil || out.StatusCode != 202 {
			t.Fatalf("invoke %s: %+v %v", p, out, err)
		}
	}
	receive := func(name string) string {
		t.Helper()
		url, err := sq.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url.QueueUrl, WaitTimeSeconds: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) > 0 {
				return aws.ToString(out.Messages[0].Body)
			}
		}
		t.Fatalf("nothing in queue %s", name)
		return ""
	}
	var rec invocationRecord
	if err := json.Unmarshal([]byte(receive("failed")), &rec); err != nil || rec.RequestContext.Condition != "RetriesExhausted" ||
		rec.RequestContext.ApproximateInvokeCount != 2 || string(rec.RequestPayload) != `{"action":"error"}` {
		t.Errorf("OnFailure record: %+v %v", rec, err)
	}
	if body := receive("dlq"); body != `{"action":"error"}` {
		t.Errorf("the DLQ got %q, want the event", body)
	}
	rec = invocationRecord{}
	if err := json.Unmarshal([]byte(receive("ok")), &rec); err != nil || rec.RequestContext.Condition != "Success" ||
		string(rec.RequestPayload) != `{"action":"echo"}` {
		t.Errorf("OnSuccess record: %+v %v", rec, err)
	}
}
