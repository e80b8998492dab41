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
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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

func handle(ctx context.Context, e event) (result, error) {
	c := client()
	switch e.Action {
	case "thumb":
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(e.Key)})
		if err != nil {
			return failed(err), nil
		}
		b, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil {
			return failed(err), nil
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.Bucket), Key: aws.String(e.Out),
			Body: strings.NewReader("thumb:" + string(b))}); err != nil {
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
