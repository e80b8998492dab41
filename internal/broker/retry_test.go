package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A publish to a stream that does not answer yet (as one whose leader
// died, until another is elected) waits for it and is stored once; a
// plain publish would have failed at once with "no response from stream".
func TestPublishWaitsForTheStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := New(ctx, Config{Dir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	js := b.JetStream()
	if _, err := js.Publish(ctx, "late.x", []byte("plain")); err == nil {
		t.Fatal("a plain publish with no stream succeeded")
	}
	go func() {
		time.Sleep(time.Second)
		_, _ = js.CreateStream(ctx, jetstream.StreamConfig{Name: "LATE", Subjects: []string{"late.>"}})
	}()
	start := time.Now()
	if _, err := Publish(ctx, js, &nats.Msg{Subject: "late.x", Data: []byte("waited")}); err != nil {
		t.Fatalf("publish after %s: %v", time.Since(start), err)
	}
	s, err := js.Stream(ctx, "LATE")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d messages stored, want 1", info.State.Msgs)
	}
	// Bounded by its context.
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	start = time.Now()
	if _, err := Publish(short, js, &nats.Msg{Subject: "nowhere.x", Data: []byte("x")}); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("a publish to no stream: %v after %s, want an error within its context", err, time.Since(start))
	}
}
