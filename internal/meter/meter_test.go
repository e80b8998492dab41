package meter

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestBill(t *testing.T) {
	lambda := Prices{}
	withPlatform := Prices{BillPlatformInit: true}
	tests := []struct {
		name       string
		prices     Prices
		rec        Record
		wantBilled int64
		wantGBs    float64
	}{
		{"warm, rounded up to the ms", lambda, Record{DurationMs: 100.2, MemoryMB: 1024}, 101, 0.101},
		{"cold: init is billed", lambda, Record{DurationMs: 50, InitMs: 1200.5, MemoryMB: 512}, 1251, 0.6255},
		{"cold: the platform's init is not", lambda,
			Record{DurationMs: 50, InitMs: 700.2, PlatformInitMs: 1980.4, MemoryMB: 1024}, 50 + 701, 0.751},
		{"cold, platform billed by the switch", withPlatform,
			Record{DurationMs: 50, InitMs: 700.2, PlatformInitMs: 1980.4, MemoryMB: 1024}, 50 + 701 + 1981, 2.732},
		{"warm, switch on: nothing to add", withPlatform, Record{DurationMs: 100.2, MemoryMB: 1024}, 101, 0.101},
		{"resume: restore is billed", lambda, Record{DurationMs: 10, RestoreMs: 80, MemoryMB: 2048}, 90, 0.18},
		{"resume, switch on: restore billed once", withPlatform, Record{DurationMs: 10, RestoreMs: 80, MemoryMB: 2048}, 90, 0.18},
		{"the switch comes with the public prices off", LambdaPrices,
			Record{DurationMs: 1, InitMs: 1, PlatformInitMs: 1000, MemoryMB: 1024}, 2, 0.002},
	}
	for _, tt := range tests {
		r := tt.rec
		r.Bill(tt.prices)
		if r.BilledMs != tt.wantBilled || !near(r.GBSeconds, tt.wantGBs) {
			t.Errorf("%s: billed %d GB-s %v, want %d %v", tt.name, r.BilledMs, r.GBSeconds, tt.wantBilled, tt.wantGBs)
		}
	}
}

func TestMs(t *testing.T) {
	if got := Ms(1234567 * time.Microsecond); got != 1234.567 {
		t.Errorf("Ms = %v, want 1234.567", got)
	}
}

