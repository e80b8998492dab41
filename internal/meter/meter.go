// Package meter turns invocations into billable usage, as Lambda bills it,
// and prices it, beside what the same traffic would cost always-on and
// without suspend — the comparison Hearth exists for.
package meter

import (
	"math"
	"time"
)

// Record is one invocation's usage.
type Record struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	Version   string    `json:"version"`
	EnvID     string    `json:"envId"`
	StartType string    `json:"startType"`
	// InitMs is a cold start's INIT phase as Lambda means it: the runtime's
	// and the function's own init. PlatformInitMs is Hearth's part before
	// it, making the sandbox (VMM start and kernel boot), which Lambda
	// neither reports nor bills. Records written before PlatformInitMs
	// existed have none, and their InitMs is the whole cold start.
	InitMs         float64 `json:"initMs"`
	PlatformInitMs float64 `json:"platformInitMs"`
	RestoreMs      float64 `json:"restoreMs"`
	// DurationMs is the run; BilledMs the billed time: the run rounded up to
	// the millisecond, plus the init of a cold start and the restore of a
	// resume or clone, as Lambda bills them today, plus the platform init
	// if the prices bill it. It is what was billed when the record was made.
	DurationMs float64 `json:"durationMs"`
	BilledMs   int64   `json:"billedMs"`
	MemoryMB   int     `json:"memoryMB"`
	GBSeconds  float64 `json:"gbSeconds"`
	MaxMemMB   int     `json:"maxMemoryUsedMB"`
	Error      bool    `json:"error"`
	// Host is the host of a cluster that made the record, when another
	// host did ("" is this one); it is not part of what is stored.
	Host string `json:"host,omitempty"`
}

// Bill fills BilledMs and GBSeconds from the durations and the memory, by
// the price table p: each part rounded up to the millisecond; the platform
// init only if p.BillPlatformInit.
func (r *Record) Bill(p Prices) {
	ms := ceilMs(r.DurationMs) + ceilMs(r.InitMs) + ceilMs(r.RestoreMs)
	if p.BillPlatformInit {
		ms += ceilMs(r.PlatformInitMs)
	}
	r.BilledMs = ms
	r.GBSeconds = GBSeconds(r.MemoryMB, time.Duration(r.BilledMs)*time.Millisecond)
}

func ceilMs(ms float64) int64 { return int64(math.Ceil(ms)) }

// Ms is d in milliseconds, to the microsecond, as records keep durations.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// GBSeconds is memory held for d, in GB-seconds (1 GB = 1024 MB).
func GBSeconds(memoryMB int, d time.Duration) float64 {
	return float64(memoryMB) / 1024 * d.Seconds()
}

// Prices is the price table. The defaults are AWS Lambda's public x86
// prices (first tier, us-east-1) and are labelled as such.
type Prices struct {
	Label string `json:"label"`
	// PerGBSecond is the price of active (billed) time.
	PerGBSecond float64 `json:"perGBSecond"`
	// PerMillionRequests is the request price.
	PerMillionRequests float64 `json:"perMillionRequests"`
	// PerGBHourSuspended is the price of keeping a suspended environment's
	// snapshot (Lambda SnapStart's cache price, per GB-hour). Warm idle
	// time is free, as on Lambda: it is not metered.
	PerGBHourSuspended float64 `json:"perGBHourSuspended"`
	// BillPlatformInit bills a cold start's platform init (VMM start and
	// kernel boot) too. Lambda does not bill the making of its sandbox, so
	// neither does Hearth by default; a host that wants its users to pay
	// for its slower boots sets it.
	BillPlatformInit bool `json:"billPlatformInit"`
}

// LambdaPrices are AWS Lambda's public x86 prices.
var LambdaPrices = Prices{
	Label:              "AWS Lambda x86 public prices (us-east-1, first tier)",
	PerGBSecond:        0.0000166667,
	PerMillionRequests: 0.20,
	// SnapStart cache: $0.0000015046 per GB-second.
	PerGBHourSuspended: 0.0000015046 * 3600,
}

// EnvSpan is an environment's life, for the without-suspend comparison.
type EnvSpan struct {
	EnvID    string
	Function string
	MemoryMB int
	Start    time.Time
	End      time.Time // zero while it lives
	Host     string    // another host's of a cluster; "" is this one
}

// Suspension is a period an environment spent suspended.
type Suspension struct {
	EnvID    string
	Function string
	Bytes    int64
	Start    time.Time
	End      time.Time // zero while suspended
	Host     string    // another host's of a cluster; "" is this one
}

// FunctionCost is one function's usage and costs over a period.
type FunctionCost struct {
	Name     string `json:"name"`
	MemoryMB int    `json:"memoryMB"`
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"`
	// BilledSeconds is the billed time; PlatformInitSeconds the cold
	// starts' platform init beside it, in it only if it was billed (see
	// Prices.BillPlatformInit).
	BilledSeconds       float64 `json:"billed_seconds"`
	PlatformInitSeconds float64 `json:"platform_init_seconds"`
	GBSeconds           float64 `json:"gb_seconds"`
	SnapshotGBHours     float64 `json:"snapshot_gb_hours"`
	Cost                float64 `json:"cost"`
	// AlwaysOnCost is the function's memory held for the whole period, like
	// a rented server; NoSuspendCost its environments held warm for their
	// whole lives instead of being suspended.
	AlwaysOnCost  float64 `json:"always_on_cost"`
	NoSuspendCost float64 `json:"no_suspend_cost"`
}

// Report is a cost report.
type Report struct {
	Since     time.Time      `json:"since"`
	Until     time.Time      `json:"until"`
	Prices    Prices         `json:"prices"`
	Functions []FunctionCost `json:"functions"`
	Total     FunctionCost   `json:"total"`
}

