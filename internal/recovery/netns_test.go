package recovery

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/network"
	"github.com/hearthdev/hearth/internal/store"
)

// The namespaces of the environments a daemon ends or sweeps at start go
// with them; an adopted one's stays, and so does a namespace of an
// environment not in this data folder (another daemon's).
func TestRunRemovesEnvNetworks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root: run the tests as root, as .ci/run does")
	}
	data := t.TempDir()
	envs := filepath.Join(data, "envs")
	tag := fmt.Sprintf("%d", os.Getpid())
	ended, swept, adopted, other := "env-ended"+tag, "env-swept"+tag, "env-adopted"+tag, "env-other"+tag
	mkdir(t, filepath.Join(envs, ended), filepath.Join(envs, swept))
	manifest(t, filepath.Join(envs, adopted), "suspended", false)
	for _, id := range []string{ended, swept, adopted, other} {
		ns := network.NetnsPrefix + id
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = network.RemoveNetns(ns) })
	}
	recs := &fakeRecords{recs: []store.EnvRecord{
		{ID: ended, Dir: filepath.Join(envs, ended), State: "busy"},
		{ID: adopted, Dir: filepath.Join(envs, adopted), State: "suspended"},
	}}
	if _, err := Run(context.Background(), Config{Records: recs, Adopter: &fakeAdopter{ok: map[string]bool{adopted: true}}, EnvsDir: envs}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{ended: false, swept: false, adopted: true, other: true} {
		if got := exists("/run/netns/" + network.NetnsPrefix + id); got != want {
			t.Errorf("namespace of %s exists: %v, want %v", id, got, want)
		}
	}
}
