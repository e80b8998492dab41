package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearthdev/hearth/internal/server"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmboot"
)

// `hearth image import` builds a docker-save tarball or an OCI layout into
// the daemon's cache and prints a URI `hearth fn create --image` takes.
func TestImageImportAndCreate(t *testing.T) {
	testvm.Driver(t)
	data := t.TempDir()
	srv, err := server.New(context.Background(), server.Config{DataDir: data, Listen: "127.0.0.1:0",
		Host: vmboot.Options{Agent: testvm.Agent(t), Accel: "tcg", CacheDir: testvm.CacheDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	env := map[string]string{"HEARTH_DATA_DIR": data, "HEARTH_ENDPOINT": "http://" + srv.Addr(), "AWS_SHARED_CREDENTIALS_FILE": ""}
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := run(t, env, args...)
		if code != wantCode {
			t.Fatalf("hearth %v: exit %d, want %d\n%s%s", args, code, wantCode, out, errOut)
		}
		return out, errOut
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
