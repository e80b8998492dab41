package invoke

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// countingStore counts the store reads behind a resolution.
type countingStore struct {
	*store.Store
	reads atomic.Int64
}

func (c *countingStore) Resolve(ctx context.Context, function, qualifier string) (store.Function, error) {
	c.reads.Add(1)
	return c.Store.Resolve(ctx, function, qualifier)
}

// TestResolvedFollowsWrites: a second resolution of an unchanged function
// reads nothing, and every write the invocation depends on is seen by the
// very next resolution.
func TestResolvedFollowsWrites(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	cs := &countingStore{Store: fx.store}
	svc := New(Config{Functions: cs, Scheduler: nil})
	fx.create(t, "f")
	if _, err := fx.store.PublishVersion(ctx, "f", ""); err != nil {
		t.Fatal(err)
	}
	if err := fx.store.PutAlias(ctx, "f", store.Alias{Name: "live", FunctionVersion: "1"}, false); err != nil {
		t.Fatal(err)
	}

	first, err := svc.function(ctx, "f", "")
	if err != nil {
		t.Fatal(err)
	}
	before := cs.reads.Load()
	again, err := svc.function(ctx, "f", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := cs.reads.Load() - before; n != 0 || again.MemoryMB != first.MemoryMB {
		t.Fatalf("second resolution of an unchanged function read the store %d times", n)
	}

	two := 2
	tests := []struct {
		name      string
		write     func() error
		qualifier string
		check     func(t *testing.T, fnMemory int, version string, reserved *int, err error)
	}{
		{"memory updated", func() error {
			_, err := fx.store.UpdateFunction(ctx, "f", func(f *store.Function) error { f.MemorySize, f.RevisionID = 1024, "rev-2"; return nil })
			return err
		}, "", func(t *testing.T, mem int, _ string, _ *int, err error) {
			if err != nil || mem != 1024 {
				t.Errorf("after the update: memory %d, %v; want 1024", mem, err)
			}
		}},
		{"reserved concurrency set", func() error { return fx.store.SetConcurrency(ctx, "f", &two) }, "",
			func(t *testing.T, _ int, _ string, reserved *int, err error) {
				if err != nil || reserved == nil || *reserved != 2 {
					t.Errorf("after SetConcurrency: %v, %v; want 2", reserved, err)
				}
			}},
		{"alias moved", func() error {
			if _, err := fx.store.PublishVersion(ctx, "f", ""); err != nil {
				return err
			}
			return fx.store.PutAlias(ctx, "f", store.Alias{Name: "live", FunctionVersion: "2"}, true)
		}, "live", func(t *testing.T, _ int, version string, _ *int, err error) {
			if err != nil || version != "2" {
				t.Errorf("after moving the alias: version %q, %v; want 2", version, err)
			}
		}},
		{"function deleted", func() error { return fx.store.DeleteFunction(ctx, "f") }, "",
			func(t *testing.T, _ int, _ string, _ *int, err error) {
				if e, ok := lambdaerr.As(err); !ok || e.Type != "ResourceNotFoundException" {
					t.Errorf("after the delete: %v; want ResourceNotFound", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Resolved once before the write, so a stale entry exists.
			_, _ = svc.function(ctx, "f", tt.qualifier)
			if err := tt.write(); err != nil {
				t.Fatal(err)
			}
			fn, err := svc.function(ctx, "f", tt.qualifier)
			tt.check(t, fn.MemoryMB, fn.Version, fn.Reserved, err)
		})
	}
}
