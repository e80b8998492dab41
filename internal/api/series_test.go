package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/store"
)

// The series route buckets the store's records: per function, with the
// always-on line, and start latency by start type; ?function= keeps one.
func TestUsageSeries(t *testing.T) {
	a := newTestAPI(t)
	ctx := context.Background()
	if err := a.cfg.Store.CreateFunction(ctx, store.Function{FunctionName: "a", Version: "$LATEST", MemorySize: 512}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, r := range []meter.Record{
		{Time: now.Add(-90 * time.Second), Function: "a", StartType: "cold", MemoryMB: 512, GBSeconds: 0.75, PlatformInitMs: 1000, InitMs: 300, DurationMs: 200},
		{Time: now.Add(-80 * time.Second), Function: "a", StartType: "warm", MemoryMB: 512, GBSeconds: 0.25, DurationMs: 5},
		{Time: now.Add(-70 * time.Second), Function: "b", StartType: "warm", MemoryMB: 128, GBSeconds: 0.125, DurationMs: 7},
		{Time: now.Add(-2 * time.Hour), Function: "a", StartType: "cold", MemoryMB: 512, GBSeconds: 50},
	} {
		if err := a.cfg.Store.AddRecord(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, query string
		wantFns     []string
		wantGBs     float64
		wantTypes   []string
	}{
		{"every function, the last hour", "", []string{"a", "b"}, 1.125, []string{"cold", "warm"}},
		{"one function", "?function=a&since=10m&step=1m", []string{"a"}, 1, []string{"cold", "warm"}},
		{"since before the old record", "?since=3h&step=30m", []string{"a", "b"}, 51.125, []string{"cold", "warm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := call(t, a, "GET", "/hearth/v1/usage/series"+tt.query, nil)
			if status != http.StatusOK {
				t.Fatalf("%d %s", status, body)
			}
			var s meter.Series
			if err := json.Unmarshal(body, &s); err != nil {
				t.Fatal(err)
			}
			var names []string
			var gbs float64
			for _, f := range s.Functions {
				names = append(names, f.Name)
				for _, v := range f.GBSeconds {
					gbs += v
				}
			}
			if !equalStrings(names, tt.wantFns) || !near(gbs, tt.wantGBs) {
				t.Errorf("functions %v with %v GB-s, want %v with %v", names, gbs, tt.wantFns, tt.wantGBs)
			}
			var types []string
			for _, st := range s.Starts {
				types = append(types, st.StartType)
			}
			if !equalStrings(types, tt.wantTypes) {
				t.Errorf("start types %v, want %v", types, tt.wantTypes)
			}
			if len(s.AlwaysOnGBSeconds) != len(s.Times) || len(s.Times) == 0 || s.AlwaysOnGBSeconds[0] <= 0 {
				t.Errorf("always-on %v over %d steps", s.AlwaysOnGBSeconds, len(s.Times))
			}
		})
	}
	// The cold start's latency is the whole wait: 1000 + 300 + 200 ms.
	_, _, body := call(t, a, "GET", "/hearth/v1/usage/series?function=a&since=10m&step=10m", nil)
	var s meter.Series
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Starts[0].StartType != "cold" || s.Starts[0].Count[0] != 1 || !near(s.Starts[0].P50Ms[0], 1500) {
		t.Errorf("cold %+v, want one of 1500 ms", s.Starts[0])
	}
}

func TestUsageSeriesRefusesBadArguments(t *testing.T) {
	a := newTestAPI(t)
	for _, q := range []string{"?step=-1m", "?step=soon", "?since=yesterday"} {
		status, h, body := call(t, a, "GET", "/hearth/v1/usage/series"+q, nil)
		if typ, _, _ := lambdaError(t, h, body); status != http.StatusBadRequest || typ != "InvalidParameterValueException" {
			t.Errorf("%s: %d %s, want 400 InvalidParameterValueException", q, status, typ)
		}
	}
}

type fixedBuckets struct {
	bs  []BucketSummary
	err error
}

func (f fixedBuckets) ListBucketSummaries(context.Context) ([]BucketSummary, error) {
	return f.bs, f.err
}

func TestBucketsRoute(t *testing.T) {
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		buckets    Buckets
		wantStatus int
		want       []string
	}{
		{"no endpoint", nil, 200, nil},
		{"none yet", fixedBuckets{}, 200, nil},
		{"two", fixedBuckets{bs: []BucketSummary{{"logs", day}, {"photos", day}}}, 200, []string{"logs", "photos"}},
		{"failing", fixedBuckets{err: errors.New("disk gone")}, 500, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestAPI(t)
			a.cfg.Buckets = tt.buckets
			status, _, body := call(t, a, "GET", "/hearth/v1/buckets", nil)
			if status != tt.wantStatus {
				t.Fatalf("%d %s, want %d", status, body, tt.wantStatus)
			}
			if status != 200 {
				return
			}
			var out struct {
				Buckets []BucketSummary `json:"buckets"`
			}
			if err := json.Unmarshal(body, &out); err != nil || out.Buckets == nil {
				t.Fatalf("%s: %v (want a list, even empty)", body, err)
			}
			var names []string
			for _, b := range out.Buckets {
				names = append(names, b.Name)
			}
			if !equalStrings(names, tt.want) {
				t.Errorf("buckets %v, want %v", names, tt.want)
			}
		})
	}
}

