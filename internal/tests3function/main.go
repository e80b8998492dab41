// Command tests3function is a Lambda function for Hearth's bucket tests: it
// uses the S3 endpoint from inside its guest with aws-sdk-go-v2's s3
// client, configured only by the environment the function was given
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AWS_ENDPOINT_URL_S3), as a function on Lambda would be.
//
//	{"action":"thumb","bucket":B,"key":K,"out":O}
//	    reads B/K and writes B/O holding "thumb:" + its bytes
//	{"action":"get","bucket":B,"key":K}
//	    {"body":…} or {"error":…,"code":…}
//	{"action":"lambda","endpoint":U}
//	    calls the Lambda API at U with the same keys: {"error":…} or {"ok":true}
//	{"action":"keys"}
//	    returns the keys it was given, as {"body":"<id> <secret> <token>"}
//
// Given an S3 event (aws-lambda-go's events.S3Event), it is a thumbnailer:
// it logs "s3event <eventName> <bucket>/<key>" for each record, and for an
// object created under in/ writes out/<rest> holding "thumb:" + its bytes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

type event struct {
	Action   string `json:"action"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Out      string `json:"out"`
	Endpoint string `json:"endpoint"`
}

type result struct {
	Body  string `json:"body,omitempty"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	OK    bool   `json:"ok,omitempty"`
}

func creds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"))
}

func client() *s3.Client {
	return s3.New(s3.Options{Region: os.Getenv("AWS_REGION"), Credentials: creds(),
		BaseEndpoint: aws.String(os.Getenv("AWS_ENDPOINT_URL_S3"))})
}

func failed(err error) result {
	r := result{Error: err.Error()}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		r.Code = ae.ErrorCode()
	}
	return r
}

// thumb reads bucket/key and writes bucket/out holding "thumb:" + its
// bytes.
func thumb(ctx context.Context, c *s3.Client, bucket, key, out string) error {
	o, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	b, err := io.ReadAll(o.Body)
	o.Body.Close()
	if err != nil {
		return err
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(out),
		Body: strings.NewReader("thumb:" + string(b))})
	return err
}

// onS3Event handles an S3 event; an error is the function's, so that
// the asynchronous path retries it.
func onS3Event(ctx context.Context, e events.S3Event) (result, error) {
	c := client()
	for _, r := range e.Records {
		key := r.S3.Object.URLDecodedKey
		fmt.Printf("s3event %s %s/%s\n", r.EventName, r.S3.Bucket.Name, key)
		rest, ok := strings.CutPrefix(key, "in/")
		if !ok || !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			continue
		}
		if err := thumb(ctx, c, r.S3.Bucket.Name, key, "out/"+rest); err != nil {
			return result{}, err
		}
	}
	return result{OK: true}, nil
}

func handle(ctx context.Context, raw json.RawMessage) (result, error) {
	var s3e events.S3Event
	if err := json.Unmarshal(raw, &s3e); err == nil && len(s3e.Records) > 0 {
		return onS3Event(ctx, s3e)
	}
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		return result{}, err
	}
	c := client()
	switch e.Action {
	case "thumb":
		if err := thumb(ctx, c, e.Bucket, e.Key, e.Out); err != nil {
			return failed(err), nil
		}
		return result{OK: true}, nil
	case "get":
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(e.Key)})
		if err != nil {
			return failed(err), nil
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err != nil {
			return failed(err), nil
		}
		return result{Body: string(b)}, nil
	case "keys":
		return result{Body: os.Getenv("AWS_ACCESS_KEY_ID") + " " + os.Getenv("AWS_SECRET_ACCESS_KEY") + " " + os.Getenv("AWS_SESSION_TOKEN")}, nil
	case "lambda":
		lc := awslambda.New(awslambda.Options{Region: os.Getenv("AWS_REGION"), Credentials: creds(),
			BaseEndpoint: aws.String(e.Endpoint), RetryMaxAttempts: 1})
		if _, err := lc.ListFunctions(ctx, &awslambda.ListFunctionsInput{}); err != nil {
			return failed(err), nil
		}
		return result{OK: true}, nil
	}
	return result{}, fmt.Errorf("unknown action %q", e.Action)
}

func main() { lambda.Start(handle) }
