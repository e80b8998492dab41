package server

import (
	"errors"
	"math"
	"testing"

	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// withReady gives h the code images and roots ready of keys.
func withReady(h cluster.HostStatus, code []string, roots ...string) cluster.HostStatus {
	h.Load.Ready = &cluster.Ready{Code: code, Roots: roots}
	return h
}

func withCPU(h cluster.HostStatus, cpu float64) cluster.HostStatus {
	h.Load.CPU = cpu
	return h
}

func TestPlaceColdStartWhereReady(t *testing.T) {
	zip := want{Function: "f", MemoryMB: 128, Code: "c0de"}
	image := want{Function: "f", MemoryMB: 128, Root: "r00t"}
	zipOnImage := want{Function: "f", MemoryMB: 128, Code: "c0de", Root: "r00t"}
	code := []string{"other", "c0de"}
	tests := []struct {
		name  string
		want  want
		hosts []cluster.HostStatus
		on    string
	}{
		{"nowhere ready: here, as before", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none), host("b", 0, 0, 1000, none)}, "a"},
		{"ready there, not here: there", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none), withReady(host("b", 0, 0, 1000, none), code)}, "b"},
		{"ready here and there: here", zip, []cluster.HostStatus{withReady(host("a", 0, 0, 1000, none), code),
			withReady(host("b", 0, 0, 1000, none), code)}, "a"},
		{"ready on two: the less loaded", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 2, 0, 1000, none), code), withReady(host("c", 1, 0, 1000, none), code)}, "c"},
		{"another function's code: not ready", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 0, 1000, none), []string{"other"})}, "a"},
		{"ready there, somewhat busier: there", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", readySlack, 0, 1000, none), code)}, "b"},
		{"ready there but overloaded in flight: here", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", readySlack+1, 0, 1000, none), code)}, "a"},
		{"ready there but overloaded: the least loaded elsewhere", zip, []cluster.HostStatus{host("a", 5, 0, 1000, none),
			withReady(host("b", 9, 0, 1000, none), code), host("c", 1, 0, 1000, none)}, "c"},
		{"ready there, memory high there only: here", zip, []cluster.HostStatus{host("a", 0, 100, 1000, none),
			withReady(host("b", 0, 800, 1000, none), code)}, "a"},
		{"ready there, memory high everywhere: there", zip, []cluster.HostStatus{host("a", 0, 800, 1000, none),
			withReady(host("b", 0, 820, 1000, none), code)}, "b"},
		{"ready there, no room there: here", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 900, 1000, none), code)}, "a"},
		{"ready there, CPU saturated there: here", zip, []cluster.HostStatus{withCPU(host("a", 0, 0, 1000, none), 0.2),
			withCPU(withReady(host("b", 0, 0, 1000, none), code), 0.97)}, "a"},
		{"ready there, CPU saturated everywhere: there", zip, []cluster.HostStatus{withCPU(host("a", 0, 0, 1000, none), 0.95),
			withCPU(withReady(host("b", 0, 0, 1000, none), code), 0.97)}, "b"},
		{"ready there, CPU busy but not saturated: there", zip, []cluster.HostStatus{withCPU(host("a", 0, 0, 1000, none), 0.1),
			withCPU(withReady(host("b", 0, 0, 1000, none), code), 0.8)}, "b"},
		{"nowhere ready, CPU saturated here: there", zip, []cluster.HostStatus{withCPU(host("a", 0, 0, 1000, none), 0.95),
			withCPU(host("b", 1, 0, 1000, none), 0.5)}, "b"},
		{"CPUs measured a moment apart: a tie, here", zip, []cluster.HostStatus{withCPU(host("a", 0, 0, 1000, none), 0.92),
			withCPU(host("b", 0, 0, 1000, none), 0.75)}, "a"},
		{"image root cached there: there", image, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 0, 1000, none), nil, "r00t")}, "b"},
		{"another image's root: here", image, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 0, 1000, none), nil, "other")}, "a"},
		{"code without the root is not ready", zipOnImage, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 0, 1000, none), code), withReady(host("c", 0, 0, 1000, none), nil, "r00t")}, "a"},
		{"code and root: ready", zipOnImage, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			withReady(host("b", 0, 0, 1000, none), code), withReady(host("c", 0, 0, 1000, none), code, "r00t")}, "c"},
		{"a function every host can start: the least loaded", want{Function: "f", MemoryMB: 128}, []cluster.HostStatus{
			host("a", 1, 0, 1000, none), withReady(host("b", 0, 0, 1000, none), code)}, "b"},
		{"ready but down: never", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(withReady(host("b", 0, 0, 1000, none), code), func(h *cluster.HostStatus) { h.State = cluster.StateDown })}, "a"},
		{"ready but draining: never", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(withReady(host("b", 0, 0, 1000, none), code), func(h *cluster.HostStatus) { h.Draining = true })}, "a"},
		{"ready but drain requested: never", zip, []cluster.HostStatus{host("a", 0, 0, 1000, none),
			with(withReady(host("b", 0, 0, 1000, none), code), func(h *cluster.HostStatus) { h.DrainRequested = true })}, "a"},
		{"ready but stopped: the other", zip, []cluster.HostStatus{host("a", 3, 0, 1000, none),
			with(withReady(host("b", 0, 0, 1000, none), code), func(h *cluster.HostStatus) { h.Stopped = true }),
			host("c", 0, 0, 1000, none)}, "c"},
		{"ready here but drained here: there", zip, []cluster.HostStatus{
			with(withReady(host("a", 0, 0, 1000, none), code), func(h *cluster.HostStatus) { h.Draining = true }),
			host("b", 0, 0, 1000, none)}, "b"},
		{"warm elsewhere still beats ready", zip, []cluster.HostStatus{withReady(host("a", 0, 0, 1000, none), code),
			host("b", 0, 0, 1000, warm)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := place("a", tt.hosts, tt.want); got != tt.on {
				t.Errorf("placed on %q, want %q", got, tt.on)
			}
		})
	}
}

