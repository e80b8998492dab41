package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/testvm"
)

// `hearth image import` builds a docker-save tarball or an OCI layout into
// the daemon's cache and prints a URI `hearth fn create --image` takes.
func TestImageImportAndCreate(t *testing.T) {
	d := startCLIDaemon(t)
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		return d.hearth(t, wantCode, args...)
	}

	img := testvm.FunctionImage(t, "./internal/testfunction")
	digest, _ := img.Digest()
	tb := filepath.Join(t.TempDir(), "fn.tar")
	if err := tarball.WriteToFile(tb, nil, img); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{tb, dir} {
		out, _ := hearth(ExitOK, "image", "import", src)
		lines := strings.Fields(out)
		if len(lines) != 2 || lines[0] != digest.String() || lines[1] != "hearth-local@"+digest.String() {
			t.Errorf("import %s printed %q, want the digest %s and its URI", src, out, digest)
		}
	}
	_, errOut := hearth(ExitBadInput, "image", "import", filepath.Join(dir, "index.json"))
	if errOut == "" {
		t.Error("no reason given for a file that is no image")
	}

	hearth(ExitOK, "fn", "create", "img", "--image", "hearth-local@"+digest.String(), "--image-command", "--flag", "--image-workdir", "/tmp")
	out, _ := hearth(ExitOK, "fn", "get", "img", "-o", "json")
	for _, want := range []string{`"State": "Active"`, `"PackageType": "Image"`, `"WorkingDirectory": "/tmp"`} {
		if !strings.Contains(out, want) {
			t.Errorf("fn get lacks %s:\n%s", want, out)
		}
	}
	_, errOut = hearth(ExitBadInput, "fn", "create", "bad", "--image", "hearth-local@"+digest.String(), "--image-entrypoint", "/nope")
	if !strings.Contains(errOut, "FunctionError.InvalidEntryPoint") {
		t.Errorf("a bad entry point: %s", errOut)
	}
}
