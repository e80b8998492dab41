package guestimage

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// FuzzValidateZip feeds the upload check arbitrary bytes. It must never
// panic, must refuse with an InvalidParameterValueException (or a
// RequestTooLarge), and whatever it accepts must hold the package
// invariants, checked here apart from the code that enforces them, both in
// the zip and in the initramfs the guest unpacks.
func FuzzValidateZip(f *testing.F) {
	bootstrap := entry{"bootstrap", 0o755, "#!/bin/sh\necho hi\n", true}
	for _, seed := range [][]entry{
		{bootstrap},
		{bootstrap, {"lib/", fs.ModeDir | 0o755, "", true}, {"lib/a.txt", 0o644, "a", true}},
		{bootstrap, {"alias", fs.ModeSymlink | 0o777, "lib", true}, {"lib/x", 0o644, "x", true}},
		{bootstrap, {"a", fs.ModeSymlink | 0o777, "/", true}, {"a/init", 0o755, "evil", true}},
		{bootstrap, {"x", 0o644, "1", true}, {"./x", 0o644, "2", true}},
		{bootstrap, {`..\..\etc\passwd`, 0o644, "root::0:0::/:/bin/sh", true}},
	} {
		f.Add(makeZip(f, seed...))
	}
	agent := f.TempDir() + "/agent"
	if err := writeFile(agent, "AGENT"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := ValidateZip(data)
		if err != nil {
			le, ok := lambdaerr.As(err)
			if !ok || (le.Type != "InvalidParameterValueException" && le.Type != "RequestTooLargeException") {
				t.Fatalf("refused with %v, want a Lambda error", err)
			}
			return
		}
		checkAccepted(t, data, agent)
	})
}

// FuzzZipLayout builds zips from fuzzed entry lists, where FuzzValidateZip's
// byte mutations seldom get past the zip format: names is one entry name a
// line (a bootstrap is added first), and kinds[i] makes entry i a file, a
// folder or a symlink (to the next name). The same invariants must hold for
// whatever is accepted.
func FuzzZipLayout(f *testing.F) {
	f.Add("a\na/init", []byte{2, 0})
	f.Add("x/\nx/y\n./x/y", []byte{1, 0, 0})
	f.Add("lib\nlib/a\nlib-b/c", []byte{2, 0, 0})
	f.Add("conf\nconf/app.json\n../up", []byte{0, 0, 0})
	f.Add("real/x\nalias\nreal", []byte{0, 2, 1})
	agent := f.TempDir() + "/agent"
	if err := writeFile(agent, "AGENT"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, names string, kinds []byte) {
		lines := strings.Split(names, "\n")
		if len(lines) > 64 {
			lines = lines[:64]
		}
		entries := []entry{{"bootstrap", 0o755, "#!/bin/sh", true}}
		for i, name := range lines {
			name = name[:min(len(name), 1024)] // zip names are at most 65,535 bytes
			var k byte
			if i < len(kinds) {
				k = kinds[i] % 3
			}
			switch k {
			case 0:
				entries = append(entries, entry{name, 0o644, name, true})
			case 1:
				entries = append(entries, entry{name, fs.ModeDir | 0o755, "", true})
			case 2:
				target := "/"
				if i+1 < len(lines) {
					target = lines[i+1]
				}
				entries = append(entries, entry{name, fs.ModeSymlink | 0o777, target, true})
			}
		}
		for i := range entries {
			if strings.HasSuffix(entries[i].name, "/") {
				entries[i].body = "" // archive/zip writes no data to such a name
			}
		}
		data := makeZip(t, entries...)
		if err := ValidateZip(data); err != nil {
			if _, ok := lambdaerr.As(err); !ok {
				t.Fatalf("refused with %v, want a Lambda error", err)
			}
			return
		}
		checkAccepted(t, data, agent)
	})
}

// checkAccepted checks a zip ValidateZip accepted, in itself and in the
// initramfs it makes.
func checkAccepted(t *testing.T, data []byte, agent string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("accepted a zip archive/zip cannot open: %v", err)
	}
	checkLayout(t, zr.File)
	code, err := ReadZip(data)
	if err != nil {
		t.Fatalf("ValidateZip accepted what ReadZip refuses: %v", err)
	}
	var img bytes.Buffer
	if err := WriteInitramfs(&img, InitramfsSpec{Agent: agent, Code: code}); err != nil {
		t.Fatalf("an accepted package does not make an image: %v", err)
	}
	checkImage(t, &img)
}

// checkLayout checks an accepted zip's entries: at most MaxZipEntries, none
// outside the task root, no path twice, none under a symlink or a file, and
// an executable bootstrap at the root.
func checkLayout(t *testing.T, files []*zip.File) {
	t.Helper()
	if len(files) > MaxZipEntries {
		t.Fatalf("accepted %d entries, over %d", len(files), MaxZipEntries)
	}
	kinds := map[string]fs.FileMode{}
	for _, f := range files {
		name := strings.ReplaceAll(f.Name, `\`, "/")
		if strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
			t.Fatalf("accepted entry %q", f.Name)
		}
		name = path.Clean(name)
		if name == ".." || strings.HasPrefix(name, "../") {
			t.Fatalf("accepted entry %q, outside the task root", f.Name)
		}
		if name == "." {
			continue
		}
		if _, dup := kinds[name]; dup {
			t.Fatalf("accepted %q twice", name)
		}
		kinds[name] = fileMode(f).Type()
	}
	for name := range kinds {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if k, ok := kinds[dir]; ok && !k.IsDir() {
				t.Fatalf("accepted %q under %q, of type %v", name, dir, k)
			}
		}
	}
	if k, ok := kinds["bootstrap"]; !ok || k.IsDir() {
		t.Fatalf("accepted a package without a bootstrap file (%v, %v)", k, ok)
	}
}

// checkImage checks the initramfs an accepted package makes: the code lands
// under var/task only, each path once, nothing under a symlink.
func checkImage(t *testing.T, img io.Reader) {
	t.Helper()
	r := cpio.NewReader(img)
	seen := map[string]bool{}
	links := map[string]bool{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the image does not read back: %v", err)
		}
		if seen[h.Name] {
			t.Fatalf("%s is in the image twice", h.Name)
		}
		seen[h.Name] = true
		if h.Name != path.Clean(h.Name) || strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "..") {
			t.Fatalf("image entry %q is not a clean relative path", h.Name)
		}
		if h.Mode&^cpio.ModePerm == cpio.TypeSymlink {
			if !strings.HasPrefix(h.Name, "var/task/") {
				t.Fatalf("symlink %s outside var/task", h.Name)
			}
			links[h.Name] = true
		}
		for dir := path.Dir(h.Name); dir != "."; dir = path.Dir(dir) {
			if links[dir] {
				t.Fatalf("%s is written through the symlink %s", h.Name, dir)
			}
		}
	}
	if !seen["var/task/bootstrap"] || !seen["init"] {
		t.Fatal("the image lacks init or var/task/bootstrap")
	}
}
