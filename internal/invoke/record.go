package invoke

import (
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// Record is an invocation's meter record, billed as Lambda bills: the run,
// plus the init of a cold start, plus the restore of a resume or a clone.
func Record(fn scheduler.Function, res *sandbox.Result, at time.Time) meter.Record {
	r := meter.Record{Time: at.UTC(), Function: fn.Name, Version: fn.Version, EnvID: res.EnvID,
		StartType: string(res.StartType), DurationMs: ms(res.Duration),
		MemoryMB: fn.MemoryMB, MaxMemMB: int((res.MaxRSSKiB + 1023) / 1024), Error: res.Error != nil}
	switch res.StartType {
	case sandbox.StartCold:
		r.InitMs = ms(res.Init.Total())
	case sandbox.StartResume, sandbox.StartClone:
		r.RestoreMs = ms(res.Restore)
	}
	r.Bill()
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
