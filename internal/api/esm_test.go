package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/hearthdev/hearth/internal/esm"
	"github.com/hearthdev/hearth/internal/store"
)

// emptyQueues are two queues that never have a message: the pollers long
// poll them, so the manager settles states as in the daemon.
type emptyQueues struct{}

func (emptyQueues) NameOf(arn string) (string, error) {
	name, ok := strings.CutPrefix(arn, "arn:aws:sqs:local:000000000000:")
	if !ok || (name != "jobs" && name != "other") {
		return "", fmt.Errorf("%s: %w", arn, esm.ErrNoQueue)
	}
	return name, nil
}

func (emptyQueues) Receive(ctx context.Context, name string, max int, wait, visibility time.Duration) ([]esm.Message, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, nil
	}
}
func (emptyQueues) Delete(context.Context, string, string) error { return nil }
func (emptyQueues) ChangeVisibility(context.Context, string, string, time.Duration) error {
	return nil
}
func (emptyQueues) Stats(context.Context, string) (esm.QueueStats, error) {
	return esm.QueueStats{}, nil
}

const (
	jobsARN  = "arn:aws:sqs:local:000000000000:jobs"
	otherARN = "arn:aws:sqs:local:000000000000:other"
)

// newESMClient is the API with a real mapping manager (over queues that
// stay empty) on a loopback server, and the SDK's Lambda client for it.
func newESMClient(t *testing.T) (*lambda.Client, *API, *esm.Manager) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mgr := esm.New(esm.Config{Mappings: st, Queues: emptyQueues{}, Invoker: noInvoker{}, IdleWait: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() {
		_ = mgr.Shutdown(context.Background())
		st.Close()
	})
	a := New(Config{Store: st, Invoker: noInvoker{}, Keys: testKeys{"AKIDTEST": "secret"}, Region: "local",
		ValidateCode: func([]byte) error { return nil }, EventSources: mgr})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	cl := lambda.New(lambda.Options{BaseEndpoint: aws.String(srv.URL), Region: "local", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")})
	return cl, a, mgr
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// The mapping operations through aws-sdk-go-v2's Lambda client: every
// field it reads back is the one Hearth wrote, in the SDK's types.
func TestEventSourceMappingsWithTheSDK(t *testing.T) {
	cl, a, mgr := newESMClient(t)
	ctx := context.Background()
	createFn(t, a, "worker", nil)
	createFn(t, a, "other", nil)

	before := time.Now().Add(-time.Second)
	created, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{
		FunctionName: aws.String("arn:aws:lambda:local:000000000000:function:worker"), EventSourceArn: aws.String(jobsARN),
		BatchSize: aws.Int32(100), MaximumBatchingWindowInSeconds: aws.Int32(2),
		FunctionResponseTypes: []types.FunctionResponseType{types.FunctionResponseTypeReportBatchItemFailures},
		ScalingConfig:         &types.ScalingConfig{MaximumConcurrency: aws.Int32(3)},
		FilterCriteria:        &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":{"kind":["order"]}}`)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(created.UUID)
	if len(id) != 36 || aws.ToString(created.State) != esm.StateCreating || aws.ToInt32(created.BatchSize) != 100 ||
		aws.ToInt32(created.MaximumBatchingWindowInSeconds) != 2 || aws.ToString(created.EventSourceArn) != jobsARN ||
		aws.ToString(created.FunctionArn) != "arn:aws:lambda:local:000000000000:function:worker" ||
		aws.ToString(created.EventSourceMappingArn) != "arn:aws:lambda:local:000000000000:event-source-mapping:"+id ||
		len(created.FunctionResponseTypes) != 1 || created.FunctionResponseTypes[0] != types.FunctionResponseTypeReportBatchItemFailures ||
		created.ScalingConfig == nil || aws.ToInt32(created.ScalingConfig.MaximumConcurrency) != 3 ||
		created.FilterCriteria == nil || aws.ToString(created.FilterCriteria.Filters[0].Pattern) != `{"body":{"kind":["order"]}}` ||
		created.LastModified == nil || created.LastModified.Before(before) || created.LastModified.After(time.Now().Add(time.Second)) {
		t.Fatalf("created %+v", created)
	}
	got, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil || aws.ToString(got.State) != esm.StateEnabled || aws.ToInt32(got.BatchSize) != 100 {
		t.Fatalf("get: %+v %v", got, err)
	}
	if mgr.Pollers(id) != 1 {
		t.Errorf("%d pollers for the enabled mapping, want 1", mgr.Pollers(id))
	}

	_, err = cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("worker"), EventSourceArn: aws.String(jobsARN)})
	if errorCode(err) != "ResourceConflictException" || !strings.Contains(err.Error(), id) {
		t.Errorf("a second mapping of worker to jobs: %v", err)
	}

	// Disable, change the batch size, remove the filter and the scaling
	// limit.
	upd, err := cl.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(id), Enabled: aws.Bool(false),
		BatchSize: aws.Int32(5), FilterCriteria: &types.FilterCriteria{}, ScalingConfig: &types.ScalingConfig{}})
	if err != nil || aws.ToString(upd.State) != esm.StateDisabling || aws.ToInt32(upd.BatchSize) != 5 || upd.FilterCriteria != nil || upd.ScalingConfig != nil {
		t.Fatalf("update: %+v %v", upd, err)
	}
	got, err = cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil || aws.ToString(got.State) != esm.StateDisabled || mgr.Pollers(id) != 0 {
		t.Fatalf("after disabling: %+v %v, %d pollers", got, err, mgr.Pollers(id))
	}
	upd, err = cl.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: aws.String(id), Enabled: aws.Bool(true), FunctionName: aws.String("other:$LATEST")})
	if err != nil || aws.ToString(upd.State) != esm.StateEnabling || aws.ToString(upd.FunctionArn) != "arn:aws:lambda:local:000000000000:function:other:$LATEST" {
		t.Fatalf("enable: %+v %v", upd, err)
	}

	// A second mapping, for listing.
	second, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("worker"),
		EventSourceArn: aws.String(otherARN), Enabled: aws.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: second.UUID}); aws.ToString(g.State) != esm.StateDisabled ||
		aws.ToInt32(g.BatchSize) != 10 || aws.ToInt32(g.MaximumBatchingWindowInSeconds) != 0 {
		t.Errorf("a mapping created disabled, with the defaults: %+v", g)
	}
	var all []string
	p := lambda.NewListEventSourceMappingsPaginator(cl, &lambda.ListEventSourceMappingsInput{MaxItems: aws.Int32(1)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.EventSourceMappings) > 1 {
			t.Fatalf("a page of %d with MaxItems 1", len(page.EventSourceMappings))
		}
		for _, m := range page.EventSourceMappings {
			all = append(all, aws.ToString(m.UUID))
		}
	}
	if len(all) != 2 {
		t.Errorf("listed %v, want both", all)
	}
	byFn, err := cl.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{FunctionName: aws.String("worker")})
	if err != nil || len(byFn.EventSourceMappings) != 1 || aws.ToString(byFn.EventSourceMappings[0].UUID) != aws.ToString(second.UUID) {
		t.Errorf("by function worker: %+v %v", byFn, err)
	}
	bySrc, err := cl.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{EventSourceArn: aws.String(jobsARN)})
	if err != nil || len(bySrc.EventSourceMappings) != 1 || aws.ToString(bySrc.EventSourceMappings[0].UUID) != id {
		t.Errorf("by source jobs: %+v %v", bySrc, err)
	}

	del, err := cl.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: aws.String(id)})
	if err != nil || aws.ToString(del.State) != esm.StateDeleting {
		t.Fatalf("delete: %+v %v", del, err)
	}
	_, err = cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String(id)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) || mgr.Pollers(id) != 0 {
		t.Errorf("get after delete: %v, %d pollers", err, mgr.Pollers(id))
	}
	if _, err := cl.DeleteEventSourceMapping(ctx, &lambda.DeleteEventSourceMappingInput{UUID: aws.String(id)}); !errors.As(err, &nf) {
		t.Errorf("second delete: %v", err)
	}
}

