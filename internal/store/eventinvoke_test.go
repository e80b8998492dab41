package store

import (
	"context"
	"errors"
	"testing"
)

func TestEventInvokeConfigs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	two, sixty := 2, 60
	c := EventInvokeConfig{FunctionArn: "arn:f:$LATEST", LastModified: 1.5, MaximumRetryAttempts: &two,
		DestinationConfig: &DestinationConfig{OnFailure: &Destination{Destination: "arn:aws:sqs:local:000000000000:q"}}}
	if err := s.PutEventInvokeConfig(ctx, "f", "$LATEST", c); err != nil {
		t.Fatal(err)
	}
	c.MaximumEventAgeInSeconds = &sixty
	if err := s.PutEventInvokeConfig(ctx, "f", "$LATEST", c); err != nil {
		t.Fatalf("a second put replaces: %v", err)
	}
	if err := s.PutEventInvokeConfig(ctx, "f", "live", EventInvokeConfig{FunctionArn: "arn:f:live"}); err != nil {
		t.Fatal(err)
	}
	// Kept across a reopen.
	s.Close()
	if s, err = Open(ctx, dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.EventInvokeConfig(ctx, "f", "$LATEST")
	if err != nil || *got.MaximumEventAgeInSeconds != 60 || *got.MaximumRetryAttempts != 2 || got.DestinationConfig.OnFailure.Destination != "arn:aws:sqs:local:000000000000:q" {
		t.Fatalf("got %+v %v", got, err)
	}
	if all, err := s.EventInvokeConfigs(ctx, "f"); err != nil || len(all) != 2 || all[0].FunctionArn != "arn:f:$LATEST" {
		t.Fatalf("list %+v %v", all, err)
	}
	if err := s.DeleteEventInvokeConfig(ctx, "f", "live"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEventInvokeConfig(ctx, "f", "live"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing one: %v", err)
	}
	if _, err := s.EventInvokeConfig(ctx, "f", "live"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted one: %v", err)
	}
	if err := s.DeleteEventInvokeConfig(ctx, "f", "*"); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.EventInvokeConfigs(ctx, "f"); len(all) != 0 {
		t.Fatalf("left after deleting all: %+v", all)
	}
}
