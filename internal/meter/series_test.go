package meter

import (
	"testing"
	"time"
)

func TestBuildSeriesBucketsRecordsAndRuns(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recs := []Record{
		{Time: t0.Add(10 * time.Second), Function: "a", StartType: "cold", MemoryMB: 512, GBSeconds: 1, PlatformInitMs: 1000, InitMs: 200, DurationMs: 50},
		{Time: t0.Add(20 * time.Second), Function: "a", StartType: "warm", MemoryMB: 512, GBSeconds: 0.5, DurationMs: 4},
		{Time: t0.Add(30 * time.Second), Function: "a", StartType: "warm", MemoryMB: 512, GBSeconds: 0.5, DurationMs: 8},
		{Time: t0.Add(40 * time.Second), Function: "a", StartType: "warm", MemoryMB: 512, GBSeconds: 0.5, DurationMs: 6},
		{Time: t0.Add(70 * time.Second), Function: "b", StartType: "resume", MemoryMB: 1024, GBSeconds: 2, RestoreMs: 250, DurationMs: 10},
		// Outside the period: not counted.
		{Time: t0.Add(-time.Second), Function: "a", StartType: "cold", MemoryMB: 512, GBSeconds: 100},
		{Time: t0.Add(3 * time.Minute), Function: "a", StartType: "cold", MemoryMB: 512, GBSeconds: 100},
	}
	// A MicroVM running from 30 s to 90 s, 1024 MB: 30 s in each step.
	runs := []EnvSpan{{Function: "microvm:img", MemoryMB: 1024, Start: t0.Add(30 * time.Second), End: t0.Add(90 * time.Second)}}
	s := BuildSeries(t0, t0.Add(2*time.Minute), time.Minute, recs, runs, map[string]int{"a": 256})

	if len(s.Times) != 2 || !s.Times[1].Equal(t0.Add(time.Minute)) || s.StepSeconds != 60 {
		t.Fatalf("times %v step %v, want two steps of 60 s", s.Times, s.StepSeconds)
	}
	if len(s.Functions) != 3 || s.Functions[0].Name != "a" || s.Functions[1].Name != "b" || s.Functions[2].Name != "microvm:img" {
		t.Fatalf("functions %+v", s.Functions)
	}
	a, b, vm := s.Functions[0], s.Functions[1], s.Functions[2]
	if !near(a.GBSeconds[0], 2.5) || a.GBSeconds[1] != 0 || a.Requests[0] != 4 || a.Requests[1] != 0 {
		t.Errorf("a: %+v, want 2.5 GB-s and 4 requests in the first step", a)
	}
	if a.MemoryMB != 256 || b.MemoryMB != 1024 {
		t.Errorf("memory a %d (the function's now, 256) b %d (its records', 1024)", a.MemoryMB, b.MemoryMB)
	}
	if !near(b.GBSeconds[1], 2) || b.Requests[1] != 1 {
		t.Errorf("b: %+v", b)
	}
	if !near(vm.GBSeconds[0], 30) || !near(vm.GBSeconds[1], 30) {
		t.Errorf("microvm: %+v, want 30 GB-s in each step", vm)
	}
	// Always-on: 0.25 + 1 + 1 GB held for 60 s in each step.
	for i, v := range s.AlwaysOnGBSeconds {
		if !near(v, 2.25*60) {
			t.Errorf("always-on step %d = %v, want %v", i, v, 2.25*60)
		}
	}
	byType := map[string]StartSeries{}
	for _, st := range s.Starts {
		byType[st.StartType] = st
	}
	if len(s.Starts) != 3 || s.Starts[0].StartType != "cold" {
		t.Fatalf("start types %+v, want cold, resume, warm in order", s.Starts)
	}
	if c := byType["cold"]; c.Count[0] != 1 || !near(c.P50Ms[0], 1250) || c.Count[1] != 0 {
		t.Errorf("cold %+v, want one of 1250 ms (platform init + init + run)", c)
	}
	if w := byType["warm"]; w.Count[0] != 3 || !near(w.P50Ms[0], 6) || !near(w.MaxMs[0], 8) {
		t.Errorf("warm %+v, want 3, p50 6, max 8", w)
	}
	if r := byType["resume"]; r.Count[1] != 1 || !near(r.P50Ms[1], 260) {
		t.Errorf("resume %+v, want 260 ms (restore + run) in the second step", r)
	}
}

func TestBuildSeriesSteps(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		period    time.Duration
		step      time.Duration
		wantSteps int
		wantStep  float64
	}{
		{"given", time.Hour, time.Minute, 60, 60},
		{"default: sixty steps", time.Hour, 0, 60, 60},
		{"a partial last step", 90 * time.Second, time.Minute, 2, 60},
		{"too many steps: widened", 24 * time.Hour, time.Second, MaxSeriesSteps, 43.2},
		{"at least a second", 10 * time.Second, time.Millisecond, 10, 1},
		{"an empty period becomes a second", 0, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := BuildSeries(t0, t0.Add(tt.period), tt.step, nil, nil, nil)
			if len(s.Times) != tt.wantSteps || len(s.AlwaysOnGBSeconds) != tt.wantSteps || !near(s.StepSeconds, tt.wantStep) {
				t.Errorf("%d steps of %v s, want %d of %v", len(s.Times), s.StepSeconds, tt.wantSteps, tt.wantStep)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{1, 3}, 2}, {[]float64{1, 2, 10}, 2}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
