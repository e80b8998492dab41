package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// The images the image retention keeps are those the folders of
// environments and templates name, wherever the daemon and `hearth env`
// keep them, a MicroVM image's template one level down included.
func TestImagesNamedByFolders(t *testing.T) {
	data, files := t.TempDir(), t.TempDir()
	kernel := filepath.Join(files, "vmlinux")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := fakevmm.New()
	want := map[string]bool{}
	for _, dir := range []string{"envs", "snapstart", filepath.Join("microvms", "templates"), "microvms", "templates"} {
		initrd := filepath.Join(files, filepath.Base(dir)+"-"+filepath.Dir(dir)+".cpio")
		if err := os.WriteFile(initrd, []byte(dir), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := sandbox.Config{VMM: v, Dir: filepath.Join(data, dir), BootTimeout: 5 * time.Second}
		env, err := sandbox.Boot(context.Background(), cfg, sandbox.Function{Name: "f", MemoryMB: 128, Timeout: time.Second},
			sandbox.Image{Kernel: &guestimage.Kernel{Path: kernel}, Initrd: initrd})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Close(context.Background()) })
		want[initrd] = true
	}
	got := imagesNamed(data)
	for p := range want {
		if !got[p] {
			t.Errorf("%s not named; named: %v", p, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("named %v, want %v", got, want)
	}
}
