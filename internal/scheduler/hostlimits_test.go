package scheduler

import (
	"runtime"
	"testing"
	"time"
)

func TestHostLimits(t *testing.T) {
	l, err := HostLimits(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxMemoryMB < 128 || l.MaxSnapshotBytes <= 0 || l.MaxEnvironments != DefaultMaxEnvironments ||
		l.MaxBootsInFlight != runtime.NumCPU() || l.BootRetries != DefaultBootRetries || l.BootQueueTimeout != DefaultBootQueueTimeout {
		t.Errorf("host limits %+v", l)
	}
	mem, _ := memTotalMB()
	if l.MaxMemoryMB >= mem {
		t.Errorf("guest memory limit %d MB not below the host's %d MB", l.MaxMemoryMB, mem)
	}
}

func TestLimitsOr(t *testing.T) {
	def := Limits{MaxEnvironments: 10, MaxMemoryMB: 1000, MaxSnapshotBytes: 1 << 30, MaxBootsInFlight: 2, BootQueueTimeout: time.Second, BootRetries: 2}
	tests := []struct {
		name string
		in   Limits
		want Limits
	}{
		{"zero takes the host's", Limits{}, def},
		{"set values stay", Limits{MaxEnvironments: 5, BootRetries: 1}, Limits{MaxEnvironments: 5, MaxMemoryMB: 1000, MaxSnapshotBytes: 1 << 30, MaxBootsInFlight: 2, BootQueueTimeout: time.Second, BootRetries: 1}},
		{"negative is no bound, kept", Limits{MaxMemoryMB: -1, BootRetries: -1}, Limits{MaxEnvironments: 10, MaxMemoryMB: -1, MaxSnapshotBytes: 1 << 30, MaxBootsInFlight: 2, BootQueueTimeout: time.Second, BootRetries: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Or(def); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
