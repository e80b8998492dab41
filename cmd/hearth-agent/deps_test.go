package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The agent is copied into every initramfs and starts every cold boot: keep
// the host's heavy dependencies out of it.
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"modernc.org/sqlite", "github.com/prometheus/", "github.com/aws/aws-sdk-go-v2", "github.com/spf13/cobra",
		"github.com/hearthdev/hearth/internal/sandbox", "github.com/hearthdev/hearth/internal/vmm",
		"github.com/google/go-containerregistry", "github.com/Microsoft/hcsshim", "github.com/hearthdev/hearth/internal/rootfs",
		// The Runtime API has its own small HTTP/1.1 (runtimeapi/http.go):
		// net/http and the TLS, x509 and HTTP/2 code it brings were half
		// of the binary.
		"net/http", "crypto/tls", "crypto/x509", "vendor/golang.org/x/net/http2"}
	for _, dep := range strings.Split(string(out), "\n") {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("hearth-agent links %s", dep)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/hearthdev/hearth/internal/agent\n") {
		t.Errorf("go list did not list the agent package; output:\n%s", out)
	}
}

// maxAgentBytes bounds the agent as `make build` builds it (static,
// -trimpath, -s -w). Every cold boot unpacks it from the initramfs into the
// guest's page cache, where it stays in the memory a suspended environment
// keeps on disk. It was 6.6 MB with net/http, 3.5 MB without.
const maxAgentBytes = 4 << 20

func TestAgentSize(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hearth-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > maxAgentBytes {
		t.Errorf("hearth-agent is %d bytes, over %d: what did it start to link?", fi.Size(), maxAgentBytes)
	}
	t.Logf("hearth-agent: %d bytes", fi.Size())
}
