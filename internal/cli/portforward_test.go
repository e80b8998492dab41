package cli

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testvm"
)

func TestParseForward(t *testing.T) {
	for _, tt := range []struct {
		in           string
		local, guest int
		ok           bool
	}{
		{"8080:80", 8080, 80, true},
		{"0:8081", 0, 8081, true},
		{"8080", 0, 0, false},
		{"8080:0", 0, 0, false},
		{"-1:80", 0, 0, false},
		{"8080:65536", 0, 0, false},
		{"a:80", 0, 0, false},
	} {
		l, g, err := parseForward(tt.in)
		if (err == nil) != tt.ok || l != tt.local || g != tt.guest {
			t.Errorf("parseForward(%q) = %d, %d, %v", tt.in, l, g, err)
		}
	}
}

// A detached environment started by one process is reached through another
// that forwards a local port to a server in the guest; the forward ends on
// an interrupt and the environment runs on.
func TestEnvPortForward(t *testing.T) {
	testvm.Driver(t)
	h := hearthProc{t: t, bin: testvm.Hearth(t), data: t.TempDir()}
	t.Cleanup(func() {
		for _, r := range h.list() {
			h.run("env", "rm", r.ID)
		}
	})
	id, _ := h.must("env", "start", "--zip", testvm.FunctionZip(t, "./internal/testfunction"),
		"--memory", "256", "--env", "TESTFN_SERVERS=1")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, "env", "port-forward", id, "0:8081", "--accel", "tcg")
	cmd.Env = append(os.Environ(), "HEARTH_DATA_DIR="+h.data)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("port-forward printed %q: %v\n%s", line, err, stderr.String())
	}
	// "forwarding 127.0.0.1:PORT -> ENV:8081"
	fields := strings.Fields(line)
	if len(fields) != 4 || !strings.HasPrefix(fields[1], "127.0.0.1:") {
		t.Fatalf("port-forward printed %q", line)
	}
	for range 3 {
		resp, err := http.Get("http://" + fields[1] + "/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("port-forward after an interrupt: %v\n%s", err, stderr.String())
	}
	// The environment runs on and another process attaches to it.
	if out, _ := h.must("env", "invoke", id, `{"action":"echo"}`); !strings.Contains(out, "echo") {
		t.Errorf("invoke after port-forward: %s", out)
	}
}
