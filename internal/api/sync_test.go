package api

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/hearthdev/hearth/internal/store"
)

// applyOnCatchUp is a host that applies another host's create of a
// function when it catches up.
type applyOnCatchUp struct {
	st    *store.Store
	apply string // the function to create then; "" for none
	calls atomic.Int32
}

func (c *applyOnCatchUp) CatchUp(ctx context.Context) error {
	c.calls.Add(1)
	if c.apply == "" {
		return nil
	}
	return c.st.CreateFunction(ctx, store.Function{FunctionName: c.apply, Runtime: "provided.al2023", Handler: "bootstrap",
		MemorySize: 128, Timeout: 3, Version: "$LATEST", RevisionID: "r1", State: "Active", PackageType: store.PackageZip})
}

// A function made through another host a moment ago is found through
// this one once it caught up; one made nowhere is still not found.
func TestReadAfterAWriteElsewhere(t *testing.T) {
	tests := []struct {
		name, apply string
		want        int
	}{
		{"made through another host", "elsewhere", http.StatusOK},
		{"made nowhere", "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t)
			sync := &applyOnCatchUp{st: a.cfg.Store, apply: tc.apply}
			a.cfg.Sync = sync
			code, _, body := call(t, a, http.MethodGet, "/2015-03-31/functions/elsewhere", nil)
			if code != tc.want {
				t.Fatalf("GetFunction: %d %s, want %d", code, body, tc.want)
			}
			if n := sync.calls.Load(); n != 1 {
				t.Errorf("caught up %d times, want once", n)
			}
		})
	}
}
