package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A message stored before a stop is there after a restart on the same
// folder, and the broker listens on no port.
func TestStreamsOutliveARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := New(ctx, Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if addr := b.ns.Addr(); addr != nil {
		t.Errorf("the broker listens on %v", addr)
	}
	js := b.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("kept"))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("publish: %+v %v", ack, err)
	}
	b.Shutdown(ctx)

	b, err = New(ctx, Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	s, err := b.JetStream().Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "kept" || m.Subject != "t.one" {
		t.Fatalf("after a restart: %+v %v", m, err)
	}
}

func TestNeedsAFolder(t *testing.T) {
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatal("a broker without a store folder started")
	}
}