func TestPrice(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	hour := time.Hour
	p := Prices{PerGBSecond: 1, PerMillionRequests: 1e6, PerGBHourSuspended: 10}
	recs := []Record{
		{Time: t0.Add(time.Minute), Function: "f", BilledMs: 2000, GBSeconds: 2, MemoryMB: 1024, PlatformInitMs: 1500},
		{Time: t0.Add(2 * time.Minute), Function: "f", BilledMs: 3000, GBSeconds: 3, MemoryMB: 1024, Error: true},
		{Time: t0.Add(-time.Minute), Function: "f", BilledMs: 1e5, GBSeconds: 100, MemoryMB: 1024, PlatformInitMs: 9000}, // before the period
	}
	// One env lived 10 minutes; it spent 30 minutes suspended with 1 GiB.
	spans := []EnvSpan{{EnvID: "e", Function: "f", MemoryMB: 1024, Start: t0, End: t0.Add(10 * time.Minute)}}
	susp := []Suspension{{EnvID: "e", Function: "f", Bytes: 1 << 30, Start: t0.Add(10 * time.Minute), End: t0.Add(40 * time.Minute)}}
	rep := Price(p, t0, t0.Add(hour), recs, spans, susp, map[string]int{"f": 1024})
	if len(rep.Functions) != 1 {
		t.Fatalf("functions %+v", rep.Functions)
	}
	f := rep.Functions[0]
	checks := []struct {
		name      string
		got, want float64
	}{
		{"requests", float64(f.Requests), 2},
		{"errors", float64(f.Errors), 1},
		{"GB-s: suspended time adds none", f.GBSeconds, 5},
		{"billed seconds", f.BilledSeconds, 5},
		{"platform init beside them", f.PlatformInitSeconds, 1.5},
		{"total platform init", rep.Total.PlatformInitSeconds, 1.5},
		{"snapshot GB-hours", f.SnapshotGBHours, 0.5},
		{"cost", f.Cost, 5 + 2 + 0.5*10},
		{"always on = memory × wall time", f.AlwaysOnCost, 3600 + 2},
		{"without suspend = the env's life", f.NoSuspendCost, 600 + 2},
		{"total", rep.Total.Cost, f.Cost},
	}
	for _, c := range checks {
		if !near(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A MicroVM is billed for its running periods in GB-s and its
// suspensions as snapshot storage, under its own row, with no requests.
func TestPriceMicroVMRuns(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	p := Prices{PerGBSecond: 1, PerMillionRequests: 1e6, PerGBHourSuspended: 10}
	name := "microvm:agent"
	// It lived the whole hour: ran 10 minutes, was suspended 30 (1 GiB),
	// and has run again for the last 10 (still running: no end). A run
	// that ended before the period is not billed.
	spans := []EnvSpan{{EnvID: "m", Function: name, MemoryMB: 2048, Start: t0}}
	runs := []EnvSpan{
		{EnvID: "m", Function: name, MemoryMB: 2048, Start: t0.Add(-2 * time.Hour), End: t0.Add(-time.Hour)},
		{EnvID: "m", Function: name, MemoryMB: 2048, Start: t0, End: t0.Add(10 * time.Minute)},
		{EnvID: "m", Function: name, MemoryMB: 2048, Start: t0.Add(50 * time.Minute)},
	}
	susp := []Suspension{{EnvID: "m", Function: name, Bytes: 1 << 30, Start: t0.Add(10 * time.Minute), End: t0.Add(40 * time.Minute)}}
	rep := PriceWithRuns(p, t0, t0.Add(time.Hour), nil, spans, susp, runs, nil)
	if len(rep.Functions) != 1 || rep.Functions[0].Name != name {
		t.Fatalf("rows %+v", rep.Functions)
	}
	f := rep.Functions[0]
	checks := []struct {
		name      string
		got, want float64
	}{
		{"requests", float64(f.Requests), 0},
		{"billed seconds: 20 minutes running", f.BilledSeconds, 1200},
		{"GB-s", f.GBSeconds, 2400},
		{"snapshot GB-hours", f.SnapshotGBHours, 0.5},
		{"cost", f.Cost, 2400 + 5},
		{"without suspend = its whole life", f.NoSuspendCost, 7200},
		{"memory", float64(f.MemoryMB), 2048},
	}
	for _, c := range checks {
		if !near(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// Priced host by host, a function is held always-on once: the hosts'
// always-on figures add up to the cluster's, each host keeping its own
// requests.
func TestShareAlwaysOn(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	p := Prices{PerGBSecond: 1, PerMillionRequests: 1e6}
	mem := map[string]int{"f": 1024, "g": 1024, "h": 1024}
	recs := map[string][]Record{
		// f: billed 3 GB-s on a, 1 on b; g: requests only (0 GB-s), 1 on
		// a, 3 on b; h: on a alone.
		"a": {{Time: t0, Function: "f", GBSeconds: 3}, {Time: t0, Function: "g"}, {Time: t0, Function: "h", GBSeconds: 1}},
		"b": {{Time: t0, Function: "f", GBSeconds: 1}, {Time: t0, Function: "g"}, {Time: t0, Function: "g"}, {Time: t0, Function: "g"}},
	}
	until := t0.Add(100 * time.Second)
	var all []Record
	reports := []Report{}
	for _, h := range []string{"a", "b"} {
		all = append(all, recs[h]...)
		reports = append(reports, Price(p, t0, until, recs[h], nil, nil, mem))
	}
	whole := Price(p, t0, until, all, nil, nil, mem)
	ShareAlwaysOn(p, reports)
	cases := []struct {
		host, fn string
		want     float64 // held 100 GB-s × share, + the host's requests
	}{
		{"a", "f", 100*0.75 + 1},
		{"b", "f", 100*0.25 + 1},
		{"a", "g", 100*0.25 + 1},
		{"b", "g", 100*0.75 + 3},
		{"a", "h", 100 + 1},
	}
	for _, c := range cases {
		r := reports[0]
		if c.host == "b" {
			r = reports[1]
		}
		for _, fc := range r.Functions {
			if fc.Name == c.fn && !near(fc.AlwaysOnCost, c.want) {
				t.Errorf("%s on %s: always-on %v, want %v", c.fn, c.host, fc.AlwaysOnCost, c.want)
			}
		}
	}
	if sum := reports[0].Total.AlwaysOnCost + reports[1].Total.AlwaysOnCost; !near(sum, whole.Total.AlwaysOnCost) {
		t.Errorf("hosts' always-on add up to %v, the cluster's is %v", sum, whole.Total.AlwaysOnCost)
	}
}
