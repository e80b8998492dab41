package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// The daemon's verbs, as a user types them, against a daemon in-process.
func TestDaemonVerbs(t *testing.T) {
	d := startCLIDaemon(t)
	srv, env := d.srv, d.env
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		return d.hearth(t, wantCode, args...)
	}
	zip := testvm.FunctionZip(t, "./examples/counter")
	hearth(ExitOK, "fn", "create", "counter", "--zip", zip, "--memory", "256", "--keep-warm", "1s")
	out, errOut := hearth(ExitOK, "invoke", "counter")
	if !strings.Contains(out, `"count":1`) || !strings.Contains(errOut, "cold start") {
		t.Errorf("first invoke: %s %s", out, errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for srv.Scheduler().Stats().Suspended != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out, errOut = hearth(ExitOK, "invoke", "counter")
	if !strings.Contains(out, `"count":2`) || !strings.Contains(errOut, "resume start") {
		t.Errorf("invoke after the 1 s keep-warm: %s %s", out, errOut)
	}
	out, _ = hearth(ExitOK, "fn", "list", "-o", "json")
	var list struct {
		Functions []struct{ FunctionName string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Functions) != 1 || list.Functions[0].FunctionName != "counter" {
		t.Errorf("fn list: %s %v", out, err)
	}
	hearth(ExitOK, "fn", "update-config", "counter", "--memory", "512")
	if out, _ = hearth(ExitOK, "fn", "get", "counter", "-o", "json"); !strings.Contains(out, `"MemorySize": 512`) {
		t.Errorf("fn get after update: %s", out)
	}
	if out, _ = hearth(ExitOK, "logs", "counter", "--tail", "20"); !strings.Contains(out, "REPORT RequestId: ") {
		t.Errorf("logs: %s", out)
	}
	out, _ = hearth(ExitOK, "cost", "-o", "json")
	var rep struct {
		Functions []map[string]any `json:"functions"`
		Total     map[string]any   `json:"total"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Functions) != 1 {
		t.Fatalf("cost: %s %v", out, err)
	}
	for _, k := range []string{"name", "requests", "gb_seconds", "cost", "always_on_cost", "no_suspend_cost"} {
		if _, ok := rep.Functions[0][k]; !ok {
			t.Errorf("cost JSON lacks %s: %v", k, rep.Functions[0])
		}
	}
	if rep.Functions[0]["requests"] != float64(2) || rep.Total["requests"] != float64(2) {
		t.Errorf("cost requests: %v / %v", rep.Functions[0]["requests"], rep.Total["requests"])
	}
	if out, _ = hearth(ExitOK, "cost", "counter"); !strings.Contains(out, "always-on $") || !strings.Contains(out, "counter") {
		t.Errorf("cost table: %s", out)
	}
	if out, _ = hearth(ExitOK, "top", "--once"); !strings.Contains(out, "counter") || !strings.Contains(out, "invocations by start type:") ||
		!strings.Contains(out, "cold 1") || !strings.Contains(out, "resume 1") {
		t.Errorf("top: %s", out)
	}
	hearth(ExitOK, "keys", "rotate")
	// New code (hello's), so a new env; --payload reaches it, from stdin too.
	hearth(ExitOK, "fn", "update-code", "counter", "--zip", testvm.FunctionZip(t, "./examples/hello"))
	if out, _ = hearth(ExitOK, "invoke", "counter", "--payload", `{"name":"Ada"}`); !strings.Contains(out, `"message":"Hello, Ada!"`) {
		t.Errorf("invoke with the rotated key: %s", out)
	}
	if code, out, errOut := runStdin(t, env, `{"name":"Grace"}`, "invoke", "counter", "--payload", "-"); code != ExitOK || !strings.Contains(out, `"message":"Hello, Grace!"`) {
		t.Errorf("invoke --payload -: exit %d, %s %s", code, out, errOut)
	}
	hearth(ExitOK, "fn", "delete", "counter")
	if _, errOut = hearth(ExitBadInput, "invoke", "counter"); !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("invoke after delete: %s", errOut)
	}
}

// cliDaemon is a daemon in-process on a fresh data folder, and the hearth
// CLI pointed at it: hearth runs a command and checks its exit code.
type cliDaemon struct {
	srv  *server.Server
	data string
	env  map[string]string
}

func startCLIDaemon(t *testing.T) *cliDaemon {
	t.Helper()
	testvm.Driver(t)
	data := t.TempDir()
	// KeepPaused -1: these tests follow warm → suspended; the paused tier
	// between is tested in the scheduler and the sandbox.
	srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0", KeepPaused: -1,
		Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		_ = network.RemoveEnvNetworks(filepath.Join(data, "envs"))
	})
	return &cliDaemon{srv: srv, data: data,
		env: map[string]string{"HEARTH_DATA_DIR": data, "HEARTH_ENDPOINT": "http://" + srv.Addr(), "AWS_SHARED_CREDENTIALS_FILE": ""}}
}

func (d *cliDaemon) hearth(t *testing.T, wantCode int, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := run(t, d.env, args...)
	if code != wantCode {
		t.Fatalf("hearth %v: exit %d, want %d\n%s%s", args, code, wantCode, out, errOut)
	}
	return out, errOut
}
