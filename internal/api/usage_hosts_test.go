package api

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/store"
)

// Another host's records, applied from the meter stream, count in the
// cost report with this host's; by host, each host's share is apart.
func TestCostCoversOtherHosts(t *testing.T) {
	ctx := context.Background()
	a := newTestAPI(t)
	a.cfg.Prices = meter.Prices{PerGBSecond: 1, PerMillionRequests: 1e6}
	other, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.EnableMeterOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Minute)
	rec := func(fn string, ms float64) meter.Record {
		r := meter.Record{Time: now, Function: fn, StartType: "warm", DurationMs: ms, MemoryMB: 1024}
		r.Bill(meter.Prices{})
		return r
	}
	for _, r := range []meter.Record{rec("f", 1000), rec("f", 1000), rec("g", 500)} {
		if err := a.cfg.Store.AddRecord(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []meter.Record{rec("f", 2000), rec("h", 250)} {
		if err := other.AddRecord(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := other.MeterOutbox(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		d, _ := json.Marshal(e)
		if _, err := a.cfg.Store.ApplyMeterEvent(ctx, uint64(i+1), "b", d); err != nil {
			t.Fatal(err)
		}
	}
	status, _, body := call(t, a, "GET", "/hearth/v1/cost?since=1h", nil)
	var rep meter.Report
	if err := json.Unmarshal(body, &rep); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	if rep.Total.Requests != 5 || rep.Total.GBSeconds != 4.75 {
		t.Errorf("total %d requests, %v GB-s; want 5 and 4.75 (both hosts)", rep.Total.Requests, rep.Total.GBSeconds)
	}
	status, _, body = call(t, a, "GET", "/hearth/v1/cost?since=1h&by=host", nil)
	var hc HostCosts
	if err := json.Unmarshal(body, &hc); status != 200 || err != nil {
		t.Fatalf("%d %s %v", status, body, err)
	}
	tests := []struct {
		host      string
		requests  int
		gbSeconds float64
		functions int
	}{
		{"b", 2, 2.25, 2},
		{"local", 3, 2.5, 2},
	}
	if len(hc.Hosts) != len(tests) {
		t.Fatalf("hosts %+v", hc.Hosts)
	}
	alwaysOn := 0.0
	for i, tt := range tests {
		h := hc.Hosts[i]
		alwaysOn += h.Total.AlwaysOnCost
		if h.Host != tt.host || h.Total.Requests != tt.requests || h.Total.GBSeconds != tt.gbSeconds || len(h.Functions) != tt.functions {
			t.Errorf("host %d: %s, %d requests, %v GB-s, %d functions; want %+v", i, h.Host, h.Total.Requests, h.Total.GBSeconds, len(h.Functions), tt)
		}
	}
	// f ran on both hosts: it is held always-on once, not once per host.
	if d := alwaysOn - rep.Total.AlwaysOnCost; d > 1e-6*rep.Total.AlwaysOnCost || d < -1e-6*rep.Total.AlwaysOnCost {
		t.Errorf("the hosts' always-on add up to %v, the cluster's is %v", alwaysOn, rep.Total.AlwaysOnCost)
	}
}
