package configlog

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/store"
)

// Compaction on a real cluster: three brokers in this process, on
// loopback, the log and zips kept by all three.

// startCluster starts n brokers of one cluster at once (each waits for a
// quorum).
func startCluster(t *testing.T, n int) []*broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
		l.Close()
	}
	brokers := make([]*broker.Broker, n)
	errs := make([]error, n)
	cfgs := make([]broker.Config, n)
	for i := range n {
		node := fmt.Sprintf("n%d", i)
		cfgs[i] = broker.Config{Dir: filepath.Join(t.TempDir(), "js"), Log: quiet,
			Cluster: &broker.Cluster{Name: "compact", Node: node, Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			brokers[i], errs[i] = broker.New(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, b := range brokers {
			if b != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				b.Shutdown(ctx)
				cancel()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("broker %d: %v", i, err)
		}
	}
	return brokers
}

// clusterHost opens a store in a new folder following the log on b,
// writing a checkpoint every `every` entries.
func clusterHost(t *testing.T, b *broker.Broker, name string, every int) (*store.Store, *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := Open(ctx, Config{JetStream: b.JetStream(), Replicas: b.Replicas()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Replicate(ctx, store.Replication{Log: l, Blobs: l, Host: name, Logger: quiet, CheckpointEvery: every}); err != nil {
		t.Fatal(err)
	}
	return s, l
}

// functionNames lists a host's functions.
func functionNames(t *testing.T, ctx context.Context, s *store.Store) []string {
	t.Helper()
	fns, _, err := s.ListFunctions(ctx, "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fns {
		names = append(names, fmt.Sprintf("%s/%d", f.FunctionName, f.MemorySize))
	}
	return names
}

// More than CheckpointEvery writes make a checkpoint, and the stream is
// purged below it; a host started afterwards with an empty folder starts
// from the checkpoint and ends with the configuration of those that applied
// every entry, and writes as they do.
func TestCheckpointPurgesTheStreamAndANewHostStartsFromIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const every = 20
	brokers := startCluster(t, 3)
	a, la := clusterHost(t, brokers[0], "a", every)
	b, _ := clusterHost(t, brokers[1], "b", every)

	// Both hosts follow the log (their consumers made) before they race.
	if err := a.CreateFunction(ctx, newFn("first")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first write on b", func() error { _, err := b.GetFunction(ctx, "first"); return err })

	// Writes on both hosts at once: 2*30 entries.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*store.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 15 {
				name := fmt.Sprintf("h%d-f%d", i, j)
				fn := newFn(name)
				if err := s.CreateFunction(ctx, fn); err != nil {
					errs <- err
					return
				}
				if _, err := s.UpdateFunction(ctx, name, func(f *store.Function) error { f.MemorySize = 128 + j; return nil }); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := a.DeleteFunction(ctx, "h1-f0"); err != nil {
		t.Fatal(err)
	}

	// The stream starts at a checkpoint, and holds nothing before it.
	var info *jetstream.StreamInfo
	eventually(t, "the stream purged below a checkpoint", func() error {
		var err error
		if info, err = la.stream.Info(ctx); err != nil {
			return err
		}
		// Once the writes stop, the last checkpoint is at most every
		// entries behind the last one.
		if info.State.FirstSeq <= 1 || info.State.LastSeq-info.State.FirstSeq > every {
			return fmt.Errorf("the stream is %d..%d", info.State.FirstSeq, info.State.LastSeq)
		}
		return nil
	})
	if info.State.LastSeq-info.State.FirstSeq+1 != info.State.Msgs {
		t.Errorf("stream %d..%d holds %d entries", info.State.FirstSeq, info.State.LastSeq, info.State.Msgs)
	}
	msg, err := la.stream.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	var first struct{ Op string }
	if err := json.Unmarshal(msg.Data, &first); err != nil || first.Op != "Checkpoint" {
		t.Errorf("the stream's first entry is %q (%v), want a checkpoint", first.Op, err)
	}

	// A new host starts at the checkpoint: it has the others' rows.
	c, _ := clusterHost(t, brokers[2], "c", every)
	if err := a.CreateFunction(ctx, newFn("after")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*store.Store{b, c} {
		eventually(t, "the last write everywhere", func() error { _, err := s.GetFunction(ctx, "after"); return err })
	}
	want := functionNames(t, ctx, a)
	if len(want) != 31 {
		t.Errorf("a has %d functions, want 31: %v", len(want), want)
	}
	for name, s := range map[string]*store.Store{"b": b, "c": c} {
		if got := functionNames(t, ctx, s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s has %v\na has %v", name, got, want)
		}
		if s.AppliedSequence() != a.AppliedSequence() {
			t.Errorf("%s at %d, a at %d", name, s.AppliedSequence(), a.AppliedSequence())
		}
	}
	// The new host writes as the others.
	if _, err := c.UpdateFunction(ctx, "h0-f1", func(f *store.Function) error { f.MemorySize = 1000; return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c's write on a", func() error {
		f, err := a.GetFunction(ctx, "h0-f1")
		if err == nil && f.MemorySize != 1000 {
			err = fmt.Errorf("memory %d", f.MemorySize)
		}
		return err
	})
}

var _ store.Purger = (*Log)(nil)

// A stream made before compaction denies purges, which an update cannot
// undo: it opens as it is, and keeps every entry (a purge says why).
func TestStreamMadeBeforeCompactionOpensAndKeepsItsEntries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := newJetStream(t)
	old := streamConfig(Config{Stream: DefaultStream, Subject: DefaultSubject, Replicas: 1})
	old.DenyPurge = true
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	l, err := Open(ctx, Config{JetStream: js})
	if err != nil {
		t.Fatalf("opening a stream that denies purges: %v", err)
	}
	if _, err := l.Append(ctx, 0, "x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := l.Purge(ctx, 2); err == nil {
		t.Error("a purge of a stream that denies them succeeded")
	}
	if last, err := l.Last(ctx); err != nil || last != 1 {
		t.Errorf("last %d %v, want 1", last, err)
	}
	// A stream made now allows the purge.
	js2 := newJetStream(t)
	l2, err := Open(ctx, Config{JetStream: js2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l2.Append(ctx, uint64(i), fmt.Sprint(i), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l2.Purge(ctx, 3); err != nil {
		t.Fatal(err)
	}
	info, err := l2.stream.Info(ctx)
	if err != nil || info.State.FirstSeq != 3 || info.State.Msgs != 1 {
		t.Errorf("after a purge below 3: %+v %v", info.State, err)
	}
	// A follower whose next entry was purged gets the first one kept.
	for _, after := range []uint64{0, 1} {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var got uint64
		err := l2.Follow(fctx, after, func(seq uint64, _ []byte) error { got = seq; cancel(); return nil })
		cancel()
		if got != 3 {
			t.Errorf("following after %d: first entry %d (%v), want 3", after, got, err)
		}
	}
}