func TestColdStartKeys(t *testing.T) {
	fn := scheduler.Function{Function: sandbox.Function{Name: "f", MemoryMB: 256}, CodeDigest: "ab12", LayerDigests: []string{"l1"}}
	w := coldStart(fn)
	if w.Code != cluster.CodeKey("ab12", []string{"l1"}) || w.Code == cluster.CodeKey("ab12", nil) || w.Root != "" || w.MemoryMB != 256 {
		t.Errorf("zip function: %+v", w)
	}
	fn = scheduler.Function{Function: sandbox.Function{Name: "f", Root: &sandbox.Root{Digest: "sha256:0123456789abcdef0123"}}}
	if w := coldStart(fn); w.Code != "" || w.Root != "0123456789abcdef" {
		t.Errorf("image function: %+v", w)
	}
	fn.Root.Digest = "python3.12@abc"
	if w := coldStart(fn); w.Root != "" {
		t.Errorf("a managed runtime's root is on every host: %+v", w)
	}
}

func TestCPUMeter(t *testing.T) {
	var busy, total uint64
	fail := false
	m := &cpuMeter{read: func() (uint64, uint64, error) {
		if fail {
			return 0, 0, errors.New("no /proc")
		}
		return busy, total, nil
	}}
	step := func(b, tot uint64) float64 {
		busy, total = busy+b, total+tot
		m.mu.Lock()
		m.at = m.at.Add(-cpuEvery) // as if a second went by
		m.mu.Unlock()
		return m.Share()
	}
	if got := m.Share(); got != 0 {
		t.Fatalf("first reading: %v, want 0 (nothing measured yet)", got)
	}
	if got := step(90, 100); math.Abs(got-0.9) > 1e-9 {
		t.Errorf("90 of 100 busy: %v", got)
	}
	if got := step(10, 100); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("then 10 of 100: smoothed %v, want 0.5", got)
	}
	fail = true
	if got := step(0, 0); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("unreadable: %v, want the last measure", got)
	}
	if (*cpuMeter)(nil).Share() != 0 {
		t.Error("a nil meter knows nothing")
	}
	if b, tot, err := parseCPULine("cpu  100 5 20 800 50 3 2 0 0 0\n"); err != nil || b != 130 || tot != 980 {
		t.Errorf("parse: %d %d %v", b, tot, err)
	}
	if _, _, err := parseCPULine("intr 1 2 3"); err == nil {
		t.Error("not a cpu line: no error")
	}
	if b, tot, err := procStat(); err != nil || tot == 0 || b > tot {
		t.Errorf("this machine's /proc/stat: %d %d %v", b, tot, err)
	}
}
