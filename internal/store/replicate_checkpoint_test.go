package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memBlobs is Blobs in memory.
type memBlobs struct {
	mu   sync.Mutex
	data map[string][]byte
	gets int
}

func newMemBlobs() *memBlobs { return &memBlobs{data: map[string][]byte{}} }

func (b *memBlobs) PutBlob(_ context.Context, name string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.data[name] = bytes.Clone(data)
	return nil
}

func (b *memBlobs) GetBlob(_ context.Context, name string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets++
	d, ok := b.data[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return bytes.Clone(d), nil
}

// replicatedIn opens a store in dir following l, writing a checkpoint
// every `every` entries (negative: never).
func replicatedIn(t *testing.T, dir string, l Log, blobs Blobs, host string, every int) *Store {
	t.Helper()
	return replicatedWith(t, dir, Replication{Log: l, Blobs: blobs, Host: host, CheckpointEvery: every})
}

// replicatedWith opens a store in dir following r.Log.
func replicatedWith(t *testing.T, dir string, r Replication) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := s.Replicate(ctx, r); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

// someWrites makes n entries of various tables' writes on s.
func someWrites(t *testing.T, ctx context.Context, s *Store, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("f%d", i/4)
		var err error
		switch i % 4 {
		case 0:
			err = s.CreateFunction(ctx, newFn(name))
		case 1:
			_, err = s.PublishVersion(ctx, name, "v")
		case 2:
			err = s.PutAlias(ctx, name, Alias{Name: "live", FunctionVersion: "1", RevisionID: "x"}, false)
		case 3:
			err = s.CreateQueue(ctx, Queue{Name: "q" + name, ID: "id" + name, Attributes: "{}", Created: time.UnixMilli(1), Modified: time.UnixMilli(2)})
		}
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := s.DeleteFunction(ctx, "f0"); err != nil {
		t.Fatal(err)
	}
}

// sameConfiguration fails unless a and b are at the same sequence with
// the same rows.
func sameConfiguration(t *testing.T, ctx context.Context, a, b *Store) {
	t.Helper()
	atA, dumpA, err := a.dumpConfiguration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	atB, dumpB, err := b.dumpConfiguration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if atA != atB || !bytes.Equal(dumpA, dumpB) {
		t.Errorf("hosts differ: at %d %s\nat %d %s", atA, dumpA, atB, dumpB)
	}
	if !strings.Contains(string(dumpA), `"f1"`) {
		t.Errorf("the configuration lacks f1: %s", dumpA)
	}
}

// checkpoints counts the checkpoint entries the log keeps.
func (l *memLog) checkpoints() (n int, first uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e != nil && bytes.Contains(e, []byte(`"op":"Checkpoint"`)) {
			n++
		}
	}
	return n, l.first
}

// waitPurged waits until the log was purged up to a checkpoint.
func waitPurged(t *testing.T, l *memLog) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, first := l.checkpoints(); first > 1 {
			return first
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint purged the log")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A host whose next entry was purged catches up from the checkpoint and
// ends with the rows of a host that applied every entry, whether it never
// applied one (a new host) or stopped before the purge (a restarted one).
func TestCheckpointCatchesUpAHostBehindThePurge(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before: writes the host behind applies before it stops.
		before int
	}{
		{name: "new host", before: -1},
		{name: "restarted host", before: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, blobs := newMemLog(), newMemBlobs()
			writer := replicatedIn(t, t.TempDir(), l, blobs, "writer", 5)
			defer writer.Close()
			// all applies every entry and writes no checkpoint.
			all := replicatedIn(t, t.TempDir(), l, blobs, "all", -1)
			defer all.Close()
			dir := t.TempDir()
			if tc.before >= 0 {
				behind := replicatedIn(t, dir, l, blobs, "behind", -1)
				someWrites(t, ctx, writer, tc.before)
				if err := behind.catchUp(ctx); err != nil {
					t.Fatal(err)
				}
				behind.Close()
			}
			someWrites(t, ctx, writer, 12)
			first := waitPurged(t, l)
			if n, _ := l.checkpoints(); n != 1 {
				t.Errorf("%d checkpoints kept, want 1", n)
			}
			if err := all.catchUp(ctx); err != nil {
				t.Fatal(err)
			}
			behind := replicatedIn(t, dir, l, blobs, "behind", -1)
			defer behind.Close()
			if got := behind.AppliedSequence(); got < first {
				t.Fatalf("the host behind is at %d, before the checkpoint %d", got, first)
			}
			sameConfiguration(t, ctx, all, behind)
			sameConfiguration(t, ctx, writer, behind)
			if _, err := behind.GetFunction(ctx, "f0"); err == nil {
				t.Error("f0, deleted before the checkpoint, is on the host behind")
			}
			// It writes as any host, after the checkpoint.
			if err := behind.CreateFunction(ctx, newFn("late")); err != nil {
				t.Fatal(err)
			}
			if err := all.catchUp(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := all.GetFunction(ctx, "late"); err != nil {
				t.Error(err)
			}
		})
	}
}

