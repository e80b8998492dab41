package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
)

// kill -9 of the daemon loses no event: messages acknowledged by
// SendMessage (visible ones and ones received but not deleted), an
// asynchronous event waiting for its retry, and events just queued are all
// delivered after the next daemon starts on the same data folder.
func TestKillDaemonKeepsEvents(t *testing.T) {
	testvm.Driver(t)
	bin, data := testvm.Hearth(t), t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	flags := []string{"--async-retry-delays", "3s", "--async-ack-wait", "3s"}
	daemon := serveProcess(t, bin, data, addr, flags...)
	profiles, err := server.ReadCredentials(server.CredentialsFile(data))
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewStaticCredentialsProvider(profiles[0].AccessKeyID, profiles[0].SecretAccessKey, "")
	lc := lambda.New(lambda.Options{BaseEndpoint: aws.String("http://" + addr), Region: "local", RetryMaxAttempts: 1, Credentials: creds})
	sq := sqs.New(sqs.Options{BaseEndpoint: aws.String("http://" + addr), Region: "local", RetryMaxAttempts: 1, Credentials: creds})
	ctx := context.Background()

	inbox, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("inbox")})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("failed")})
	if err != nil {
		t.Fatal(err)
	}
	const sent = 40
	for i := range sent {
		if _, err := sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: inbox.QueueUrl, MessageBody: aws.String(fmt.Sprintf("m%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Ten in flight at the crash: received, not deleted.
	got, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: inbox.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 5})
	if err != nil || len(got.Messages) == 0 {
		t.Fatalf("receive before the crash: %v %v", got, err)
	}

	zip := readZip(t, "./internal/testfunction")
	for _, fn := range []struct {
		name string
		env  map[string]string
	}{{"work", nil}, {"sink", map[string]string{"TESTFN_LOG_EVENT": "1"}}} {
		if _, err := lc.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(fn.name), Role: aws.String("r"),
			Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(30), Environment: &types.Environment{Variables: fn.env}}); err != nil {
			t.Fatal(err)
		}
	}
	failedArn := "arn:aws:sqs:local:000000000000:failed"
	if _, err := lc.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("work"),
		MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(failedArn)}}}); err != nil {
		t.Fatal(err)
	}
	event := func(fn, payload string) string {
		t.Helper()
		out, err := lc.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("invoke %s: %+v %v", fn, out, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		return id
	}
	failID := event("work", `{"action":"error"}`)
	// Its first attempt done, it waits for its retry when the daemon dies.
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(string(logsOf(t, addr, profiles[0], "work")), "END RequestId: "+failID) {
		if time.Now().After(deadline) {
			t.Fatal("the failing event's first attempt never ended")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Events accepted just before the crash.
	var queued []string
	for i := range 5 {
		queued = append(queued, event("sink", fmt.Sprintf(`{"action":"echo","n":%d}`, i)))
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = daemon.Process.Wait()
	for _, pid := range qemuChildren(daemon.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}

	serveProcess(t, bin, data, addr, flags...)
	// Every message, the in-flight ones after their visibility, once
	// deleted: none lost.
	seen := map[string]bool{}
	deadline = time.Now().Add(2 * time.Minute)
	for len(seen) < sent && time.Now().Before(deadline) {
		out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: inbox.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			seen[aws.ToString(m.Body)] = true
			if _, err := sq.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: inbox.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != sent {
		t.Errorf("%d of %d acknowledged messages after the crash", len(seen), sent)
	}
	// The event in retry: its second attempt ran after the restart, and
	// its record reached the OnFailure queue.
	var rec invocationRecord
	deadline = time.Now().Add(2 * time.Minute)
	for rec.RequestContext.RequestID == "" && time.Now().Before(deadline) {
		out, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: failed.QueueUrl, WaitTimeSeconds: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &rec)
		}
	}
	if rec.RequestContext.RequestID != failID || rec.RequestContext.ApproximateInvokeCount != 2 || rec.RequestContext.Condition != "RetriesExhausted" {
		t.Errorf("the event in retry at the crash: record %+v, want %s after 2 attempts", rec.RequestContext, failID)
	}
	// The events queued at the crash each ran (at least once).
	deadline = time.Now().Add(2 * time.Minute)
	for {
		log := string(logsOf(t, addr, profiles[0], "sink"))
		var missing []string
		for _, id := range queued {
			if !strings.Contains(log, "END RequestId: "+id) {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events queued at the crash never ran: %v", missing)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// logsOf is the function's log, from the daemon's Hearth route.
func logsOf(t *testing.T, addr string, p server.Profile, fn string) []byte {
	t.Helper()
	d := &daemon{url: "http://" + addr, creds: aws.Credentials{AccessKeyID: p.AccessKeyID, SecretAccessKey: p.SecretAccessKey}}
	return d.signedGet(t, "/hearth/v1/functions/"+fn+"/logs?tail=1000")
}
