package cli

import (
	"archive/zip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeZip writes a zip of the files given (name, body, …) and returns its
// path; entries are executable so that a bootstrap passes.
func writeZip(t *testing.T, files ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "code.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for i := 0; i+1 < len(files); i += 2 {
		h := &zip.FileHeader{Name: files[i], Method: zip.Deflate}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, files[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// The layer verbs and --layers, against a daemon in-process. Nothing is
// invoked, so no VM boots.
func TestLayerVerbs(t *testing.T) {
	d := startCLIDaemon(t)
	hearth := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		return d.hearth(t, wantCode, args...)
	}
	deps := writeZip(t, "python/deps.py", "x = 1\n")
	out, _ := hearth(ExitOK, "layer", "publish", "deps", "--zip", deps, "--compatible-runtimes", "python3.11,nodejs18.x", "--description", "shared")
	v1 := strings.TrimSpace(out)
	if !strings.HasSuffix(v1, ":layer:deps:1") {
		t.Fatalf("publish printed %q, want the version's ARN", out)
	}
	out, _ = hearth(ExitOK, "layer", "publish", "deps", "--zip", deps, "-o", "json")
	var pub struct {
		LayerVersionArn string
		Version         int64
		Content         struct{ CodeSize int64 }
	}
	if err := json.Unmarshal([]byte(out), &pub); err != nil || pub.Version != 2 || pub.Content.CodeSize == 0 {
		t.Fatalf("publish -o json: %s %v", out, err)
	}
	hearth(ExitOK, "layer", "publish", "tools", "--zip", writeZip(t, "bin/tool", "#!/bin/sh\n"))

	if out, _ = hearth(ExitOK, "layer", "list"); !strings.Contains(out, "deps") || !strings.Contains(out, "tools") {
		t.Errorf("layer list: %s", out)
	}
	out, _ = hearth(ExitOK, "layer", "list", "--compatible-runtime", "python3.11", "-o", "json")
	var list struct {
		Layers []struct {
			LayerName             string
			LatestMatchingVersion struct{ Version int64 }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Layers) != 1 || list.Layers[0].LayerName != "deps" || list.Layers[0].LatestMatchingVersion.Version != 1 {
		t.Errorf("layer list --compatible-runtime python3.11: %s %v", out, err)
	}
	if out, _ = hearth(ExitOK, "layer", "versions", "deps"); strings.Index(out, "deps:2") > strings.Index(out, "deps:1") || !strings.Contains(out, "python3.11,nodejs18.x") {
		t.Errorf("layer versions, newest first: %s", out)
	}
	if out, _ = hearth(ExitOK, "layer", "get", "deps", "1"); !strings.HasPrefix(out, v1+"\n") || !strings.Contains(out, "shared") {
		t.Errorf("layer get: %s", out)
	}
	if _, errOut := hearth(ExitBadInput, "layer", "get", "deps", "9"); !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("layer get of a missing version: %s", errOut)
	}
	if _, errOut := hearth(ExitBadInput, "layer", "get", "deps", "one"); !strings.Contains(errOut, `"one" is not a positive number`) {
		t.Errorf("layer get with a bad version: %s", errOut)
	}
	if _, errOut := hearth(ExitBadInput, "layer", "publish", "bad", "--zip", filepath.Join(t.TempDir(), "none.zip")); errOut == "" {
		t.Error("publish of a missing file said nothing")
	}

	// --layers on fn create and fn update-config.
	code := writeZip(t, "bootstrap", "#!/bin/sh\n")
	toolsArn := strings.Replace(v1, "deps:1", "tools:1", 1)
	hearth(ExitOK, "fn", "create", "fn", "--zip", code, "--layers", v1+","+toolsArn)
	layersOf := func() []string {
		t.Helper()
		out, _ := hearth(ExitOK, "fn", "get", "fn", "-o", "json")
		var f struct{ Layers []struct{ Arn string } }
		if err := json.Unmarshal([]byte(out), &f); err != nil {
			t.Fatalf("fn get: %s %v", out, err)
		}
		var arns []string
		for _, l := range f.Layers {
			arns = append(arns, l.Arn)
		}
		return arns
	}
	if got := layersOf(); strings.Join(got, ",") != v1+","+toolsArn {
		t.Errorf("layers after create: %v", got)
	}
	if _, errOut := hearth(ExitBadInput, "fn", "update-config", "fn", "--layers", v1+","+pub.LayerVersionArn); !strings.Contains(errOut, "Two different versions of the same layer") {
		t.Errorf("update-config with two versions of deps: %s", errOut)
	}
	hearth(ExitOK, "fn", "update-config", "fn", "--layers", pub.LayerVersionArn)
	if got := layersOf(); len(got) != 1 || got[0] != pub.LayerVersionArn {
		t.Errorf("layers after update-config: %v", got)
	}
	hearth(ExitOK, "fn", "update-config", "fn", "--layers", "")
	if got := layersOf(); len(got) != 0 {
		t.Errorf(`layers after update-config --layers "": %v`, got)
	}

	hearth(ExitOK, "layer", "delete", "deps", "1")
	hearth(ExitOK, "layer", "delete", "deps", "1") // again: no error, as Lambda
	if out, _ = hearth(ExitOK, "layer", "versions", "deps", "-o", "json"); strings.Contains(out, v1+`"`) || !strings.Contains(out, pub.LayerVersionArn) {
		t.Errorf("versions after deleting 1: %s", out)
	}
}
