package sandbox

import (
	"fmt"
	"math"
	"time"
)

// Report is Lambda's REPORT line. A cold start adds its phases after
// Lambda's own fields; a resume or a clone prints Restore Duration, as
// SnapStart does.
func (res *Result) Report(fn Function) string {
	line := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB",
		res.RequestID, msf(res.Duration), BilledMs(res.Duration), fn.MemoryMB, (res.MaxRSSKiB+1023)/1024)
	switch res.StartType {
	case StartCold:
		t := res.Init
		line += fmt.Sprintf("\tInit Duration: %.2f ms\tVMM Start: %.2f ms\tKernel Boot: %.2f ms\tRuntime Init: %.2f ms",
			msf(t.Total()), msf(t.VMMStart), msf(t.KernelBoot), msf(t.RuntimeInit))
	case StartResume, StartClone:
		line += fmt.Sprintf("\tRestore Duration: %.2f ms\tBilled Restore Duration: %d ms", msf(res.Restore), BilledMs(res.Restore))
	}
	return line + "\tStart Type: " + string(res.StartType)
}

// BilledMs rounds a duration up to the millisecond, as Lambda bills.
func BilledMs(d time.Duration) int64 {
	return int64(math.Ceil(float64(d) / float64(time.Millisecond)))
}
