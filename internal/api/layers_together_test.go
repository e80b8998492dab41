package api

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"testing"
)

// symlinkZip is a layer zip holding one symlink, name → target.
func symlinkZip(t *testing.T, name, target string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: name}
	h.SetMode(fs.ModeSymlink | 0o777)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, target); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layers each sound but not together (a later one's entry under an
// earlier one's symlink) are refused at CreateFunction and
// UpdateFunctionConfiguration, not at the first invocation.
func TestLayersThatCannotBeUnpackedTogether(t *testing.T) {
	a := newTestAPI(t)
	code := zipOf(t, "bootstrap", "#!/bin/sh\n")
	link := publish(t, a, "link", map[string]any{"Content": map[string]any{"ZipFile": symlinkZip(t, "x", "/")}}).LayerVersionArn
	under := publish(t, a, "under", map[string]any{"Content": map[string]any{"ZipFile": zipOf(t, "x/init", "evil")}}).LayerVersionArn
	other := publish(t, a, "other", nil).LayerVersionArn
	const msg = "cannot be unpacked together: /opt/x/init would be written through the symlink /opt/x"

	for _, order := range [][]string{{link, under}, {under, link}} {
		c, h, b := call(t, a, "POST", "/2015-03-31/functions", map[string]any{"FunctionName": "refused", "Role": "r",
			"Code": map[string]any{"ZipFile": code}, "Layers": order})
		wantError(t, c, h, b, 400, "InvalidParameterValueException", msg)
		if c, _, _ := call(t, a, "GET", "/2015-03-31/functions/refused", nil); c != 404 {
			t.Errorf("the refused function exists (%d)", c)
		}
	}

	createFn(t, a, "fn", map[string]any{"Code": map[string]any{"ZipFile": code}, "Layers": []string{link, other}})
	c, h, b := call(t, a, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Layers": []string{link, under}})
	wantError(t, c, h, b, 400, "InvalidParameterValueException", msg)
	if got := getLayers(t, a, "fn"); len(got) != 2 || got[0] != link || got[1] != other {
		t.Errorf("a refused update changed the layers to %v", got)
	}
}
