package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hearthdev/hearth/internal/server"
)

type s3fnResult struct {
	Body, Error, Code string
	OK                bool
}

// A function reads and writes its bucket from inside its VM, with the
// keys it was given and the endpoint on its guest's loopback; its keys
// reach no other bucket, and are no keys for the Lambda API.
func TestBucketsFromAFunction(t *testing.T) {
	// Kept warm 1 s: the environment is suspended between invocations,
	// and the guest reaches its bucket again after its resume.
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Second, S3Listen: "127.0.0.1:0"})
	c := s3Client(d, "http://"+d.srv.S3Addr(), true)
	ctx := context.Background()
	for _, b := range []string{"uploads", "secret"} {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("in/cat.jpg"), Body: strings.NewReader("meow of " + b)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("thumbnailer"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/tests3function")}, Timeout: aws.Int32(60),
		Tags: map[string]string{server.BucketsTag: "uploads"}}); err != nil {
		t.Fatal(err)
	}
	invoke := func(event string) s3fnResult {
		t.Helper()
		out, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("thumbnailer"), Payload: []byte(event)})
		if err != nil {
			t.Fatal(err)
		}
		if out.FunctionError != nil {
			t.Fatalf("%s: %s %s", event, *out.FunctionError, out.Payload)
		}
		var r s3fnResult
		if err := json.Unmarshal(out.Payload, &r); err != nil {
			t.Fatalf("%s: %s", out.Payload, err)
		}
		return r
	}
	if r := invoke(`{"action":"thumb","bucket":"uploads","key":"in/cat.jpg","out":"out/cat.jpg"}`); !r.OK {
		t.Fatalf("thumb: %+v", r)
	}
	if got := getString(t, c, "uploads", "out/cat.jpg", ""); got != "thumb:meow of uploads" {
		t.Errorf("the function wrote %q", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Suspended != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d.srv.Scheduler().Stats().Suspended != 1 {
		t.Fatal("the environment was not suspended")
	}
	if r := invoke(`{"action":"get","bucket":"uploads","key":"out/cat.jpg"}`); r.Body != "thumb:meow of uploads" {
		t.Errorf("get after a resume: %+v", r)
	}
	if r := invoke(`{"action":"get","bucket":"secret","key":"in/cat.jpg"}`); r.Code != "AccessDenied" || r.Body != "" {
		t.Errorf("another bucket: %+v", r)
	}
	// The services port serves S3 only: the Lambda API is not there.
	if r := invoke(`{"action":"lambda","endpoint":"http://127.0.0.1:9002"}`); r.OK || r.Error == "" {
		t.Errorf("the Lambda API through the guest's endpoint: %+v", r)
	}
	// Its keys, used on the daemon's Lambda API, are no one's.
	keys := strings.Fields(invoke(`{"action":"keys"}`).Body)
	if len(keys) != 3 || !strings.HasPrefix(keys[0], "ASIA") {
		t.Fatalf("the function's keys: %v", keys)
	}
	lc := lambda.New(lambda.Options{BaseEndpoint: aws.String(d.url), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(keys[0], keys[1], keys[2])})
	if _, err := lc.ListFunctions(ctx, &lambda.ListFunctionsInput{}); apiErrorCode(err) != "UnrecognizedClientException" {
		t.Errorf("the function's keys on the Lambda API: %v", err)
	}
	// On the host's S3 listener they are the function's, scoped the same.
	fc := s3.New(s3.Options{BaseEndpoint: aws.String("http://" + d.srv.S3Addr()), Region: "local", UsePathStyle: true, RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(keys[0], keys[1], keys[2])})
	if _, err := fc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("secret"), Key: aws.String("in/cat.jpg")}); s3Code(err) != "AccessDenied" {
		t.Errorf("the function's keys on another bucket: %v", err)
	}
}
