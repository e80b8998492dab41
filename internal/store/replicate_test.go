package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// memLog is a Log in memory, for the store's replication logic; the
// JetStream one is tested in internal/configlog.
type memLog struct {
	mu      sync.Mutex
	entries [][]byte
	ids     map[string]uint64
	changed chan struct{}
	// beforeAppend runs once, at the next Append, before it.
	beforeAppend func()
	// loseAck makes the next Append store its entry and fail.
	loseAck bool
	// first is the sequence of the first entry kept (after a Purge; 0
	// or 1: all).
	first uint64
}

func newMemLog() *memLog { return &memLog{ids: map[string]uint64{}, changed: make(chan struct{})} }

func (l *memLog) Append(ctx context.Context, after uint64, id string, entry []byte) (uint64, error) {
	l.mu.Lock()
	hook := l.beforeAppend
	l.beforeAppend = nil
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq, ok := l.ids[id]; ok {
		return seq, nil
	}
	if uint64(len(l.entries)) != after {
		return 0, ErrLogMoved
	}
	l.entries = append(l.entries, entry)
	seq := uint64(len(l.entries))
	l.ids[id] = seq
	close(l.changed)
	l.changed = make(chan struct{})
	if l.loseAck {
		l.loseAck = false
		return 0, errors.New("no acknowledgement")
	}
	return seq, nil
}

func (l *memLog) Last(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.entries)), nil
}

// Purge drops the entries before seq, as JetStream's purge with a
// sequence does.
func (l *memLog) Purge(_ context.Context, seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := uint64(0); i+1 < seq && i < uint64(len(l.entries)); i++ {
		l.entries[i] = nil
	}
	l.first = max(l.first, seq)
	return nil
}

// Follow delivers the entries after sequence after; those purged are
// skipped, as a JetStream consumer starts at the first message kept.
func (l *memLog) Follow(ctx context.Context, after uint64, apply func(uint64, []byte) error) error {
	for {
		l.mu.Lock()
		if after+1 < l.first {
			after = l.first - 1
		}
		if after < uint64(len(l.entries)) {
			e := l.entries[after]
			l.mu.Unlock()
			after++
			if err := apply(after, e); err != nil {
				return err
			}
			continue
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func replicated(t *testing.T, l Log, host string) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Replicate(ctx, Replication{Log: l, Host: host, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	return s
}

// A write that another host's beat to the log runs again on the state
// with that write, and both are kept.
func TestWriteLosingTheRaceRunsAgainOnTheNewState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newMemLog()
	a, b := replicated(t, l, "a"), replicated(t, l, "b")
	if err := a.CreateFunction(ctx, newFn("f")); err != nil {
		t.Fatal(err)
	}
	if err := b.waitApplied(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// b's update goes into the log between a's read and a's append.
	l.beforeAppend = func() {
		if _, err := b.UpdateFunction(ctx, "f", func(f *Function) error { f.Description = "from b"; return nil }); err != nil {
			t.Error(err)
		}
	}
	var runs int
	f, err := a.UpdateFunction(ctx, "f", func(f *Function) error { runs++; f.MemorySize = 1024; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("a's update ran %d times, want 2 (lost once, then on b's state)", runs)
	}
	if f.Description != "from b" || f.MemorySize != 1024 {
		t.Errorf("a's update returned %q/%d: a write was lost", f.Description, f.MemorySize)
	}
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if err := s.waitApplied(ctx, 3); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetFunction(ctx, "f")
		if err != nil || got.Description != "from b" || got.MemorySize != 1024 {
			t.Errorf("%s has %q/%d %v", name, got.Description, got.MemorySize, err)
		}
	}
}

// An append whose acknowledgement is lost but whose entry is in the log
// is this host's write all the same: the create succeeds, once.
func TestWriteWhoseAcknowledgementIsLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newMemLog()
	a := replicated(t, l, "a")
	l.loseAck = true
	if err := a.CreateFunction(ctx, newFn("f")); err != nil {
		t.Fatalf("create with a lost acknowledgement: %v", err)
	}
	if n, _ := l.Last(ctx); n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
	if _, err := a.GetFunction(ctx, "f"); err != nil {
		t.Error(err)
	}
}

// A write fn may decide to write nothing: no entry.
func TestWriteWithNothingToWriteAppendsNothing(t *testing.T) {
	ctx := context.Background()
	l := newMemLog()
	a := replicated(t, l, "a")
	if err := a.PruneLayers(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateTags(ctx, "none", func(map[string]string) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("tags of no function: %v", err)
	}
	if n, _ := l.Last(ctx); n != 0 {
		t.Errorf("%d entries for no write", n)
	}
}

// Only the replicated writes go through the write helper, standalone or
// not: one that is not (a local table, anything else) is refused before
// it runs, so a host never proposes what the others would refuse.
func TestWriteHelperTakesOnlyReplicatedStatements(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.write(ctx, "x", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, `DELETE FROM envs`)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "replicatedSQL") {
		t.Errorf("a write to envs through the helper: %v", err)
	}
	err = s.write(ctx, "x", func(w *writeTx) error {
		_, err := w.ExecContext(ctx, sqlDeleteFunction, 1.5)
		return err
	})
	if err == nil {
		t.Error("a float argument was taken (an entry carries strings, integers and nulls)")
	}
}
