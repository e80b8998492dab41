package broker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A standalone host's streams come with it into a cluster: the work it
// had not done (messages not acknowledged) is in the cluster's stream,
// replicated, with its headers; what was acknowledged is not; a restart
// does not copy it twice.
func TestStandaloneJoinsACluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfgs := clusterConfigs(t, 3, "")
	dir := cfgs[0].Dir
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The host as it ran alone: a work queue, three messages, one done.
	b, err := New(ctx, Config{Dir: dir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	js := b.JetStream()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two", "three"} {
		m := nats.NewMsg("work." + body)
		m.Data = []byte(body)
		m.Header.Set("Hearth-Kind", "test")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b.Shutdown(ctx)
	if !isStandaloneStore(dir) {
		t.Fatal("a standalone store is not recognised")
	}

	bs := startAll(t, ctx, cfgs)
	check := func(when string) {
		t.Helper()
		s, err := bs[1].JetStream().Stream(ctx, "WORK")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 || info.State.Msgs != 2 || info.Config.Retention != jetstream.WorkQueuePolicy {
			t.Fatalf("%s: replicas %d, %d messages, retention %v; want 3, 2, work queue", when, info.Config.Replicas, info.State.Msgs, info.Config.Retention)
		}
		var got []string
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if m.Header.Get("Hearth-Kind") != "test" {
				t.Errorf("%s: message %d lost its header: %v", when, seq, m.Header)
			}
			got = append(got, string(m.Data))
		}
		if len(got) != 2 || got[0] != "two" || got[1] != "three" {
			t.Fatalf("%s: messages %q, want [two three]", when, got)
		}
	}
	check("after joining")
	moved, _ := filepath.Glob(dir + standaloneSuffix + "*")
	if len(moved) != 1 {
		t.Fatalf("set-aside stores: %v", moved)
	}
	if _, err := os.Stat(filepath.Join(moved[0], importedMark)); err != nil {
		t.Fatalf("the set-aside store is not marked imported: %v", err)
	}
	if isStandaloneStore(dir) {
		t.Fatal("the clustered store is taken for a standalone one")
	}
	// The host restarts: nothing is copied again.
	bs[0].Shutdown(ctx)
	b0, err := New(ctx, cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer b0.Shutdown(ctx)
	check("after a restart")
}
