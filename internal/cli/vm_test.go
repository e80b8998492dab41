package cli

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/api"
)

// vmEnv is a daemon's API with the fake MicroVMs on loopback, and the
// environment that points the CLI at it.
func vmEnv(t *testing.T) (map[string]string, *api.FakeMicroVMs) {
	t.Helper()
	f := api.NewFakeMicroVMs()
	a := api.New(api.Config{Keys: vmKeys{"AKIDTEST": "secret"}, Region: "local", MicroVMs: f})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	return map[string]string{"HEARTH_ENDPOINT": srv.URL, "HEARTH_DATA_DIR": dir, "HEARTH_CONFIG": filepath.Join(dir, "none.json"),
		"AWS_SHARED_CREDENTIALS_FILE": "", "AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret"}, f
}

type vmKeys map[string]string

func (k vmKeys) Secret(id string) (string, bool) { s, ok := k[id]; return s, ok }

func TestVMCommands(t *testing.T) {
	env, f := vmEnv(t)
	code, out, errs := run(t, env, "vm", "image", "create", "agent", "--image", "127.0.0.1:5000/agent:v1", "--memory", "1024", "--hook-port", "9000", "--env", "A=1")
	if code != 0 || !strings.Contains(out, "microvm-image:agent version 1: CREATED") {
		t.Fatalf("image create: %d %q %q", code, out, errs)
	}
	code, out, errs = run(t, env, "vm", "image", "get", "agent", "1", "-o", "json")
	var ver map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ver) != nil || ver["status"] != "ACTIVE" {
		t.Fatalf("image get: %d %q %q", code, out, errs)
	}
	if h, _ := ver["hooks"].(map[string]any); h["port"] != 9000.0 {
		t.Errorf("hooks = %v", ver["hooks"])
	}

	payload := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(payload, []byte(`{"tenant":"a"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(t, env, "vm", "run", "agent", "--idle", "5m", "--suspended", "24h", "--auto-resume", "--max-duration", "10h", "--payload", "@"+payload)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], "http://") {
		t.Fatalf("run: %d %q %q", code, out, errs)
	}
	id := lines[0]
	code, out, _ = run(t, env, "vm", "get", id, "-o", "json")
	var vm map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &vm) != nil {
		t.Fatalf("get: %d %q", code, out)
	}
	ip, _ := vm["idlePolicy"].(map[string]any)
	if ip["maxIdleDurationSeconds"] != 300.0 || ip["suspendedDurationSeconds"] != 86400.0 || ip["autoResumeEnabled"] != true || vm["maximumDurationInSeconds"] != 36000.0 {
		t.Errorf("run sent %v", vm)
	}

	code, out, _ = run(t, env, "vm", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "RUNNING") {
		t.Errorf("list: %d %q", code, out)
	}
	code, out, _ = run(t, env, "vm", "token", id, "--ports", "9000-9010", "--expires", "30m")
	if code != 0 || !strings.HasPrefix(out, "tok-") {
		t.Errorf("token: %d %q", code, out)
	}
	if tk := f.Tokens[len(f.Tokens)-1]; tk.Ports[0].Start != 9000 || tk.Ports[0].End != 9010 || tk.TTL.Minutes() != 30 {
		t.Errorf("token minted with %+v", tk)
	}
	if code, _, errs = run(t, env, "vm", "token", id, "--port", "1", "--all-ports"); code != ExitBadInput {
		t.Errorf("token with two port flags: %d %q", code, errs)
	}

	// exec streams, feeds stdin, and exits with the program's status.
	code, out, _ = runStdin(t, env, "from stdin\n", "vm", "exec", id, "--", "/bin/cat")
	if code != 0 || out != "from stdin\n" {
		t.Errorf("exec cat: %d %q", code, out)
	}
	code, out, errs = run(t, env, "vm", "exec", id, "--env", "K=V", "--", "/bin/echo", "hi")
	if code != 0 || out != "hi\n" || !strings.Contains(errs, "env: K=V") {
		t.Errorf("exec echo: %d %q %q", code, out, errs)
	}
	if code, _, _ = run(t, env, "vm", "exec", id, "--", "/bin/false"); code != 1 {
		t.Errorf("exec false: exit %d", code)
	}

	// cp both ways, ls, rm.
	local := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(local, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs = run(t, env, "vm", "cp", local, id+":/tmp/"); code != 0 {
		t.Fatalf("cp up: %d %q", code, errs)
	}
	code, out, _ = run(t, env, "vm", "ls", id+":/tmp")
	if code != 0 || !strings.Contains(out, "data.csv") {
		t.Errorf("ls: %d %q", code, out)
	}
	back := filepath.Join(t.TempDir(), "back.csv")
	if code, _, errs = run(t, env, "vm", "cp", id+":/tmp/data.csv", back); code != 0 {
		t.Fatalf("cp down: %d %q", code, errs)
	}
	if b, err := os.ReadFile(back); err != nil || string(b) != "a,b\n1,2\n" {
		t.Errorf("copied back %q, %v", b, err)
	}
	if code, out, _ = run(t, env, "vm", "cp", id+":/tmp/data.csv", "-"); code != 0 || out != "a,b\n1,2\n" {
		t.Errorf("cp to stdout: %d %q", code, out)
	}
	if code, _, _ = run(t, env, "vm", "rm", id+":/tmp/data.csv"); code != 0 {
		t.Errorf("rm: %d", code)
	}
	if code, _, errs = run(t, env, "vm", "ls", id+":/tmp/data.csv"); code != ExitBadInput || !strings.Contains(errs, "ResourceNotFoundException") {
		t.Errorf("ls after rm: %d %q", code, errs)
	}
	if code, _, errs = run(t, env, "vm", "cp", "a", "b"); code != ExitBadInput {
		t.Errorf("cp of two local paths: %d %q", code, errs)
	}

	for _, op := range []string{"suspend", "resume", "terminate", "terminate"} {
		if code, _, errs = run(t, env, "vm", op, id); code != 0 {
			t.Errorf("%s: %d %q", op, code, errs)
		}
	}
	if code, _, errs = run(t, env, "vm", "resume", id); code != ExitBadInput || !strings.Contains(errs, "ConflictException") {
		t.Errorf("resume of a terminated MicroVM: %d %q", code, errs)
	}
	if code, _, errs = run(t, env, "vm", "get", "nope"); code != ExitBadInput || !strings.Contains(errs, "ResourceNotFoundException") {
		t.Errorf("get nope: %d %q", code, errs)
	}
	if code, out, _ = run(t, env, "vm", "image", "list"); code != 0 || !strings.Contains(out, "agent") {
		t.Errorf("image list: %d %q", code, out)
	}
	if code, _, errs = run(t, env, "vm", "image", "delete", "agent"); code != 0 {
		t.Errorf("image delete: %d %q", code, errs)
	}
}