// overlap is how much of [a, b) lies in [from, to).
func overlap(a, b, from, to time.Time) time.Duration {
	if b.IsZero() || b.After(to) {
		b = to
	}
	if a.Before(from) {
		a = from
	}
	if b.Before(a) {
		return 0
	}
	return b.Sub(a)
}

// Price computes the report over [since, until) from the records, the
// environments' lives and their suspensions. memoryMB gives each function's
// current memory, for the always-on figure.
func Price(p Prices, since, until time.Time, recs []Record, spans []EnvSpan, susp []Suspension, memoryMB map[string]int) Report {
	return PriceWithRuns(p, since, until, recs, spans, susp, nil, memoryMB)
}

// PriceWithRuns is Price with the running periods of MicroVMs: each is
// billed whole, in GB-s, under its name (a MicroVM is not invoked: it is
// billed while it runs, and as snapshot storage while suspended, which its
// suspensions say).
func PriceWithRuns(p Prices, since, until time.Time, recs []Record, spans []EnvSpan, susp []Suspension, runs []EnvSpan, memoryMB map[string]int) Report {
	rep := Report{Since: since, Until: until, Prices: p}
	by := map[string]*FunctionCost{}
	get := func(name string) *FunctionCost {
		fc := by[name]
		if fc == nil {
			fc = &FunctionCost{Name: name, MemoryMB: memoryMB[name]}
			by[name] = fc
		}
		return fc
	}
	for _, r := range recs {
		if r.Time.Before(since) || !r.Time.Before(until) {
			continue
		}
		fc := get(r.Function)
		fc.Requests++
		fc.BilledSeconds += float64(r.BilledMs) / 1000
		fc.PlatformInitSeconds += r.PlatformInitMs / 1000
		fc.GBSeconds += r.GBSeconds
		if r.Error {
			fc.Errors++
		}
		if fc.MemoryMB == 0 {
			fc.MemoryMB = r.MemoryMB
		}
	}
	for _, r := range runs {
		if d := overlap(r.Start, r.End, since, until); d > 0 {
			fc := get(r.Function)
			fc.BilledSeconds += d.Seconds()
			fc.GBSeconds += GBSeconds(r.MemoryMB, d)
			if fc.MemoryMB == 0 {
				fc.MemoryMB = r.MemoryMB
			}
		}
	}
	heldGBs := map[string]float64{}
	for _, s := range spans {
		if d := overlap(s.Start, s.End, since, until); d > 0 {
			get(s.Function)
			heldGBs[s.Function] += GBSeconds(s.MemoryMB, d)
		}
	}
	for _, s := range susp {
		if d := overlap(s.Start, s.End, since, until); d > 0 {
			get(s.Function).SnapshotGBHours += float64(s.Bytes) / (1 << 30) * d.Hours()
		}
	}
	period := until.Sub(since)
	for _, fc := range by {
		requests := float64(fc.Requests) / 1e6 * p.PerMillionRequests
		fc.Cost = fc.GBSeconds*p.PerGBSecond + requests + fc.SnapshotGBHours*p.PerGBHourSuspended
		fc.AlwaysOnCost = GBSeconds(fc.MemoryMB, period)*p.PerGBSecond + requests
		// Without suspend the environments would have held their memory
		// for their whole lives, at the active price; never less than the
		// billed time itself.
		fc.NoSuspendCost = max(heldGBs[fc.Name], fc.GBSeconds)*p.PerGBSecond + requests
		rep.Functions = append(rep.Functions, *fc)
		t := &rep.Total
		t.Requests += fc.Requests
		t.Errors += fc.Errors
		t.BilledSeconds += fc.BilledSeconds
		t.PlatformInitSeconds += fc.PlatformInitSeconds
		t.GBSeconds += fc.GBSeconds
		t.SnapshotGBHours += fc.SnapshotGBHours
		t.Cost += fc.Cost
		t.AlwaysOnCost += fc.AlwaysOnCost
		t.NoSuspendCost += fc.NoSuspendCost
	}
	rep.Total.Name = "total"
	sortByName(rep.Functions)
	return rep
}

func sortByName(fs []FunctionCost) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].Name < fs[j-1].Name; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// ShareAlwaysOn splits the always-on figure of reports made of parts of
// one meter (a cluster's hosts, each priced apart) so that they add up to
// the whole's: a function is held always-on once, not once per host it
// ran on. Each part keeps its own requests and takes of the held memory
// its share of the function's GB-seconds (of its requests when none were
// billed; evenly when it has neither). Totals are summed again.
func ShareAlwaysOn(p Prices, reports []Report) {
	gbs, reqs, parts := map[string]float64{}, map[string]int{}, map[string]int{}
	for _, r := range reports {
		for _, fc := range r.Functions {
			gbs[fc.Name] += fc.GBSeconds
			reqs[fc.Name] += fc.Requests
			parts[fc.Name]++
		}
	}
	for i := range reports {
		r := &reports[i]
		period := r.Until.Sub(r.Since)
		r.Total.AlwaysOnCost = 0
		for j := range r.Functions {
			fc := &r.Functions[j]
			share := 1 / float64(parts[fc.Name])
			switch {
			case gbs[fc.Name] > 0:
				share = fc.GBSeconds / gbs[fc.Name]
			case reqs[fc.Name] > 0:
				share = float64(fc.Requests) / float64(reqs[fc.Name])
			}
			requests := float64(fc.Requests) / 1e6 * p.PerMillionRequests
			fc.AlwaysOnCost = GBSeconds(fc.MemoryMB, period)*p.PerGBSecond*share + requests
			r.Total.AlwaysOnCost += fc.AlwaysOnCost
		}
	}
}
