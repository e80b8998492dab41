package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/hearthdev/hearth/internal/store"
)

// lateStore is a host's store that has not applied a queue's creation
// yet: the queue shows once the host catches up.
type lateStore struct {
	Store
	late    string
	applied atomic.Bool
}

func (s *lateStore) Queue(ctx context.Context, name string) (store.Queue, error) {
	if name == s.late && !s.applied.Load() {
		return store.Queue{}, store.ErrNotFound
	}
	return s.Store.Queue(ctx, name)
}

// catchUp applies what the log holds when called.
type catchUp struct {
	st    *lateStore
	calls atomic.Int32
}

func (c *catchUp) CatchUp(context.Context) error {
	c.calls.Add(1)
	c.st.applied.Store(true)
	return nil
}

// A queue made through another host a moment ago is found once this host
// catches up with the shared configuration; one that exists nowhere is
// still not found after it.
func TestQueueMadeElsewhereIsFoundAfterCatchingUp(t *testing.T) {
	e := newEnv(t)
	e.create("late", nil)
	tests := []struct {
		name      string
		queue     string
		wantFound bool
	}{
		{"made through another host", "late", true},
		{"made nowhere", "nowhere", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &lateStore{Store: e.st, late: "late"}
			sync := &catchUp{st: st}
			other, err := New(context.Background(), Config{Store: st, JetStream: e.b.JetStream(), Conn: e.b.Conn(), Region: "us-east-1",
				Key: testKey, Sync: sync, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			q, err := other.Get(context.Background(), tc.queue)
			if tc.wantFound && (err != nil || q.Name != tc.queue) {
				t.Fatalf("get %s: %+v %v", tc.queue, q, err)
			}
			if !tc.wantFound && !errors.Is(err, ErrNotFound) {
				t.Fatalf("get %s: %v, want ErrNotFound", tc.queue, err)
			}
			if n := sync.calls.Load(); n != 1 {
				t.Errorf("caught up %d times, want once", n)
			}
		})
	}
}
