package api

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

type fakeQueues map[string]string

func (q fakeQueues) NameOf(arn string) (string, error) {
	if n, ok := q[arn]; ok {
		return n, nil
	}
	return "", errors.New("not found")
}

const queueARN = "arn:aws:sqs:local:000000000000:records"

// The SDK's lambda client against the API: each operation's path and
// shapes, both ways.
func sdkClient(t *testing.T) (*API, *lambda.Client) {
	t.Helper()
	a := newTestAPI(t)
	a.cfg.Queues = fakeQueues{queueARN: "records"}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	c := lambda.New(lambda.Options{BaseEndpoint: aws.String(srv.URL), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")})
	return a, c
}

func apiErr(t *testing.T, err error) (code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	return ae.ErrorCode(), ae.ErrorMessage()
}

func TestEventInvokeConfigWithTheSDK(t *testing.T) {
	a, c := sdkClient(t)
	ctx := context.Background()
	createFn(t, a, "fn", nil)
	createFn(t, a, "audit", nil)
	if code, h, b := call(t, a, "POST", "/2015-03-31/functions/fn/versions", map[string]any{}); code != 201 {
		typ, _, msg := lambdaError(t, h, b)
		t.Fatalf("publish: %d %s %s", code, typ, msg)
	}

	put, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("fn"),
		MaximumRetryAttempts: aws.Int32(1), DestinationConfig: &types.DestinationConfig{
			OnFailure: &types.OnFailure{Destination: aws.String(queueARN)}}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.FunctionArn) != "arn:aws:lambda:local:000000000000:function:fn:$LATEST" || aws.ToInt32(put.MaximumRetryAttempts) != 1 ||
		put.MaximumEventAgeInSeconds != nil || put.LastModified == nil || put.LastModified.IsZero() ||
		aws.ToString(put.DestinationConfig.OnFailure.Destination) != queueARN || put.DestinationConfig.OnSuccess == nil ||
		put.DestinationConfig.OnSuccess.Destination != nil {
		t.Fatalf("put answered %+v", put)
	}

	// Update keeps what it does not send.
	up, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("fn"),
		MaximumEventAgeInSeconds: aws.Int32(120), DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:local:000000000000:function:audit")}}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(up.MaximumRetryAttempts) != 1 || aws.ToInt32(up.MaximumEventAgeInSeconds) != 120 ||
		aws.ToString(up.DestinationConfig.OnFailure.Destination) != queueARN ||
		aws.ToString(up.DestinationConfig.OnSuccess.Destination) != "arn:aws:lambda:local:000000000000:function:audit" {
		t.Fatalf("update answered %+v", up)
	}
	got, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("fn")})
	if err != nil || aws.ToInt32(got.MaximumEventAgeInSeconds) != 120 || aws.ToInt32(got.MaximumRetryAttempts) != 1 {
		t.Fatalf("get: %+v %v", got, err)
	}
	// Put replaces everything.
	if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("fn"),
		MaximumRetryAttempts: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("fn")})
	if err != nil || got.MaximumEventAgeInSeconds != nil || got.DestinationConfig.OnFailure.Destination != nil {
		t.Fatalf("after a second put: %+v %v", got, err)
	}
	// A version has its own.
	if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("fn"),
		Qualifier: aws.String("1"), MaximumEventAgeInSeconds: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("fn"), MaxItems: aws.Int32(1)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 1 || list.NextMarker == nil ||
		aws.ToString(list.FunctionEventInvokeConfigs[0].FunctionArn) != "arn:aws:lambda:local:000000000000:function:fn:$LATEST" {
		t.Fatalf("list page 1: %+v %v", list, err)
	}
	list, err = c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("fn"), Marker: list.NextMarker})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 1 || list.NextMarker != nil ||
		aws.ToString(list.FunctionEventInvokeConfigs[0].FunctionArn) != "arn:aws:lambda:local:000000000000:function:fn:1" {
		t.Fatalf("list page 2: %+v %v", list, err)
	}

	if _, err := c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("fn")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("fn")})
	if code, msg := apiErr(t, err); code != "ResourceNotFoundException" || !strings.Contains(msg, "doesn't have an EventInvokeConfig") {
		t.Fatalf("get after delete: %s %s", code, msg)
	}
	_, err = c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{FunctionName: aws.String("fn"), MaximumRetryAttempts: aws.Int32(1)})
	if code, _ := apiErr(t, err); code != "ResourceNotFoundException" {
		t.Fatalf("update of none: %s", code)
	}
	// Deleting the function deletes its configs.
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("fn")}); err != nil {
		t.Fatal(err)
	}
	if cs, err := a.cfg.Store.EventInvokeConfigs(ctx, "fn"); err != nil || len(cs) != 0 {
		t.Fatalf("configs of a deleted function: %+v %v", cs, err)
	}
}