// The console's routes are signed like the rest.
func TestConsoleRoutesNeedSignature(t *testing.T) {
	a := newTestAPI(t)
	for _, p := range []string{"/hearth/v1/usage/series", "/hearth/v1/buckets"} {
		w := newRecorder()
		r, _ := http.NewRequest("GET", "http://127.0.0.1:9000"+p, nil)
		a.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s unsigned: %d, want 403", p, w.Code)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func near(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

// GET idle-policy answers what PUT stored, and the daemon's keep-paused
// for a policy that does not say; an unknown function is a 404.
func TestGetIdlePolicy(t *testing.T) {
	a := newTestAPI(t)
	a.cfg.DefaultKeepPaused = 90 * time.Second
	createFn(t, a, "f", nil)
	createFn(t, a, "g", nil)
	if status, _, body := call(t, a, "PUT", "/hearth/v1/functions/f/idle-policy", map[string]any{"KeepWarmSeconds": 7, "KeepPausedSeconds": 0, "KeepSuspendedHours": 3}); status != 200 {
		t.Fatalf("put: %d %s", status, body)
	}
	type policy struct {
		store.IdlePolicy
		DefaultKeepPausedSeconds *int
	}
	tests := []struct {
		fn         string
		wantPaused *int // KeepPausedSeconds
	}{
		{"f", new(int)}, // PUT 0: no paused tier
		{"g", nil},      // as created: the daemon's default
	}
	for _, tt := range tests {
		status, _, body := call(t, a, "GET", "/hearth/v1/functions/"+tt.fn+"/idle-policy", nil)
		var p policy
		if err := json.Unmarshal(body, &p); status != 200 || err != nil {
			t.Fatalf("%s: %d %s %v", tt.fn, status, body, err)
		}
		if (p.KeepPausedSeconds == nil) != (tt.wantPaused == nil) || (p.KeepPausedSeconds != nil && *p.KeepPausedSeconds != *tt.wantPaused) {
			t.Errorf("%s: KeepPausedSeconds %s", tt.fn, body)
		}
		if p.DefaultKeepPausedSeconds == nil || *p.DefaultKeepPausedSeconds != 90 {
			t.Errorf("%s: DefaultKeepPausedSeconds in %s, want 90", tt.fn, body)
		}
		if tt.fn == "f" && (p.KeepWarmSeconds != 7 || p.KeepSuspendedHours != 3) {
			t.Errorf("f: policy %s", body)
		}
	}
	if status, _, _ := call(t, a, "GET", "/hearth/v1/functions/nope/idle-policy", nil); status != 404 {
		t.Errorf("unknown function: %d, want 404", status)
	}
}
