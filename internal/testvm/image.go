package testvm

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearthdev/hearth/internal/ociimage"
)

// FunctionImage builds the Go function at pkg statically into a container
// image for linux/amd64: the binary is /app/<name> (mode 0755), the
// ENTRYPOINT, with WORKDIR /app, the ENV given, and the folders Lambda's
// contract and the guest need (/tmp, /proc, /sys, /dev, /var/task).
func FunctionImage(t testing.TB, pkg string, env ...string) v1.Image {
	t.Helper()
	name := filepath.Base(pkg)
	dir := filepath.Join(workDir(t), "img-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(build(t, pkg, filepath.Join(dir, name), "-s -w"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Program(name, bin, v1.Config{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return img
}
