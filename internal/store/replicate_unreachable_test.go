package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// cutLog is a memLog that can be cut off, as a host is from the
// cluster's quorum: its requests then hang until their context ends, fail
// at once (no responders), as nats.go's do, or (appends) say the log moved
// on, as a cut-off leader does.
type cutLog struct {
	*memLog
	mu sync.Mutex
	// appendCut and lastCut: "" works, "hang", "fail" or "moved".
	appendCut, lastCut string
	// blobsHang makes PutBlob hang.
	blobsHang bool
}

func (l *cutLog) cut(how string, ctx context.Context) error {
	switch how {
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	case "fail":
		return errors.New("nats: no responders available for request")
	case "moved":
		return ErrLogMoved
	}
	return nil
}

func (l *cutLog) set(appendCut, lastCut string, blobsHang bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appendCut, l.lastCut, l.blobsHang = appendCut, lastCut, blobsHang
}

func (l *cutLog) Append(ctx context.Context, after uint64, id string, entry []byte) (uint64, error) {
	l.mu.Lock()
	how := l.appendCut
	l.mu.Unlock()
	if err := l.cut(how, ctx); err != nil {
		return 0, err
	}
	return l.memLog.Append(ctx, after, id, entry)
}

func (l *cutLog) Last(ctx context.Context) (uint64, error) {
	l.mu.Lock()
	how := l.lastCut
	l.mu.Unlock()
	if err := l.cut(how, ctx); err != nil {
		return 0, err
	}
	return l.memLog.Last(ctx)
}

func (l *cutLog) PutBlob(ctx context.Context, name string, data []byte) error {
	l.mu.Lock()
	hang := l.blobsHang
	l.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (l *cutLog) GetBlob(ctx context.Context, name string) ([]byte, error) {
	return nil, ErrNotFound
}

// A host cut off from the log answers its writes within a few seconds
// with ErrUnreachable (which the API turns into a retryable 503), and
// writes nothing; the log's requests hanging (the usual case) or failing
// at once alike. Without the bound, a hanging append (and the zips'
// upload) waited on nats.go's timeouts or its two minutes.
func TestWriteCutOffFromTheLogFailsFastAndClearly(t *testing.T) {
	bound := appendWait + confirmWait + time.Second
	tests := []struct {
		name              string
		appendCut, lastCt string
		blobsHang         bool
		write             func(ctx context.Context, s *Store) error
	}{
		{"append and reads hang", "hang", "hang", false, updateDescription},
		{"append and reads fail at once", "fail", "fail", false, updateDescription},
		{"append hangs, the log answers reads (no leader for the entry)", "hang", "", false, updateDescription},
		{"create: the log unreadable, the zip upload would hang", "hang", "hang", true, func(ctx context.Context, s *Store) error {
			_, _, err := s.PutCode([]byte("zip of another function"))
			return err
		}},
		{"create: the log answers (a cut-off leader, for a while), the zip upload hangs", "hang", "", true, func(ctx context.Context, s *Store) error {
			_, _, err := s.PutCode([]byte("zip of another function"))
			return err
		}},
		// A leader cut off counts its own proposals that never commit:
		// every append "lost" to an entry no one can read.
		{"the cut-off leader: every append lost to an entry never seen", "moved", "", false, updateDescription},
		{"delete", "hang", "hang", false, func(ctx context.Context, s *Store) error { return s.DeleteFunction(ctx, "f") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The caller's own context has no deadline, as an API
			// request's has none.
			ctx := context.Background()
			l := &cutLog{memLog: newMemLog()}
			s, err := Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Replicate(ctx, Replication{Log: l, Blobs: l, Host: "b", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateFunction(ctx, newFn("f")); err != nil {
				t.Fatal(err)
			}
			before, _ := l.memLog.Last(ctx)
			l.set(tt.appendCut, tt.lastCt, tt.blobsHang)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- tt.write(ctx, s) }()
			select {
			case err = <-done:
			case <-time.After(2 * bound):
				t.Fatalf("the write still waits after %s", 2*bound)
			}
			took := time.Since(start)
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("write while cut off: %v, want ErrUnreachable", err)
			}
			if took > bound {
				t.Errorf("answered after %s, want within %s", took, bound)
			}
			if after, _ := l.memLog.Last(ctx); after != before {
				t.Errorf("the log went from %d to %d entries: a refused write landed", before, after)
			}
			// Healed, the same store writes again.
			l.set("", "", false)
			if err := updateDescription(ctx, s); err != nil {
				t.Errorf("after the heal: %v", err)
			}
		})
	}
}

func updateDescription(ctx context.Context, s *Store) error {
	_, err := s.UpdateFunction(ctx, "f", func(f *Function) error { f.Description = "changed"; return nil })
	return err
}
