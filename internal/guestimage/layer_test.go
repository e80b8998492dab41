package guestimage

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

func TestValidateLayerZip(t *testing.T) {
	// A layer's bootstrap is just a file; damage the other entry's data.
	corrupt := damage(t, storedZip(t, "#!/bin/sh", "never seen"), "never")
	tests := []struct {
		name     string
		data     []byte
		wantSize int64
		wantMsg  string // "" for success
	}{
		{"no bootstrap is fine", makeZip(t, entry{"python/mod.py", 0o644, "x = 1\n", true}, entry{"bin/tool", 0o755, "bin", true}), 9, ""},
		{"not a zip", []byte("nope"), 0, "Could not unzip"},
		{"a bad CRC", corrupt, 0, "Could not unzip"},
		{"path escapes /opt", makeZip(t, entry{"../etc/passwd", 0o644, "x", true}), 0, "outside the task root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, err := ValidateLayerZip(tt.data)
			if tt.wantMsg == "" {
				if err != nil || size != tt.wantSize {
					t.Fatalf("got %d, %v; want %d", size, err, tt.wantSize)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != "InvalidParameterValueException" || !strings.Contains(le.Message, tt.wantMsg) {
				t.Fatalf("got %v, want InvalidParameterValueException with %q", err, tt.wantMsg)
			}
		})
	}
	if n, err := UnzippedSize(makeZip(t, entry{"a", 0o644, "12345", true}, entry{"b/c", 0o644, "678", true})); err != nil || n != 8 {
		t.Errorf("UnzippedSize = %d, %v; want 8", n, err)
	}
}

func readLayer(t *testing.T, entries ...entry) *Code {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.zip")
	if err := os.WriteFile(p, makeZip(t, entries...), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ReadLayerZipFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cpioEntry is an entry of an initramfs as a test reads it back.
type cpioEntry struct {
	mode cpio.FileMode
	body string
}

func layerImage(t *testing.T, code *Code, layers ...*Code) (map[string]cpioEntry, []string, error) {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "agent")
	if err := writeFile(agent, "AGENT"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, InitramfsSpec{Agent: agent, Code: code, Layers: layers}); err != nil {
		return nil, nil, err
	}
	got := map[string]cpioEntry{}
	var names []string
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		if h.Mode&^cpio.ModePerm == cpio.TypeSymlink {
			// The reader hands a symlink's body over as its Linkname.
			b = []byte(h.Linkname)
		}
		got[h.Name] = cpioEntry{h.Mode, string(b)}
		names = append(names, h.Name)
	}
	return got, names, nil
}

func TestWriteInitramfsLayers(t *testing.T) {
	code, err := ReadZip(makeZip(t, entry{"bootstrap", 0o755, "bin", true}))
	if err != nil {
		t.Fatal(err)
	}
	one := readLayer(t,
		entry{"data/a.txt", 0o644, "one", true},
		entry{"data/b.txt", 0o644, "first", true},
		entry{"bin/tool", 0o700, "tool", true},
		entry{"link", fs.ModeSymlink | 0o777, "data/a.txt", true},
		entry{"gone/", fs.ModeDir | 0o755, "", true},
	)
	two := readLayer(t,
		entry{"data/b.txt", 0o644, "second", true},
		entry{"data/c.txt", 0o600, "three", true},
		// A later layer may replace a symlink or a folder with a file.
		entry{"link", 0o644, "now a file", true},
	)
	got, names, err := layerImage(t, code, one, two)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		mode cpio.FileMode
		body string
	}{
		{"var/task/bootstrap", cpio.TypeReg | 0o755, "bin"},
		{"opt/data/a.txt", cpio.TypeReg | 0o644, "one"},
		{"opt/data/b.txt", cpio.TypeReg | 0o644, "second"},
		{"opt/data/c.txt", cpio.TypeReg | 0o644, "three"},
		{"opt/bin/tool", cpio.TypeReg | 0o755, "tool"},
		{"opt/link", cpio.TypeReg | 0o644, "now a file"},
		{"opt/gone", cpio.TypeDir | 0o755, ""},
	}
	for _, w := range want {
		g, ok := got[w.name]
		if !ok {
			t.Errorf("%s missing from the initramfs", w.name)
			continue
		}
		if g.mode != w.mode || g.body != w.body {
			t.Errorf("%s: mode %o body %q, want %o %q", w.name, g.mode, g.body, w.mode, w.body)
		}
	}
	// Each path once: the guest's unpacker never sees a replaced entry.
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("%s is in the initramfs twice", n)
		}
		seen[n] = true
	}

	// The order decides: the other way round, the first layer's b.txt wins.
	got, _, err = layerImage(t, code, two, one)
	if err != nil {
		t.Fatal(err)
	}
	if g := got["opt/data/b.txt"]; g.body != "first" {
		t.Errorf("layers reversed: b.txt is %q, want first", g.body)
	}
	if g := got["opt/link"]; g.mode != cpio.TypeSymlink|0o777 || g.body != "data/a.txt" {
		t.Errorf("layers reversed: link is %o %q, want the symlink", g.mode, g.body)
	}
}

func TestWriteInitramfsLayersRefused(t *testing.T) {
	code, err := ReadZip(makeZip(t, entry{"bootstrap", 0o755, "bin", true}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		code    *Code
		layers  []*Code
		wantMsg string
	}{
		{"through a symlink of an earlier layer", code, []*Code{
			readLayer(t, entry{"x", fs.ModeSymlink | 0o777, "/", true}),
			readLayer(t, entry{"x/init", 0o755, "evil", true}),
		}, "/opt/x/init would be written through the symlink /opt/x"},
		{"a later symlink over a folder with entries", code, []*Code{
			readLayer(t, entry{"x/init", 0o755, "ok", true}),
			readLayer(t, entry{"x", fs.ModeSymlink | 0o777, "/", true}),
		}, "through the symlink /opt/x"},
		{"inside a file of another layer", code, []*Code{
			readLayer(t, entry{"x", 0o644, "file", true}),
			readLayer(t, entry{"x/y", 0o644, "z", true}),
		}, "/opt/x/y is inside /opt/x"},
		{"code and layers too large", &Code{size: MaxUnzippedBytes - 5}, []*Code{
			readLayer(t, entry{"a", 0o644, "12", true}),
			readLayer(t, entry{"b", 0o644, "3456", true}),
		}, "The actual size is 262144001 bytes."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := layerImage(t, tt.code, tt.layers...)
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != "InvalidParameterValueException" || !strings.Contains(le.Message, tt.wantMsg) {
				t.Fatalf("got %v, want InvalidParameterValueException with %q", err, tt.wantMsg)
			}
		})
	}
	// Exactly at the limit is fine.
	if _, _, err := layerImage(t, &Code{size: MaxUnzippedBytes - 6}, readLayer(t, entry{"a", 0o644, "123456", true})); err != nil {
		t.Errorf("code and layers of exactly %d bytes: %v", MaxUnzippedBytes, err)
	}
}

func TestCheckLayers(t *testing.T) {
	link := readLayer(t, entry{"x", fs.ModeSymlink | 0o777, "/", true})
	under := readLayer(t, entry{"x/init", 0o755, "evil", true})
	if err := CheckLayers(0, []*Code{link, under}); err == nil {
		t.Error("a symlink of one layer and an entry under it in another: accepted")
	}
	if err := CheckLayers(0, []*Code{link}); err != nil {
		t.Errorf("one layer with a symlink: %v", err)
	}
}
