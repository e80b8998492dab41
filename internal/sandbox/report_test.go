package sandbox

import (
	"testing"
	"time"
)

func TestReport(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	fn := Function{MemoryMB: 512}
	tests := []struct {
		name string
		res  Result
		want string
	}{
		{
			name: "warm: Lambda's fields only",
			res:  Result{RequestID: "r1", StartType: StartWarm, Duration: ms(12.34), MaxRSSKiB: 40 * 1024},
			want: "REPORT RequestId: r1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\tMax Memory Used: 40 MB\tStart Type: warm",
		},
		{
			// Init Duration is the runtime's init alone, billed in Billed
			// Duration as Lambda bills INIT; the platform's part is beside
			// it and not billed.
			name: "cold: Init Duration is the runtime's, the platform beside it",
			res: Result{RequestID: "r2", StartType: StartCold, Duration: ms(100.5), MaxRSSKiB: 7*1024 + 1,
				Init: BootTimings{VMMStart: ms(84.22), KernelBoot: ms(1915.97), GuestKernel: ms(1000), GuestAgent: ms(20), RuntimeInit: ms(700.25)}},
			want: "REPORT RequestId: r2\tDuration: 100.50 ms\tBilled Duration: 802 ms\tMemory Size: 512 MB\tMax Memory Used: 8 MB" +
				"\tInit Duration: 700.25 ms\tPlatform Init: 2000.19 ms\tVMM Start: 84.22 ms\tKernel Boot: 1915.97 ms\tStart Type: cold",
		},
		{
			name: "resume: restore as SnapStart prints it",
			res:  Result{RequestID: "r3", StartType: StartResume, Duration: ms(10), Restore: ms(80.4)},
			want: "REPORT RequestId: r3\tDuration: 10.00 ms\tBilled Duration: 10 ms\tMemory Size: 512 MB\tMax Memory Used: 0 MB" +
				"\tRestore Duration: 80.40 ms\tBilled Restore Duration: 81 ms\tStart Type: resume",
		},
		{
			// A paused environment is idle like a warm one: its unpause
			// is told, not billed.
			name: "paused: unpause, not billed",
			res:  Result{RequestID: "r5", StartType: StartPaused, Duration: ms(10), Restore: ms(4.5)},
			want: "REPORT RequestId: r5\tDuration: 10.00 ms\tBilled Duration: 10 ms\tMemory Size: 512 MB\tMax Memory Used: 0 MB" +
				"\tUnpause Duration: 4.50 ms\tStart Type: paused",
		},
		{
			name: "clone: restore too",
			res:  Result{RequestID: "r4", StartType: StartClone, Duration: ms(1), Restore: ms(30)},
			want: "REPORT RequestId: r4\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 512 MB\tMax Memory Used: 0 MB" +
				"\tRestore Duration: 30.00 ms\tBilled Restore Duration: 30 ms\tStart Type: clone",
		},
	}
	for _, tt := range tests {
		if got := tt.res.Report(fn); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestBootTimingsParts(t *testing.T) {
	b := BootTimings{VMMStart: 80 * time.Millisecond, KernelBoot: 1900 * time.Millisecond, GuestKernel: time.Second, RuntimeInit: 700 * time.Millisecond}
	if got := b.PlatformInit(); got != 1980*time.Millisecond {
		t.Errorf("platform init %v, want VMM start + kernel boot = 1.98s", got)
	}
	if got := b.Total(); got != b.PlatformInit()+b.RuntimeInit {
		t.Errorf("total %v, want platform + runtime init", got)
	}
}
