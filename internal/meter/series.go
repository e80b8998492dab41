package meter

import (
	"slices"
	"sort"
	"time"
)

// MaxSeriesSteps bounds the steps of one Series, so that a caller cannot
// make the daemon build an arbitrarily large answer.
const MaxSeriesSteps = 2000

// Series is usage over [Since, Until) in equal steps: what the web console
// draws. Step i covers [Times[i], Times[i]+Step).
type Series struct {
	Since       time.Time        `json:"since"`
	Until       time.Time        `json:"until"`
	StepSeconds float64          `json:"stepSeconds"`
	Times       []time.Time      `json:"times"`
	Functions   []FunctionSeries `json:"functions"`
	// AlwaysOnGBSeconds is, per step, what the functions would hold if
	// each kept its memory for the whole step, like a rented server: the
	// line beside the billed GB-s.
	AlwaysOnGBSeconds []float64 `json:"alwaysOnGBSeconds"`
	// Starts is the latency of invocations by start type (cold, resume,
	// clone, paused, warm), per step.
	Starts []StartSeries `json:"starts"`
}

// FunctionSeries is one function's billed usage per step.
type FunctionSeries struct {
	Name      string    `json:"name"`
	MemoryMB  int       `json:"memoryMB"`
	GBSeconds []float64 `json:"gbSeconds"`
	Requests  []int     `json:"requests"`
}

// StartSeries is the latency of one start type's invocations per step:
// how many, their median and their worst. A step with no invocation has
// Count 0 and zero latencies.
type StartSeries struct {
	StartType string    `json:"startType"`
	Count     []int     `json:"count"`
	P50Ms     []float64 `json:"p50Ms"`
	MaxMs     []float64 `json:"maxMs"`
}

// LatencyMs is what the caller of an invocation waited for in the
// platform, as its record tells it: making the sandbox and the init of a
// cold start, the restore of a resume, clone or unpause, and the run.
func (r Record) LatencyMs() float64 {
	return r.PlatformInitMs + r.InitMs + r.RestoreMs + r.DurationMs
}

// BuildSeries buckets the records (by their time) and the MicroVMs'
// running periods (split over the steps they overlap) into steps of step
// from since to until. memoryMB gives each function's current memory, for
// the always-on line; a function whose memory is not known takes its
// records'. step is widened so that there are at most MaxSeriesSteps.
func BuildSeries(since, until time.Time, step time.Duration, recs []Record, runs []EnvSpan, memoryMB map[string]int) Series {
	if !until.After(since) {
		until = since.Add(time.Second)
	}
	period := until.Sub(since)
	if step <= 0 {
		step = period / 60
	}
	if min := period / MaxSeriesSteps; step < min {
		step = min
	}
	if step < time.Second {
		step = time.Second
	}
	n := int((period + step - 1) / step)
	s := Series{Since: since, Until: until, StepSeconds: step.Seconds(), AlwaysOnGBSeconds: make([]float64, n)}
	for i := range n {
		s.Times = append(s.Times, since.Add(time.Duration(i)*step))
	}
	index := func(t time.Time) (int, bool) {
		if t.Before(since) || !t.Before(until) {
			return 0, false
		}
		return int(t.Sub(since) / step), true
	}

	fns := map[string]*FunctionSeries{}
	fn := func(name string, mem int) *FunctionSeries {
		f := fns[name]
		if f == nil {
			f = &FunctionSeries{Name: name, MemoryMB: memoryMB[name], GBSeconds: make([]float64, n), Requests: make([]int, n)}
			fns[name] = f
		}
		if f.MemoryMB == 0 {
			f.MemoryMB = mem
		}
		return f
	}
	latencies := map[string][][]float64{}
	for _, r := range recs {
		i, ok := index(r.Time)
		if !ok {
			continue
		}
		f := fn(r.Function, r.MemoryMB)
		f.GBSeconds[i] += r.GBSeconds
		f.Requests[i]++
		if latencies[r.StartType] == nil {
			latencies[r.StartType] = make([][]float64, n)
		}
		latencies[r.StartType][i] = append(latencies[r.StartType][i], r.LatencyMs())
	}
	for _, r := range runs {
		f := fn(r.Function, r.MemoryMB)
		for i, t := range s.Times {
			if d := overlap(r.Start, r.End, t, stepEnd(t, step, until)); d > 0 {
				f.GBSeconds[i] += GBSeconds(r.MemoryMB, d)
			}
		}
	}
	for _, f := range fns {
		for i, t := range s.Times {
			s.AlwaysOnGBSeconds[i] += GBSeconds(f.MemoryMB, stepEnd(t, step, until).Sub(t))
		}
		s.Functions = append(s.Functions, *f)
	}
	slices.SortFunc(s.Functions, func(a, b FunctionSeries) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	types := make([]string, 0, len(latencies))
	for t := range latencies {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, typ := range types {
		ss := StartSeries{StartType: typ, Count: make([]int, n), P50Ms: make([]float64, n), MaxMs: make([]float64, n)}
		for i, ms := range latencies[typ] {
			if len(ms) == 0 {
				continue
			}
			slices.Sort(ms)
			ss.Count[i] = len(ms)
			ss.P50Ms[i] = median(ms)
			ss.MaxMs[i] = ms[len(ms)-1]
		}
		s.Starts = append(s.Starts, ss)
	}
	return s
}

// stepEnd is where the step from t ends: a step later, or at until.
func stepEnd(t time.Time, step time.Duration, until time.Time) time.Time {
	if e := t.Add(step); e.Before(until) {
		return e
	}
	return until
}

// median of sorted, non-empty xs.
func median(xs []float64) float64 {
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}
