package clustertest_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/hearthdev/hearth/internal/clustertest"
	"github.com/hearthdev/hearth/internal/testvm"
)

// A function with reserved concurrency 1 runs once at a time across the
// cluster: two slow calls at once through two hosts, one runs and the
// other is throttled as Lambda throttles it (429, its reason), though
// each host alone would have room for it. Once the first ends and its
// slot idles back, a call through the other host runs.
func TestReservedConcurrencyHoldsAcrossHosts(t *testing.T) {
	testvm.Driver(t)
	zip, err := os.ReadFile(testvm.FunctionZip(t, "./internal/testfunction"))
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{})
	a, b := c.Host("a"), c.Host("b")
	ctx := context.Background()
	if _, err := a.Lambda().CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lambda().PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"),
		ReservedConcurrentExecutions: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	// The limit is configuration every host applies from the shared log,
	// a moment after a took it: the calls below start once b has it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := b.Lambda().GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("slow")})
		if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b does not have the reserved concurrency after 30 s: %+v %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	noRetry := func(o *lambda.Options) { o.RetryMaxAttempts = 1 }
	call := func(h *clustertest.Host, ms string) error {
		out, err := h.Lambda().Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"),
			Payload: []byte(`{"action":"sleep","ms":` + ms + `}`)}, noRetry)
		if err == nil && out.FunctionError != nil {
			t.Errorf("through %s: function error %s: %s", h.Node, *out.FunctionError, out.Payload)
		}
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, h := range []*clustertest.Host{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call(h, "4000")
		}()
	}
	wg.Wait()
	ran, throttled := 0, 0
	for i, err := range errs {
		var tm *types.TooManyRequestsException
		switch {
		case err == nil:
			ran++
		case errors.As(err, &tm) && tm.Reason == types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded:
			throttled++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if ran != 1 || throttled != 1 {
		t.Fatalf("two calls at once through a and b: %d ran, %d throttled; want 1 and 1 (reserved concurrency 1 across the cluster)", ran, throttled)
	}
	// The slot idles back (a few seconds) and either host may then take it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := call(b, "10")
		if err == nil {
			break
		}
		var tm *types.TooManyRequestsException
		if !errors.As(err, &tm) || time.Now().After(deadline) {
			t.Fatalf("a call after the first ended: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
