package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/testvm"
)

// hearthProc runs the real hearth binary: each call is its own process, as
// a user's would be.
type hearthProc struct {
	t    *testing.T
	bin  string
	data string
}

func (h hearthProc) run(args ...string) (string, string, int) {
	h.t.Helper()
	return h.runStdin("", args...)
}

// runStdin is run with stdin.
func (h hearthProc) runStdin(stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if args[len(args)-1] != "json" { // every command but list runs VMs
		args = append(args, "--accel", "tcg")
	}
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = append(os.Environ(), "HEARTH_DATA_DIR="+h.data)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("hearth %v: %v", args, err)
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), code
}

func (h hearthProc) must(args ...string) (string, string) {
	h.t.Helper()
	out, errOut, code := h.run(args...)
	if code != 0 {
		h.t.Fatalf("hearth %v: exit %d\n%s", args, code, errOut)
	}
	return out, errOut
}

type envRow struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	PID   int    `json:"pid"`
}

func (h hearthProc) list() []envRow {
	h.t.Helper()
	out, _ := h.must("env", "list", "-o", "json")
	var rows []envRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		h.t.Fatalf("env list: %q: %v", out, err)
	}
	return rows
}

func count(t *testing.T, out string) int {
	t.Helper()
	var c struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("response %q: %v", out, err)
	}
	return c.Count
}

// The walk-through, every step its own hearth process: start,
// invoke, suspend (QEMU exits), invoke again (resumed by a new process),
// template and clones, then removal leaving nothing.
func TestEnvCommandsAcrossProcesses(t *testing.T) {
	testvm.Driver(t)
	h := hearthProc{t: t, bin: testvm.Hearth(t), data: t.TempDir()}
	zip := testvm.FunctionZip(t, "./examples/counter")
	netns := ""
	t.Cleanup(func() {
		for _, r := range h.list() {
			h.run("env", "rm", r.ID)
			if r.PID != 0 && testvm.Alive(r.PID) {
				t.Errorf("QEMU %d of %s still running after rm", r.PID, r.ID)
			}
		}
		if _, err := os.Stat(netns); netns != "" && err == nil {
			t.Errorf("%s left after env rm", netns)
		}
	})

	id, _ := h.must("env", "start", "--zip", zip)
	if !strings.HasPrefix(id, "env-") {
		t.Fatalf("env start printed %q, want an env id", id)
	}
	// As root, an environment has a network as the daemon's do, there
	// until env rm.
	if os.Geteuid() == 0 {
		netns = "/run/netns/" + network.NetnsPrefix + id
		if _, err := os.Stat(netns); err != nil {
			t.Errorf("env start made no network namespace: %v", err)
		}
	}
	out, _ := h.must("env", "invoke", id, "{}")
	if count(t, out) != 1 {
		t.Fatalf("first invoke: %s", out)
	}
	pid := h.list()[0].PID
	out, _ = h.must("env", "suspend", id)
	if !strings.Contains(out, "suspended "+id) || !strings.Contains(out, "QEMU "+strconv.Itoa(pid)+" exited") {
		t.Errorf("env suspend printed %q", out)
	}
	if testvm.Alive(pid) {
		t.Errorf("QEMU %d still running after suspend", pid)
	}
	if rows := h.list(); rows[0].State != "suspended" || rows[0].PID != 0 {
		t.Errorf("env list after suspend: %+v", rows[0])
	}
	out, errOut := h.must("env", "invoke", id, "{}")
	if count(t, out) != 2 {
		t.Fatalf("invoke after resume: %s", out)
	}
	if !strings.Contains(errOut, "Restore Duration: ") || !strings.Contains(errOut, "Start Type: resume") {
		t.Errorf("REPORT after a resume lacks the restore: %s", errOut)
	}
	out, _ = h.must("env", "invoke", id, "{}")
	if count(t, out) != 3 {
		t.Fatalf("warm invoke after resume: %s", out)
	}

	tpl, _ := h.must("env", "template", "--zip", zip)
	if !strings.HasPrefix(tpl, "tpl-") {
		t.Fatalf("env template printed %q", tpl)
	}
	for i := 0; i < 2; i++ {
		clone, _ := h.must("env", "clone", tpl)
		out, errOut := h.must("env", "invoke", clone, "{}")
		if count(t, out) != 1 || !strings.Contains(errOut, "Start Type: clone") {
			t.Errorf("clone %d: %s %s", i+1, out, errOut)
		}
	}
	if _, errOut, code := h.run("env", "invoke", "env-nosuchenv", "{}"); code != ExitBadInput || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("unknown env: exit %d, %s", code, errOut)
	}

	// The event reaches the function however it is given: --payload from a
	// file or stdin, or the older second argument.
	event := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(event, []byte(`{"name":"Ada"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	hello, _ := h.must("env", "start", "--zip", testvm.FunctionZip(t, "./examples/hello"))
	for _, tt := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"--payload", "file://" + event}, "Hello, Ada!"},
		{`{"name":"Grace"}`, []string{"--payload", "-"}, "Hello, Grace!"},
		{"", []string{`{"name":"Alan"}`}, "Hello, Alan!"},
	} {
		out, errOut, code := h.runStdin(tt.stdin, append([]string{"env", "invoke", hello}, tt.args...)...)
		if code != ExitOK || !strings.Contains(out, tt.want) {
			t.Errorf("env invoke %v: exit %d, %s %s; want %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

func TestBenchLifecycleJSON(t *testing.T) {
	testvm.Driver(t)
	code, stdout, stderr := run(t, nil, "bench", "lifecycle", "-n", "1", "--json",
		"--zip", testvm.FunctionZip(t, "./examples/hello"), "--large-zip", testvm.FunctionZip(t, "./examples/loaded"),
		"--large-mb", "16", "--agent", testvm.Agent(t), "--accel", "tcg")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	large, ok := out["large"].(map[string]any)
	if !ok {
		t.Fatalf("no large function in %s", stdout)
	}
	for name, obj := range map[string]map[string]any{"hello": out, "large": large} {
		for _, k := range []string{"cold_p50_ms", "resume_p50_ms", "clone_p50_ms", "warm_p50_ms", "suspend_p50_ms",
			"cold_over_resume", "cold_over_clone", "snapshot_disk_bytes", "running_host_rss_kib",
			"paused_p50_ms", "cold_over_paused", "paused_host_rss_kib", "resume_host_ms_p50", "resume_guest_ms_p50"} {
			if v, ok := obj[k].(float64); !ok || v <= 0 {
				t.Errorf("%s: %s = %v, want a positive number", name, k, obj[k])
			}
		}
		// A paused VMM holds less than a running one: its guest memory is
		// pushed out of host RAM.
		if p, r := obj["paused_host_rss_kib"].(float64), obj["running_host_rss_kib"].(float64); p >= r {
			t.Errorf("%s: paused RSS %v KiB, running %v KiB", name, p, r)
		}
		if obj["suspended_processes"] != float64(0) || obj["suspended_host_rss_kib"] != float64(0) {
			t.Errorf("%s: a suspended env holds %v processes, %v KiB", name, obj["suspended_processes"], obj["suspended_host_rss_kib"])
		}
	}
}
