package clustertest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/hearthdev/hearth/internal/clustertest"
)

// recorder notes the payload mode of each PutObject the SDK sends.
type recorder struct {
	mu    sync.Mutex
	modes []string
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		r.mu.Lock()
		r.modes = append(r.modes, req.Header.Get("X-Amz-Content-Sha256"))
		r.mu.Unlock()
	}
	return http.DefaultClient.Do(req)
}

func s3Through(h *clustertest.Host, rec *recorder) *s3.Client {
	return s3.New(s3.Options{BaseEndpoint: aws.String(h.S3), Region: "local", UsePathStyle: true, HTTPClient: rec,
		Credentials:      credentials.NewStaticCredentialsProvider(h.Keys.AccessKeyID, h.Keys.SecretAccessKey, ""),
		RetryMaxAttempts: 1})
}

// onlyReader hides a reader's Seek, so that the SDK streams the body as
// it reads it (UNSIGNED-PAYLOAD: over plain HTTP the SDK sends no
// aws-chunked frames; those are tested through a hop in
// server.TestBucketForwarding).
type onlyReader struct{ io.Reader }

// A bucket made through a is served by every host: objects put through
// b (one 8 MiB, streamed) are on a and read through c byte for byte;
// ListBuckets through c and ListObjectsV2 through b see them.
func TestBucketsThroughAnyHost(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	a, b, hc := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rec := &recorder{}
	ca, cb, cc := s3Through(a, rec), s3Through(b, rec), s3Through(hc, rec)

	if _, err := ca.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("photos")}); err != nil {
		t.Fatalf("create through a: %v", err)
	}
	// The name is a's: made again through c, it already exists.
	if _, err := cc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("photos")}); err == nil || !strings.Contains(err.Error(), "BucketAlreadyExists") {
		t.Fatalf("create a's bucket through c: %v", err)
	}
	big := make([]byte, 8<<20)
	_, _ = rand.Read(big)
	start := time.Now()
	if _, err := cb.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("photos"), Key: aws.String("big.bin"),
		Body: onlyReader{bytes.NewReader(big)}, ContentLength: aws.Int64(int64(len(big)))},
		s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)); err != nil {
		t.Fatalf("put 8 MiB through b: %v", err)
	}
	t.Logf("8 MiB put through b to a in %v (payload mode %v)", time.Since(start), rec.modes)
	if !slices.Contains(rec.modes, "UNSIGNED-PAYLOAD") {
		t.Fatalf("the 8 MiB put was hashed before it was sent, not streamed: %v", rec.modes)
	}
	if _, err := cb.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("photos"), Key: aws.String("small/a.txt"),
		Body: strings.NewReader("hello")}); err != nil {
		t.Fatalf("put through b: %v", err)
	}
	start = time.Now()
	out, err := cc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("photos"), Key: aws.String("big.bin")})
	if err != nil {
		t.Fatalf("get through c: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes through c, not the 8 MiB put through b", len(got))
	}
	t.Logf("8 MiB read through c from a in %v", time.Since(start))

	// b has its own bucket too: through c ListBuckets shows both.
	if _, err := cb.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")}); err != nil {
		t.Fatalf("create through b: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		lb, err := cc.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err != nil {
			t.Fatalf("list buckets through c: %v", err)
		}
		var names []string
		for _, bk := range lb.Buckets {
			names = append(names, aws.ToString(bk.Name))
		}
		if slices.Equal(names, []string{"logs", "photos"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListBuckets through c: %v, want [logs photos]", names)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lo, err := cb.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("photos")})
	if err != nil {
		t.Fatalf("list objects through b: %v", err)
	}
	var keys []string
	for _, o := range lo.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if !slices.Equal(keys, []string{"big.bin", "small/a.txt"}) {
		t.Fatalf("ListObjectsV2 through b: %v", keys)
	}
	if _, err := ca.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("photos"), Key: aws.String("small/a.txt")}); err != nil {
		t.Fatalf("head on a: %v", err)
	}

	// Notifications: configured through c, fired on a (the owner) when
	// an object is put through b, delivered to a queue read through b.
	q, err := hc.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("uploads")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := hc.SQS().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if _, err := cc.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("photos"),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(arn), Events: []s3types.Event{s3types.EventS3ObjectCreated}}}}}); err != nil {
		t.Fatalf("notification configuration through c: %v", err)
	}
	if _, err := cb.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("photos"), Key: aws.String("in/new.txt"),
		Body: strings.NewReader("new")}); err != nil {
		t.Fatalf("put through b: %v", err)
	}
	qb, err := b.SQS().GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("uploads")})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := b.SQS().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qb.QueueUrl, WaitTimeSeconds: 10, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Messages) != 1 || !strings.Contains(aws.ToString(msg.Messages[0].Body), `"in/new.txt"`) ||
		!strings.Contains(aws.ToString(msg.Messages[0].Body), "ObjectCreated:Put") {
		t.Fatalf("the queue got %d messages: %+v", len(msg.Messages), msg.Messages)
	}
}
