package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testvm"
)

// run runs the CLI in-process and returns its exit code and output.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	return runStdin(t, env, "", args...)
}

// runStdin is run with stdin.
func runStdin(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &CLI{Stdout: &stdout, Stderr: &stderr, Stdin: strings.NewReader(stdin), Getenv: func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := c.Run(ctx, args)
	return code, stdout.String(), stderr.String()
}

// Bad input is refused before any VM starts, with Lambda's error names.
func TestRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	notZip := filepath.Join(dir, "not.zip")
	bigEvent := filepath.Join(dir, "big.json")
	fakeKernel := filepath.Join(dir, "vmlinux")
	for p, body := range map[string]string{
		notZip:     "definitely not a zip",
		bigEvent:   `"` + strings.Repeat("a", 7<<20) + `"`,
		fakeKernel: "\x7fELF fake kernel",
	} {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hello := testvm.FunctionZip(t, "./examples/hello")
	agent := testvm.Agent(t)
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"not a zip", nil, []string{"run", "--zip", notZip}, ExitBadInput, "InvalidParameterValueException: Could not unzip"},
		{"missing zip", nil, []string{"run", "--zip", filepath.Join(dir, "nope.zip")}, ExitBadInput, "cannot read code package"},
		{"event over 6 MB", nil, []string{"run", "--zip", hello, "--payload", "file://" + bigEvent}, ExitBadInput, "RequestTooLargeException"},
		{"event not JSON", nil, []string{"run", "--zip", hello, "--payload", "{nope"}, ExitBadInput, "not valid JSON"},
		{"memory out of range", nil, []string{"run", "--zip", hello, "--memory", "64"}, ExitBadInput, "MemorySize must be between 128 and 10240"},
		{"timeout out of range", nil, []string{"run", "--zip", hello, "--timeout", "901"}, ExitBadInput, "Timeout must be between 1 and 900"},
		{"missing kernel", nil, []string{"run", "--zip", hello, "--kernel", filepath.Join(dir, "no-kernel")}, ExitHostError, "no guest kernel found"},
		{"missing QEMU", map[string]string{"HEARTH_QEMU": filepath.Join(dir, "no-qemu")},
			[]string{"run", "--zip", hello, "--kernel", fakeKernel, "--agent", agent}, ExitHostError, "apt-get install qemu-system-x86"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.env, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// --payload reaches the function.
func TestRunHello(t *testing.T) {
	testvm.Driver(t)
	code, stdout, stderr := run(t, nil, "run", "--zip", testvm.FunctionZip(t, "./examples/hello"),
		"--agent", testvm.Agent(t), "--accel", "tcg", "--payload", `{"name":"Ada"}`)
	if code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if strings.TrimSpace(stdout) != `{"message":"Hello, Ada!","function":"hello"}` {
		t.Errorf("stdout %q", stdout)
	}
	for _, field := range []string{"REPORT RequestId: ", "\tDuration: ", "\tBilled Duration: ", "\tMemory Size: 128 MB",
		"\tInit Duration: ", "\tPlatform Init: ", "\tVMM Start: ", "\tKernel Boot: "} {
		if !strings.Contains(stderr, field) {
			t.Errorf("REPORT line lacks %q; stderr:\n%s", field, stderr)
		}
	}
}

// The deprecated --event still works, and says so on stderr only.
func TestRunFunctionError(t *testing.T) {
	testvm.Driver(t)
	code, stdout, stderr := run(t, nil, "run", "--zip", testvm.FunctionZip(t, "./internal/testfunction"),
		"--agent", testvm.Agent(t), "--accel", "tcg", "--event", `{"action":"error"}`)
	if code != ExitFunctionError {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, ExitFunctionError, stderr)
	}
	if !strings.Contains(stderr, "--event is deprecated; use --payload") {
		t.Errorf("no deprecation notice on stderr:\n%s", stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(stdout), &obj); err != nil {
		t.Fatalf("stdout %q is not an error object: %v", stdout, err)
	}
	if obj["errorMessage"] != "testfn was asked to fail" || obj["errorType"] != "errorString" {
		t.Errorf("error object %v", obj)
	}
	if !strings.Contains(stderr, "REPORT RequestId: ") {
		t.Errorf("no REPORT line on stderr:\n%s", stderr)
	}
}

func TestBenchColdJSON(t *testing.T) {
	testvm.Driver(t)
	code, stdout, stderr := run(t, nil, "bench", "cold", "-n", "1", "--json", "--zip", testvm.FunctionZip(t, "./examples/hello"),
		"--agent", testvm.Agent(t), "--accel", "tcg")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	for _, k := range []string{"vmm_start_p50_ms", "kernel_boot_p50_ms", "runtime_init_p50_ms", "first_invoke_p50_ms", "cold_total_p90_ms"} {
		if v, ok := out[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, out[k])
		}
	}
}

func TestConfigFileGivesDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/config.json"
	if err := os.WriteFile(cfg, []byte(`{"dataDir":"/from/config","endpoint":"http://10.1.2.3:9000"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name             string
		env              map[string]string
		wantData, wantEP string
	}{
		{"config file", map[string]string{"HEARTH_CONFIG": cfg, "HEARTH_DATA_DIR": "", "HEARTH_ENDPOINT": ""}, "/from/config", "http://10.1.2.3:9000"},
		{"environment wins", map[string]string{"HEARTH_CONFIG": cfg, "HEARTH_DATA_DIR": "/from/env", "HEARTH_ENDPOINT": "http://env:1"}, "/from/env", "http://env:1"},
		{"no config file", map[string]string{"HEARTH_CONFIG": dir + "/none.json", "HEARTH_DATA_DIR": "", "HEARTH_ENDPOINT": ""}, "", "http://127.0.0.1:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &CLI{Getenv: func(k string) string { return tt.env[k] }}
			root := c.root()
			cmd, _, err := root.Find([]string{"fn", "list"})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.dataDir(cmd); tt.wantData != "" && got != tt.wantData {
				t.Errorf("data dir %q, want %q", got, tt.wantData)
			}
			if got := c.endpoint(cmd); got != tt.wantEP {
				t.Errorf("endpoint %q, want %q", got, tt.wantEP)
			}
		})
	}
	c := &CLI{Getenv: func(k string) string { return map[string]string{"HEARTH_CONFIG": cfg + ".broken"}[k] }}
	if err := os.WriteFile(cfg+".broken", []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.config(); err == nil || !strings.Contains(err.Error(), "config.json.broken") {
		t.Errorf("broken config: %v", err)
	}
}

func TestBenchLoadAndURLJSON(t *testing.T) {
	testvm.Driver(t)
	hello := testvm.FunctionZip(t, "./examples/hello")
	tests := []struct {
		args []string
		keys func(out map[string]any) []float64
	}{
		{[]string{"bench", "load", "--concurrency", "1", "--duration", "1s"}, func(out map[string]any) []float64 {
			l := out["levels"].([]any)[0].(map[string]any)
			// Each call's host share is measured by the daemon, beside
			// the guest's part.
			hs := l["host_share"].(map[string]any)
			return []float64{l["hearth"].(map[string]any)["requests"].(float64), l["direct"].(map[string]any)["requests"].(float64),
				hs["calls"].(float64), hs["p50_us"].(float64), hs["guest_p50_us"].(float64)}
		}},
		{[]string{"bench", "url", "--duration", "1s"}, func(out map[string]any) []float64 {
			var n []float64
			for _, p := range out["paths"].([]any) {
				n = append(n, p.(map[string]any)["result"].(map[string]any)["requests"].(float64))
			}
			return n
		}},
	}
	for _, tt := range tests {
		t.Run(tt.args[1], func(t *testing.T) {
			args := append(tt.args, "--json", "--zip", hello, "--agent", testvm.Agent(t), "--accel", "tcg")
			code, stdout, stderr := run(t, nil, args...)
			if code != ExitOK {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(stdout), &out); err != nil {
				t.Fatalf("stdout %q: %v", stdout, err)
			}
			for i, n := range tt.keys(out) {
				if n <= 0 {
					t.Errorf("path %d made no requests: %s", i, stdout)
				}
			}
		})
	}
}
