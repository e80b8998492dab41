package ociimage

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// A program's image holds its folders and the program, with its config;
// the same input makes the same digest.
func TestProgram(t *testing.T) {
	img, err := Program("srv", []byte("\x7fELF"), v1.Config{Env: []string{"A=1"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/app/srv" ||
		cf.Config.WorkingDir != "/app" || cf.Config.Env[0] != "A=1" || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("config %+v", cf)
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimSuffix(h.Name, "/")] = h
	}
	for name, mode := range map[string]int64{"app": 0o755, "tmp": 0o1777, "var/task": 0o755, "app/srv": 0o755} {
		if h := got[name]; h == nil || h.Mode != mode {
			t.Errorf("%s: %+v, want mode %o", name, h, mode)
		}
	}
	again, _ := Program("srv", []byte("\x7fELF"), v1.Config{Env: []string{"A=1"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}})
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("digests %s and %s of the same input", d1, d2)
	}
}