func TestEventInvokeConfigRefuses(t *testing.T) {
	a, c := sdkClient(t)
	ctx := context.Background()
	createFn(t, a, "fn", nil)
	dest := func(arn string) *types.DestinationConfig {
		return &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String(arn)}}
	}
	tests := []struct {
		name     string
		in       lambda.PutFunctionEventInvokeConfigInput
		wantCode string
		wantMsg  string
	}{
		{"3 retries", lambda.PutFunctionEventInvokeConfigInput{MaximumRetryAttempts: aws.Int32(3)}, "InvalidParameterValueException", "maximumRetryAttempts"},
		{"negative retries", lambda.PutFunctionEventInvokeConfigInput{MaximumRetryAttempts: aws.Int32(-1)}, "InvalidParameterValueException", "maximumRetryAttempts"},
		{"an age under a minute", lambda.PutFunctionEventInvokeConfigInput{MaximumEventAgeInSeconds: aws.Int32(59)}, "InvalidParameterValueException", "maximumEventAgeInSeconds"},
		{"an age over 6 h", lambda.PutFunctionEventInvokeConfigInput{MaximumEventAgeInSeconds: aws.Int32(21601)}, "InvalidParameterValueException", "maximumEventAgeInSeconds"},
		{"a topic", lambda.PutFunctionEventInvokeConfigInput{DestinationConfig: dest("arn:aws:sns:local:000000000000:t")}, "InvalidParameterValueException", "is invalid"},
		{"an unknown queue", lambda.PutFunctionEventInvokeConfigInput{DestinationConfig: dest("arn:aws:sqs:local:000000000000:nope")}, "InvalidParameterValueException", "queue does not exist"},
		{"an unknown function", lambda.PutFunctionEventInvokeConfigInput{DestinationConfig: dest("arn:aws:lambda:local:000000000000:function:nope")}, "InvalidParameterValueException", "function does not exist"},
		{"the function itself", lambda.PutFunctionEventInvokeConfigInput{DestinationConfig: dest("arn:aws:lambda:local:000000000000:function:fn")}, "InvalidParameterValueException", "itself"},
		{"a missing function", lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("ghost")}, "ResourceNotFoundException", "ghost"},
		{"a missing version", lambda.PutFunctionEventInvokeConfigInput{Qualifier: aws.String("7")}, "ResourceNotFoundException", "fn:7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if in.FunctionName == nil {
				in.FunctionName = aws.String("fn")
			}
			_, err := c.PutFunctionEventInvokeConfig(ctx, &in)
			if code, msg := apiErr(t, err); code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("%s %q, want %s about %q", code, msg, tc.wantCode, tc.wantMsg)
			}
		})
	}
	if cs, _ := a.cfg.Store.EventInvokeConfigs(ctx, "fn"); len(cs) != 0 {
		t.Fatalf("refused configs were stored: %+v", cs)
	}
}

// DeadLetterConfig on Create and UpdateFunctionConfiguration: a queue that
// exists, shown in the configuration, removed with an empty TargetArn.
func TestDeadLetterConfig(t *testing.T) {
	a, c := sdkClient(t)
	ctx := context.Background()
	createFn(t, a, "fn", map[string]any{"DeadLetterConfig": map[string]any{"TargetArn": queueARN}})
	cfg, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("fn")})
	if err != nil || cfg.DeadLetterConfig == nil || aws.ToString(cfg.DeadLetterConfig.TargetArn) != queueARN {
		t.Fatalf("configuration %+v %v", cfg, err)
	}
	_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sqs:local:000000000000:nope")}})
	if code, _ := apiErr(t, err); code != "InvalidParameterValueException" {
		t.Fatalf("an unknown dead-letter queue: %s", code)
	}
	_, err = c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sns:local:000000000000:t")}})
	if code, _ := apiErr(t, err); code != "InvalidParameterValueException" {
		t.Fatalf("a topic as dead-letter queue: %s", code)
	}
	// Other updates keep it.
	if _, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"), Timeout: aws.Int32(9)}); err != nil {
		t.Fatal(err)
	}
	fn, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("fn")})
	if err != nil || fn.Configuration.DeadLetterConfig == nil || aws.ToString(fn.Configuration.DeadLetterConfig.TargetArn) != queueARN {
		t.Fatalf("GetFunction %+v %v", fn.Configuration, err)
	}
	up, err := c.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("fn"),
		DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("")}})
	if err != nil || up.DeadLetterConfig != nil {
		t.Fatalf("removing it: %+v %v", up.DeadLetterConfig, err)
	}
	_, err = c.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("other"), Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: []byte("zip")}, DeadLetterConfig: &types.DeadLetterConfig{TargetArn: aws.String("arn:aws:sqs:local:000000000000:nope")}})
	if code, _ := apiErr(t, err); code != "InvalidParameterValueException" {
		t.Fatalf("create with an unknown dead-letter queue: %s", code)
	}
}
