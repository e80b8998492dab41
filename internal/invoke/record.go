package invoke

import (
	"time"

	"github.com/hearthdev/hearth/internal/meter"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// Record is an invocation's meter record: its durations, Lambda's INIT
// (the runtime's own init) and the platform's part of a cold start apart,
// or the restore of a resume or a clone. The Meter bills it by its prices.
func Record(fn scheduler.Function, res *sandbox.Result, at time.Time) meter.Record {
	r := meter.Record{Time: at.UTC(), Function: fn.Name, Version: fn.Version, EnvID: res.EnvID,
		StartType: string(res.StartType), DurationMs: meter.Ms(res.Duration),
		MemoryMB: fn.MemoryMB, MaxMemMB: int((res.MaxRSSKiB + 1023) / 1024), Error: res.Error != nil}
	switch res.StartType {
	case sandbox.StartCold:
		r.InitMs, r.PlatformInitMs = meter.Ms(res.Init.RuntimeInit), meter.Ms(res.Init.PlatformInit())
	case sandbox.StartResume, sandbox.StartClone:
		r.RestoreMs = meter.Ms(res.Restore)
	}
	return r
}
