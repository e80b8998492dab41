package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/microvm"
)

type microVMPools struct{ fixedPools }

func (microVMPools) StatsByImage() map[string]microvm.Stats {
	return map[string]microvm.Stats{"agent": {Running: 3, Active: 1, Suspended: 4}}
}

// Status shows each image's MicroVMs beside the functions.
func TestStatusMicroVMs(t *testing.T) {
	a := newTestAPI(t)
	a.cfg.Pools = microVMPools{fixedPools{"f": {Warm: 1}}}
	status, _, body := call(t, a, "GET", "/hearth/v1/status", nil)
	var out struct {
		Functions []struct {
			Name                  string
			Busy, Warm, Suspended int
		}
	}
	if err := json.Unmarshal(body, &out); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if len(out.Functions) != 2 || out.Functions[1].Name != "microvm:agent" || out.Functions[1].Busy != 1 ||
		out.Functions[1].Warm != 2 || out.Functions[1].Suspended != 4 {
		t.Errorf("rows %+v, want f and microvm:agent (1 busy, 2 warm, 4 suspended)", out.Functions)
	}
}

// The cost report bills a MicroVM's running time in GB-s and its
// suspension as snapshot storage, on its image's row.
func TestCostMicroVMs(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	st := a.cfg.Store
	now := time.Now().UTC()
	t0 := now.Add(-50 * time.Minute)
	name := "microvm:agent"
	for _, err := range []error{
		st.EnvStarted(ctx, "mvm-1", name, 1024, t0),
		st.MicroVMRunStarted(ctx, "mvm-1", name, 1024, t0),
		st.MicroVMRunEnded(ctx, "mvm-1", t0.Add(10*time.Minute)),
		st.Suspended(ctx, "mvm-1", name, 1<<30, t0.Add(10*time.Minute)),
		st.Resumed(ctx, "mvm-1", t0.Add(40*time.Minute)),
		st.MicroVMRunStarted(ctx, "mvm-1", name, 1024, t0.Add(40*time.Minute)),
		st.MicroVMRunEnded(ctx, "mvm-1", t0.Add(45*time.Minute)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	status, _, body := call(t, a, "GET", "/hearth/v1/cost?since=1h", nil)
	var rep meter.Report
	if err := json.Unmarshal(body, &rep); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if len(rep.Functions) != 1 || rep.Functions[0].Name != name {
		t.Fatalf("rows %+v", rep.Functions)
	}
	f := rep.Functions[0]
	if f.BilledSeconds != 900 || f.GBSeconds != 900 || f.Requests != 0 {
		t.Errorf("billed %v s, %v GB-s, %d requests; want 900, 900, 0", f.BilledSeconds, f.GBSeconds, f.Requests)
	}
	if f.SnapshotGBHours < 0.499 || f.SnapshotGBHours > 0.501 {
		t.Errorf("snapshot GB-hours %v, want 0.5", f.SnapshotGBHours)
	}
}
