package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleMicroVMBench() *microVMBench {
	return &microVMBench{Image: "127.0.0.1:5000/testmicrovm:bench", Accel: "tcg", Kernel: "6.1 (built)", MemoryMiB: 256,
		Network: true, BuildMs: 12345.678,
		Run:          []float64{300, 100, 200},
		Request:      []float64{2, 1, 3},
		SuspendFirst: []float64{500, 400, 600},
		ResumeFirst:  []float64{1100, 900, 1000},
		Suspend:      []float64{50, 40, 60},
		Resume:       []float64{110, 90, 100},
		Cold:         []float64{1000, 3000, 2000},
		Exec:         []float64{5, 4, 6},
		Suspended: suspendedCost{Count: 10, QEMUProcesses: 0, HostQEMUBefore: 1, HostQEMUAfter: 1,
			DaemonRSSBeforeKiB: 50000, DaemonRSSAfterKiB: 51000, DiskBytes: 10 << 20, PageCacheKiB: 2048, TemplateDiskBytes: 1 << 20},
	}
}

// The JSON object has a p50 and p90 of each measure, the ratio resume/cold
// of the p50s, and the suspended MicroVMs' cost with its per-MicroVM
// shares.
func TestMicroVMBenchSummary(t *testing.T) {
	b, err := json.Marshal(sampleMicroVMBench().summary())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"runs": 3, "memory_mib": 256, "image_build_ms": 12345.68,
		"run_p50_ms": 200, "run_p90_ms": 300,
		"request_p50_ms": 2, "request_p90_ms": 3,
		"suspend_first_p50_ms": 500, "suspend_first_p90_ms": 600,
		"resume_request_first_p50_ms": 1000, "resume_request_first_p90_ms": 1100,
		"suspend_again_p50_ms": 50, "suspend_again_p90_ms": 60,
		"resume_request_again_p50_ms": 100, "resume_request_again_p90_ms": 110,
		"cold_boot_p50_ms": 2000, "cold_boot_p90_ms": 3000,
		"exec_p50_ms": 5, "exec_p90_ms": 6,
		"resume_first_over_cold": 0.5, "resume_again_over_cold": 0.05,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["network"] != true || got["accel"] != "tcg" {
		t.Errorf("network, accel = %v, %v", got["network"], got["accel"])
	}
	s, ok := got["suspended"].(map[string]any)
	if !ok {
		t.Fatalf("suspended = %v", got["suspended"])
	}
	wantS := map[string]float64{"count": 10, "qemu_processes": 0, "host_qemu_processes_before": 1, "host_qemu_processes_after": 1,
		"daemon_rss_before_kib": 50000, "daemon_rss_after_kib": 51000, "daemon_rss_per_microvm_kib": 100,
		"disk_bytes": 10 << 20, "disk_per_microvm_bytes": 1 << 20, "memory_page_cache_kib": 2048, "template_disk_bytes": 1 << 20}
	for k, v := range wantS {
		if s[k] != v {
			t.Errorf("suspended.%s = %v, want %v", k, s[k], v)
		}
	}
	if len(s) != len(wantS) {
		t.Errorf("suspended has %d keys, want %d: %v", len(s), len(wantS), s)
	}
}

// Without suspended MicroVMs (--suspended 0) there is no such object, and
// no cold boot gives no ratio rather than a division by zero.
func TestMicroVMBenchSummaryEmpty(t *testing.T) {
	b := sampleMicroVMBench()
	b.Suspended, b.Cold = suspendedCost{}, nil
	got := b.summary()
	if _, ok := got["suspended"]; ok {
		t.Error("a suspended object without suspended MicroVMs")
	}
	if got["resume_first_over_cold"] != 0.0 || got["resume_again_over_cold"] != 0.0 {
		t.Errorf("resume over cold = %v, %v, want 0", got["resume_first_over_cold"], got["resume_again_over_cold"])
	}
}

func TestMicroVMBenchTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleMicroVMBench().writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"3 runs, accel tcg", "with a network", "image built in 12346 ms",
		"run (RunMicrovm, from the template)  200.0  300.0",
		"request after auto-resume, first  1000.0  1100.0",
		"request after auto-resume, again  100.0  110.0",
		"cold boot to first response  2000.0  3000.0",
		"exec round trip  5.0  6.0",
		"request after auto-resume / cold boot: first 0.50x, again 0.05x",
		"10 suspended MicroVMs: 0 QEMU processes of theirs (host: 1 before, 1 after)",
		"(+100 KiB per MicroVM)",
		"10485760 bytes, 1048576 per MicroVM",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the table has no %q:\n%s", want, out)
		}
	}
}

// The app's memory is kept when the same instance answers with a
// further count; an image that answers no such JSON is not checked.
func TestAppReplySameProcess(t *testing.T) {
	tests := []struct {
		name       string
		prev, next appReply
		ok         bool
	}{
		{"kept", appReply{3, "a"}, appReply{4, "a"}, true},
		{"restarted", appReply{3, "a"}, appReply{1, "b"}, false},
		{"counter lost", appReply{3, "a"}, appReply{1, "a"}, false},
		{"other image", appReply{}, appReply{}, true},
	}
	for _, tt := range tests {
		if err := tt.prev.sameProcess(tt.next); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

// du counts allocated blocks: a sparse file's holes take nothing, a hard
// link is counted once.
func TestDuBytes(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Link(filepath.Join(dir, "memory"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	n := duBytes(dir)
	if n < 1<<20 || n > 2<<20 {
		t.Errorf("du = %d bytes, want about 1 MiB (a 64 MiB file with 1 MiB written, linked twice)", n)
	}
}

// The test image runs /app/testmicrovm from /app, exposing 8080.
func TestAppImage(t *testing.T) {
	img, err := appImage("testmicrovm", []byte("\x7fELF"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/app/testmicrovm" || cf.Config.WorkingDir != "/app" {
		t.Errorf("entrypoint %q workdir %q", got, cf.Config.WorkingDir)
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config = %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
}
