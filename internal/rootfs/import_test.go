package rootfs

import (
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// checkTestDisk checks a disk built from testImage: whiteout applied,
// executable kept.
func checkTestDisk(t *testing.T, root *Root) {
	t.Helper()
	if _, _, ok := lsLine(t, debugfs(t, root.Path, "ls -l /etc"), "secret"); ok {
		t.Errorf("/etc/secret survived its whiteout")
	}
	if mode, _, ok := lsLine(t, debugfs(t, root.Path, "ls -l /app"), "handler"); !ok || mode != "100755" {
		t.Errorf("/app/handler: mode %q present %v, want 100755", mode, ok)
	}
	if root.Config.WorkingDir != "/app" || len(root.Config.EntryPoint) != 1 {
		t.Errorf("Config = %+v", root.Config)
	}
	fsck(t, root.Path)
}

func TestImportDockerSaveTarball(t *testing.T) {
	img := testImage(t, "amd64")
	path := filepath.Join(t.TempDir(), "thumbs.tar")
	tag, err := name.NewTag("thumbs:v3")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, Options{})
	resolved, err := b.OpenTarball(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if resolved.Digest != want.String() || resolved.ResolvedURI != "" {
		t.Errorf("OpenTarball: digest %s uri %q, want %s and no URI", resolved.Digest, resolved.ResolvedURI, want)
	}
	root, err := b.Build(ctxT(t), resolved)
	if err != nil {
		t.Fatal(err)
	}
	checkTestDisk(t, root)

	// Importing it again finds the cache.
	again, err := b.OpenTarball(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.open != nil {
		t.Errorf("a second import of a built tarball would build again")
	}
}

// A layout (as `docker save` of a multi-platform image or buildx writes)
// whose index holds arm64 and amd64 images: amd64 is chosen.
func TestImportOCILayoutPicksLinuxAmd64(t *testing.T) {
	amd := testImage(t, "amd64")
	arm := configure(t, mustAppend(t, tarLayer(t, entry{name: "arm", body: "arm"})), "arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	// Nested, as Docker writes it: index.json → image index → images.
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, Options{})
	resolved, err := b.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := amd.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if resolved.Digest != want.String() {
		t.Errorf("OpenLayout chose %s, want the amd64 image %s", resolved.Digest, want)
	}
	root, err := b.Build(ctxT(t), resolved)
	if err != nil {
		t.Fatal(err)
	}
	checkTestDisk(t, root)
}

// A layout whose index names no platform: the image config says.
func TestImportOCILayoutWithoutPlatformInIndex(t *testing.T) {
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(testImage(t, "amd64")); err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, Options{})
	resolved, err := b.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.Build(ctxT(t), resolved)
	if err != nil {
		t.Fatal(err)
	}
	checkTestDisk(t, root)
}
