package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/cluster"
)

// statusHost serves GET /hearth/v1/cluster with host v up until down
// is set, down after.
func statusHost(t *testing.T, down *atomic.Bool) clusterHost {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hearth/v1/cluster" || r.Header.Get("Authorization") == "" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		state := cluster.StateUp
		if down.Load() {
			state = cluster.StateDown
		}
		st := api.ClusterStatus{Status: cluster.Status{Hosts: []cluster.HostStatus{{Host: cluster.Host{Node: "v"}, State: state}}}}
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return clusterHost{endpoint: srv.URL, id: "AKID", secret: "s"}
}

// The dead-host timing takes, for each observer, the first poll that
// shows the host down, and fails when one never does.
func TestWaitStatusTimesEachObserver(t *testing.T) {
	ctx := context.Background()
	var aDown, bDown atomic.Bool
	obs := []clusterHost{statusHost(t, &aDown), statusHost(t, &bDown)}
	isDown := func(h cluster.HostStatus) bool { return h.State == cluster.StateDown }
	start := time.Now()
	aDown.Store(true)
	time.AfterFunc(300*time.Millisecond, func() { bDown.Store(true) })
	at, err := waitStatus(ctx, obs, "v", 5*time.Second, isDown)
	if err != nil {
		t.Fatal(err)
	}
	if d := at[0].Sub(start); d > 200*time.Millisecond {
		t.Errorf("a saw it down after %s, want at the first poll", d)
	}
	if d := at[1].Sub(start); d < 300*time.Millisecond || d > time.Second {
		t.Errorf("b saw it down after %s, want just after 300ms", d)
	}
	// One never sees it: an error naming how many.
	bDown.Store(false)
	if _, err := waitStatus(ctx, obs, "v", 300*time.Millisecond, isDown); err == nil || !strings.Contains(err.Error(), "1 of 2 hosts") {
		t.Errorf("with b never seeing it: %v", err)
	}
	// A host it does not know is not seen so.
	if _, err := waitStatus(ctx, obs[:1], "w", 200*time.Millisecond, isDown); err == nil {
		t.Error("an unknown host was seen down")
	}
}
