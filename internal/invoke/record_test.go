package invoke

import (
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

func TestRecord(t *testing.T) {
	fn := scheduler.Function{Function: sandbox.Function{Name: "f", Version: "2", MemoryMB: 1024}}
	boot := sandbox.BootTimings{VMMStart: 80 * time.Millisecond, KernelBoot: 1900 * time.Millisecond, RuntimeInit: 700 * time.Millisecond}
	tests := []struct {
		name                            string
		res                             sandbox.Result
		wantInit, wantPlatform, wantRst float64
	}{
		{"cold: Lambda's INIT apart from the platform's", sandbox.Result{StartType: sandbox.StartCold, Init: boot, Duration: 12500 * time.Microsecond}, 700, 1980, 0},
		{"warm", sandbox.Result{StartType: sandbox.StartWarm, Init: boot, Duration: time.Millisecond}, 0, 0, 0},
		{"resume", sandbox.Result{StartType: sandbox.StartResume, Restore: 45 * time.Millisecond, Duration: time.Millisecond}, 0, 0, 45},
		{"clone", sandbox.Result{StartType: sandbox.StartClone, Restore: 60 * time.Millisecond, Duration: time.Millisecond}, 0, 0, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record(fn, &tt.res, time.Unix(100, 0))
			if r.InitMs != tt.wantInit || r.PlatformInitMs != tt.wantPlatform || r.RestoreMs != tt.wantRst {
				t.Errorf("init %v platform %v restore %v, want %v %v %v", r.InitMs, r.PlatformInitMs, r.RestoreMs, tt.wantInit, tt.wantPlatform, tt.wantRst)
			}
			if r.Function != "f" || r.Version != "2" || r.MemoryMB != 1024 || r.StartType != string(tt.res.StartType) || r.DurationMs != float64(tt.res.Duration.Microseconds())/1000 {
				t.Errorf("record %+v", r)
			}
		})
	}
}
