package main

import (
	"os/exec"
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
		"github.com/google/go-containerregistry", "github.com/Microsoft/hcsshim", "github.com/hearthdev/hearth/internal/rootfs"}
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
