package microvm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package importable: it must not pull in
// Hearth's internal packages or the daemon's heavy dependencies.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/hearthdev/hearth/internal/", "sqlite", "prometheus", "qemu", "go-containerregistry", "grpc", "yamux", "cobra"} {
			if strings.Contains(dep, bad) {
				t.Errorf("client/microvm depends on %s", dep)
			}
		}
	}
}
