package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hearthdev/hearth/internal/meter"
)

func (d *daemon) signedGet(t *testing.T, path string) []byte {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, d.url+path, nil)
	signRequest(t, r, "", d.creds, time.Now())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

func (d *daemon) cost(t *testing.T, query string) meter.Report {
	t.Helper()
	var rep meter.Report
	if err := json.Unmarshal(d.signedGet(t, "/hearth/v1/cost"+query), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// initSleepMs is how long the metered function sleeps at init: its INIT
// phase, as Lambda means it, is that and the Go runtime's start.
const initSleepMs = 700

// A load of known durations is billed as Lambda bills it: a cold start's
// billed time is the run and the function's init (which sleeps a known
// time), not the platform's VMM start and kernel boot, recorded beside it;
// suspended time adds no GB-seconds; always-on is memory × wall time; the
// records survive a restart; /metrics agrees with them.
func TestMetering(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Second)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("sleeper"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, MemorySize: aws.Int32(1024), Timeout: aws.Int32(30),
		Environment: &types.Environment{Variables: map[string]string{"TESTFN_INIT_SLEEP_MS": strconv.Itoa(initSleepMs)}}}); err != nil {
		t.Fatal(err)
	}
	sleep := func() {
		t.Helper()
		if _, err := d.client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sleeper"), Payload: []byte(`{"action":"sleep","ms":300}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		sleep()
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.srv.Scheduler().Stats().Suspended != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // suspended: costs no GB-s
	sleep()                     // resumed

	rep := d.cost(t, "")
	if len(rep.Functions) != 1 {
		t.Fatalf("report %+v", rep)
	}
	f := rep.Functions[0]
	if f.Requests != 4 || f.Name != "sleeper" || f.MemoryMB != 1024 {
		t.Fatalf("function %+v; records %+v", f, d.records(t))
	}
	if f.SnapshotGBHours <= 0 {
		t.Errorf("snapshot GB-hours %v, want some: it was suspended", f.SnapshotGBHours)
	}
	// Each record: billed = the run rounded up + init (cold) + restore
	// (resume), and not the platform init; GB-s = billed × 1 GB. The sum is
	// the report's: suspended time added nothing.
	records := d.records(t)
	sum, platform := 0.0, 0.0
	var cold *meter.Record
	for i, r := range records {
		want := int64(math.Ceil(r.DurationMs)) + int64(math.Ceil(r.InitMs)) + int64(math.Ceil(r.RestoreMs))
		if r.BilledMs != want || r.DurationMs < 300 || math.Abs(r.GBSeconds-float64(r.BilledMs)/1000) > 1e-9 {
			t.Errorf("record %+v: billed %d, want %d; GB-s %v", r, r.BilledMs, want, r.GBSeconds)
		}
		if (r.StartType == "cold") != (r.InitMs > 0) || (r.StartType == "cold") != (r.PlatformInitMs > 0) ||
			(r.StartType == "resume") != (r.RestoreMs > 0) {
			t.Errorf("record %+v: init/restore do not match its start type", r)
		}
		if r.StartType == "cold" {
			cold = &records[i]
		}
		sum += r.GBSeconds
		platform += r.PlatformInitMs / 1000
	}
	// The cold start's init is the function's own: at least its sleep, and
	// far less than that plus the platform's boot, which under emulation
	// takes seconds; the platform's part is recorded beside it.
	if cold == nil {
		t.Fatalf("no cold start among %+v", records)
	}
	t.Logf("cold start: init %.2f ms, platform init %.2f ms, run %.2f ms, billed %d ms", cold.InitMs, cold.PlatformInitMs, cold.DurationMs, cold.BilledMs)
	if cold.InitMs < initSleepMs || cold.InitMs >= initSleepMs+1500 {
		t.Errorf("cold init %.2f ms, want the function's %d ms sleep and its runtime's start", cold.InitMs, initSleepMs)
	}
	if cold.PlatformInitMs <= 0 {
		t.Errorf("cold platform init %.2f ms, want the VMM start and kernel boot", cold.PlatformInitMs)
	}
	if want := int64(math.Ceil(cold.DurationMs)) + int64(math.Ceil(cold.InitMs)); cold.BilledMs != want {
		t.Errorf("cold billed %d ms, want run + init = %d ms (the platform init unbilled)", cold.BilledMs, want)
	}
	if math.Abs(f.PlatformInitSeconds-platform) > 1e-9 || math.Abs(f.BilledSeconds-f.GBSeconds) > 1e-9 {
		t.Errorf("report platform init %v s (records %v), billed %v s for %v GB-s at 1 GB", f.PlatformInitSeconds, platform, f.BilledSeconds, f.GBSeconds)
	}
	// The function's log says the same as its record.
	if log := string(d.signedGet(t, "/hearth/v1/functions/sleeper/logs?tail=100")); !strings.Contains(log, fmt.Sprintf("\tInit Duration: %.2f ms\tPlatform Init: %.2f ms\t", cold.InitMs, cold.PlatformInitMs)) {
		t.Errorf("the REPORT line disagrees with the record (init %.2f, platform %.2f):\n%s", cold.InitMs, cold.PlatformInitMs, log)
	}
	if math.Abs(sum-f.GBSeconds) > 1e-9 {
		t.Errorf("report GB-s %v, records %v", f.GBSeconds, sum)
	}
	p := rep.Prices
	requests := 4 / 1e6 * p.PerMillionRequests
	wantAlwaysOn := meter.GBSeconds(1024, rep.Until.Sub(rep.Since))*p.PerGBSecond + requests
	if math.Abs(f.AlwaysOnCost-wantAlwaysOn) > 1e-12 {
		t.Errorf("always-on %v, want memory × wall time = %v", f.AlwaysOnCost, wantAlwaysOn)
	}
	// Without suspend, the env would have held its memory from its boot to
	// now: more than the billed time, which lies within that life.
	if active := f.Cost - f.SnapshotGBHours*p.PerGBHourSuspended; f.NoSuspendCost <= active {
		t.Errorf("without suspend %v should exceed the active cost %v", f.NoSuspendCost, active)
	}
	if got := d.cost(t, "?since=1ms").Total.Requests; got != 0 {
		t.Errorf("--since 1ms: %d requests, want 0", got)
	}

	// /metrics parses, and agrees with the records.
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	total := 0.0
	for _, m := range families["hearth_invocations_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	if total != float64(len(records)) {
		t.Errorf("hearth_invocations_total %v, records %d", total, len(records))
	}
	if families["hearth_suspends_total"].GetMetric()[0].GetCounter().GetValue() < 1 {
		t.Error("hearth_suspends_total is 0")
	}
	for _, name := range []string{"hearth_suspend_duration_seconds", "hearth_restore_duration_seconds", "hearth_invocation_duration_seconds",
		"hearth_suspended_snapshot_bytes", "hearth_billed_gb_seconds_total", "hearth_environments_warm", "hearth_platform_init_duration_seconds"} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	if err := d.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, data, time.Minute)
	if got := d2.cost(t, "").Total.Requests; got != 4 {
		t.Errorf("after a restart: %d requests, want the 4 recorded", got)
	}
}

// records reads the meter records through the cost report's store.
func (d *daemon) records(t *testing.T) []meter.Record {
	t.Helper()
	recs, err := d.srv.Records(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
