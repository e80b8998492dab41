package sandbox

import (
	"fmt"
	"math"
	"time"
)

// Report is Lambda's REPORT line. For a cold start, Init Duration is what
// Lambda means by it, the runtime's and the function's init, and Billed
// Duration counts it, as Lambda bills the INIT phase; Hearth's own fields
// follow for the platform's part (Platform Init = VMM Start + Kernel Boot),
// which Lambda does not report and Hearth does not bill by default. A
// resume or a clone prints Restore Duration and Billed Restore Duration, as
// SnapStart does; an environment continued from a pause, Unpause Duration.
func (res *Result) Report(fn Function) string {
	billed := BilledMs(res.Duration)
	var phases string
	switch res.StartType {
	case StartCold:
		t := res.Init
		billed += BilledMs(t.RuntimeInit)
		phases = fmt.Sprintf("\tInit Duration: %.2f ms\tPlatform Init: %.2f ms\tVMM Start: %.2f ms\tKernel Boot: %.2f ms",
			msf(t.RuntimeInit), msf(t.PlatformInit()), msf(t.VMMStart), msf(t.KernelBoot))
	case StartResume, StartClone:
		phases = fmt.Sprintf("\tRestore Duration: %.2f ms\tBilled Restore Duration: %d ms", msf(res.Restore), BilledMs(res.Restore))
	case StartPaused:
		// A paused environment is idle like a warm one: its unpause is
		// Hearth's, and not billed.
		phases = fmt.Sprintf("\tUnpause Duration: %.2f ms", msf(res.Restore))
	}
	return fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		res.RequestID, msf(res.Duration), billed, fn.MemoryMB, (res.MaxRSSKiB+1023)/1024) + phases + "\tStart Type: " + string(res.StartType)
}

// BilledMs rounds a duration up to the millisecond, as Lambda bills.
func BilledMs(d time.Duration) int64 {
	return int64(math.Ceil(float64(d) / float64(time.Millisecond)))
}