// Bad settings are refused as Lambda refuses them, each with a message
// that says what is wrong.
func TestEventSourceMappingRefused(t *testing.T) {
	cl, a, _ := newESMClient(t)
	ctx := context.Background()
	createFn(t, a, "worker", nil)
	in := func(f func(*lambda.CreateEventSourceMappingInput)) *lambda.CreateEventSourceMappingInput {
		i := &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("worker"), EventSourceArn: aws.String(jobsARN)}
		f(i)
		return i
	}
	tests := []struct {
		name     string
		in       *lambda.CreateEventSourceMappingInput
		wantCode string
		wantMsg  string
	}{
		{"an unknown queue", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.EventSourceArn = aws.String("arn:aws:sqs:local:000000000000:nope")
		}), "InvalidParameterValueException", "not one of Hearth's queues"},
		{"a Kinesis stream", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.EventSourceArn = aws.String("arn:aws:kinesis:local:000000000000:stream/s")
		}), "InvalidParameterValueException", "not one of Hearth's queues"},
		{"an unknown function", in(func(i *lambda.CreateEventSourceMappingInput) { i.FunctionName = aws.String("ghost") }),
			"ResourceNotFoundException", "function:ghost"},
		{"batch size 0", in(func(i *lambda.CreateEventSourceMappingInput) { i.BatchSize = aws.Int32(0) }), "InvalidParameterValueException", "batchSize"},
		{"batch size 10001", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.BatchSize, i.MaximumBatchingWindowInSeconds = aws.Int32(10001), aws.Int32(1)
		}), "InvalidParameterValueException", "batchSize"},
		{"batch size 11 without a window", in(func(i *lambda.CreateEventSourceMappingInput) { i.BatchSize = aws.Int32(11) }),
			"InvalidParameterValueException", "Maximum batch window in seconds must be greater than 0"},
		{"a window of 301 s", in(func(i *lambda.CreateEventSourceMappingInput) { i.MaximumBatchingWindowInSeconds = aws.Int32(301) }),
			"InvalidParameterValueException", "maximumBatchingWindowInSeconds"},
		{"MaximumConcurrency 1", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.ScalingConfig = &types.ScalingConfig{MaximumConcurrency: aws.Int32(1)}
		}), "InvalidParameterValueException", "maximumConcurrency"},
		{"MaximumConcurrency 1001", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.ScalingConfig = &types.ScalingConfig{MaximumConcurrency: aws.Int32(1001)}
		}), "InvalidParameterValueException", "maximumConcurrency"},
		{"an unknown response type", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.FunctionResponseTypes = []types.FunctionResponseType{"ReportEverything"}
		}), "InvalidParameterValueException", "functionResponseTypes"},
		{"a filter Hearth does not implement", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{"body":{"ip":[{"cidr":"10.0.0.0/24"}]}}`)}}}
		}), "InvalidParameterValueException", `"cidr" is not supported by Hearth`},
		{"a filter that is not JSON", in(func(i *lambda.CreateEventSourceMappingInput) {
			i.FilterCriteria = &types.FilterCriteria{Filters: []types.Filter{{Pattern: aws.String(`{body`)}}}
		}), "InvalidParameterValueException", "Invalid filter pattern definition"},
		{"a stream's StartingPosition", in(func(i *lambda.CreateEventSourceMappingInput) { i.StartingPosition = types.EventSourcePositionLatest }),
			"InvalidParameterValueException", "StartingPosition: not supported for an Amazon SQS event source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.CreateEventSourceMapping(ctx, tt.in)
			if errorCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %v, want a %s saying %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
	list, err := cl.ListEventSourceMappings(ctx, &lambda.ListEventSourceMappingsInput{})
	if err != nil || len(list.EventSourceMappings) != 0 {
		t.Errorf("refused mappings were stored: %+v %v", list, err)
	}
	// Refused on update too, leaving the mapping as it was.
	m, err := cl.CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("worker"), EventSourceArn: aws.String(jobsARN)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.UpdateEventSourceMapping(ctx, &lambda.UpdateEventSourceMappingInput{UUID: m.UUID, BatchSize: aws.Int32(50)})
	if errorCode(err) != "InvalidParameterValueException" {
		t.Errorf("update to 50 without a window: %v", err)
	}
	if got, _ := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: m.UUID}); aws.ToInt32(got.BatchSize) != 10 {
		t.Errorf("a refused update changed the batch size to %d", aws.ToInt32(got.BatchSize))
	}
	if _, err := cl.GetEventSourceMapping(ctx, &lambda.GetEventSourceMappingInput{UUID: aws.String("00000000-0000-0000-0000-000000000000")}); errorCode(err) != "ResourceNotFoundException" {
		t.Errorf("get of an unknown UUID: %v", err)
	}
}

// A daemon without queues answers that it takes no mappings.
func TestEventSourceMappingsWithoutQueues(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "worker", nil)
	code, h, b := call(t, a, "POST", "/2015-03-31/event-source-mappings/", map[string]any{"FunctionName": "worker", "EventSourceArn": jobsARN})
	if typ, _, msg := lambdaError(t, h, b); code != http.StatusBadRequest || typ != "InvalidParameterValueException" || !strings.Contains(msg, "runs no queues") {
		t.Errorf("create without queues: %d %s %s", code, typ, msg)
	}
	code, _, b = call(t, a, "GET", "/2015-03-31/event-source-mappings/", nil)
	if code != http.StatusOK || !strings.Contains(string(b), `"EventSourceMappings":[]`) {
		t.Errorf("list without queues: %d %s", code, b)
	}
}
