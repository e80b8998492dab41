package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/server"
)

// The code an update replaced, and a deleted function's, stop counting in
// the account's TotalCodeSize (and leave the disk) once no function names
// them for the grace; the code in use stays.
func TestReplacedAndDeletedCodeIsLetGo(t *testing.T) {
	d := startWith(t, server.Config{DataDir: t.TempDir(), KeepWarm: time.Minute, CodeGrace: 200 * time.Millisecond})
	ctx := context.Background()
	first := readZip(t, "./examples/hello")
	second := readZip(t, "./examples/counter")
	totalCode := func() int64 {
		t.Helper()
		s, err := d.client.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		return s.AccountUsage.TotalCodeSize
	}
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: first}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("f"), ZipFile: second}); err != nil {
		t.Fatal(err)
	}
	if n := totalCode(); n != int64(len(first)+len(second)) {
		t.Fatalf("TotalCodeSize %d just after the update, want both zips (%d)", n, len(first)+len(second))
	}
	waitUntil(t, "the replaced zip to go", func() bool { return totalCode() == int64(len(second)) })
	// Still there for the function, which still answers for its code.
	if out, err := d.client.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("f")}); err != nil ||
		aws.ToInt64(&out.Configuration.CodeSize) != int64(len(second)) {
		t.Fatalf("the function after the prune: %v", err)
	}
	if _, err := d.client.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("f")}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the deleted function's zip to go", func() bool { return totalCode() == 0 })
}

// waitUntil waits up to 10 s for ok.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
