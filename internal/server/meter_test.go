package server_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
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

// A load of known durations is billed as Lambda bills it; suspended time
// adds no GB-seconds; always-on is memory × wall time; the records survive
// a restart; /metrics agrees with them.
func TestMetering(t *testing.T) {
	data := t.TempDir()
	d := start(t, data, time.Second)
	ctx := context.Background()
	if _, err := d.client.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("sleeper"), Runtime: types.RuntimeProvidedal2023,
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: readZip(t, "./internal/testfunction")}, MemorySize: aws.Int32(1024), Timeout: aws.Int32(30)}); err != nil {
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
	// (resume); GB-s = billed × 1 GB. The sum is the report's: suspended
	// time added nothing.
	records := d.records(t)
	sum := 0.0
	for _, r := range records {
		want := int64(math.Ceil(r.DurationMs)) + int64(math.Ceil(r.InitMs)) + int64(math.Ceil(r.RestoreMs))
		if r.BilledMs != want || r.DurationMs < 300 || math.Abs(r.GBSeconds-float64(r.BilledMs)/1000) > 1e-9 {
			t.Errorf("record %+v: billed %d, want %d; GB-s %v", r, r.BilledMs, want, r.GBSeconds)
		}
		if (r.StartType == "cold") != (r.InitMs > 0) || (r.StartType == "resume") != (r.RestoreMs > 0) {
			t.Errorf("record %+v: init/restore do not match its start type", r)
		}
		sum += r.GBSeconds
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
		"hearth_suspended_snapshot_bytes", "hearth_billed_gb_seconds_total", "hearth_environments_warm"} {
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