// appendRaw appends an entry made by hand after the log's last.
func appendRaw(t *testing.T, l *memLog, e entry) uint64 {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := l.Last(context.Background())
	seq, err := l.Append(context.Background(), last, e.ID, b)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// A checkpoint on a host that applied the entry before it changes
// nothing but the sequence: the host reads no dump, and keeps its rows
// even when the dump named says otherwise (or is not there).
func TestCheckpointOnAnUpToDateHostChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		dump []byte // nil: no blob by that name
	}{
		{name: "dump of other rows", dump: []byte(`{"v":1,"tables":{"functions":[["other","{}",0,null]]}}`)},
		{name: "no dump", dump: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, blobs := newMemLog(), newMemBlobs()
			s := replicatedIn(t, t.TempDir(), l, blobs, "a", -1)
			defer s.Close()
			someWrites(t, ctx, s, 6)
			_, before, err := s.dumpConfiguration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			data := tc.dump
			if data == nil {
				data = []byte("absent")
			}
			sum := sha256.Sum256(data)
			ref := checkpointRef{Blob: checkpointBlob(hex.EncodeToString(sum[:])), Digest: hex.EncodeToString(sum[:])}
			if tc.dump != nil {
				if err := blobs.PutBlob(ctx, ref.Blob, tc.dump); err != nil {
					t.Fatal(err)
				}
			}
			seq := appendRaw(t, l, entry{V: entryVersion, ID: "cp", Host: "x", Op: "Checkpoint", Checkpoint: &ref})
			if err := s.waitApplied(ctx, seq); err != nil {
				t.Fatal(err)
			}
			at, after, err := s.dumpConfiguration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if at != seq || !bytes.Equal(before, after) {
				t.Errorf("at %d (want %d), rows before %s\nafter %s", at, seq, before, after)
			}
			if blobs.gets != 0 {
				t.Errorf("%d dumps read by a host up to date", blobs.gets)
			}
		})
	}
}

// racingLog holds each checkpoint's append until both hosts' are there,
// so that both append after the same entry.
type racingLog struct {
	*memLog
	arrived sync.WaitGroup
}

func (l *racingLog) Append(ctx context.Context, after uint64, id string, e []byte) (uint64, error) {
	if bytes.Contains(e, []byte(`"op":"Checkpoint"`)) {
		l.arrived.Done()
		done := make(chan struct{})
		go func() { l.arrived.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			return 0, fmt.Errorf("the other host's checkpoint did not come")
		}
	}
	return l.memLog.Append(ctx, after, id, e)
}

// Two hosts due to checkpoint at once both append after the same entry:
// one checkpoint is in the log, and both hosts end at it with the same
// rows.
func TestTwoHostsRacingToCheckpointOneWins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := &racingLog{memLog: newMemLog()}
	l.arrived.Add(2)
	blobs := newMemBlobs()
	a := replicatedIn(t, t.TempDir(), l, blobs, "a", 8)
	defer a.Close()
	b := replicatedIn(t, t.TempDir(), l, blobs, "b", 8)
	defer b.Close()
	someWrites(t, ctx, a, 8) // 9 entries with the delete: both are due
	first := waitPurged(t, l.memLog)
	if n, _ := l.checkpoints(); n != 1 {
		t.Errorf("%d checkpoints in the log, want 1", n)
	}
	if first != 10 {
		t.Errorf("the log starts at %d, want the checkpoint after entry 9", first)
	}
	if last, _ := l.Last(ctx); last != 10 {
		t.Errorf("the log ends at %d, want 10 (one checkpoint, the loser's not appended)", last)
	}
	for _, s := range []*Store{a, b} {
		if err := s.waitApplied(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	sameConfiguration(t, ctx, a, b)
	// Both know the checkpoint: no other until 8 more entries.
	for _, s := range []*Store{a, b} {
		s.rep.mu.Lock()
		cp := s.rep.checkpointSeq
		s.rep.mu.Unlock()
		if cp != 10 {
			t.Errorf("%s's last checkpoint %d, want 10", s.rep.host, cp)
		}
	}
}

// An entry that is no checkpoint after a gap (entries missing) is not
// applied: the host would differ from the others.
func TestEntryAfterAGapIsNotApplied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newMemLog()
	a := replicatedIn(t, t.TempDir(), l, nil, "a", -1)
	defer a.Close()
	if err := a.CreateFunction(ctx, newFn("f")); err != nil {
		t.Fatal(err)
	}
	data := l.entries[0]
	err := a.applyEntry(ctx, 3, data)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("an entry after a gap: %v", err)
	}
	if got := a.AppliedSequence(); got != 1 {
		t.Errorf("applied %d, want 1", got)
	}
}

// No checkpoint while MayCheckpoint says a host of an older release may
// follow the log (it would skip the purged gap); one once it allows.
func TestNoCheckpointUntilEveryHostKnowsThem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, blobs := newMemLog(), newMemBlobs()
	var may atomic.Bool
	s := replicatedWith(t, t.TempDir(), Replication{Log: l, Blobs: blobs, Host: "a", CheckpointEvery: 4, MayCheckpoint: may.Load})
	defer s.Close()
	someWrites(t, ctx, s, 12)
	time.Sleep(200 * time.Millisecond)
	if n, first := l.checkpoints(); n != 0 || first > 1 {
		t.Fatalf("%d checkpoints, log from %d, while an old host may follow: want none", n, first)
	}
	may.Store(true)
	someWrites(t, ctx, s, 1)
	waitPurged(t, l)
}
