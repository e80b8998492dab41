package guestimage

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/hearthdev/hearth/internal/lambdaerr"
)

type entry struct {
	name string
	mode fs.FileMode
	body string
	unix bool
}

func makeZip(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.unix {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadZip(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		wantType string // "" for success
		wantMsg  string
	}{
		{"valid", makeZip(t, entry{"bootstrap", 0o755, "#!/bin/sh", true}, entry{"lib/data.txt", 0o644, "x", true}), "", ""},
		{"made without unix modes", makeZip(t, entry{"bootstrap", 0, "bin", false}), "", ""},
		{"not a zip", []byte("this is not a zip file"), "InvalidParameterValueException", "Could not unzip"},
		{"empty file", nil, "InvalidParameterValueException", "Could not unzip"},
		{"no bootstrap", makeZip(t, entry{"main", 0o755, "bin", true}, entry{"README.md", 0o644, "", true}), "InvalidParameterValueException", "(the root holds: README.md, main)"},
		{"bootstrap in a folder only", makeZip(t, entry{"app/bootstrap", 0o755, "bin", true}), "InvalidParameterValueException", "no bootstrap at its root"},
		{"bootstrap not executable", makeZip(t, entry{"bootstrap", 0o644, "bin", true}), "InvalidParameterValueException", "not executable (mode 0644)"},
		{"path escapes", makeZip(t, entry{"bootstrap", 0o755, "bin", true}, entry{"../../etc/passwd", 0o644, "x", true}), "InvalidParameterValueException", "outside the task root"},
		{"absolute path", makeZip(t, entry{"bootstrap", 0o755, "bin", true}, entry{"/etc/passwd", 0o644, "x", true}), "InvalidParameterValueException", "outside the task root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ReadZip(tt.data)
			if tt.wantType == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(c.Digest()) != 64 {
					t.Errorf("digest %q", c.Digest())
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok {
				t.Fatalf("got %v, want a %s", err, tt.wantType)
			}
			if le.Type != tt.wantType || !strings.Contains(le.Message, tt.wantMsg) || le.Status != 400 {
				t.Errorf("got %s %d %q, want %s 400 containing %q", le.Type, le.Status, le.Message, tt.wantType, tt.wantMsg)
			}
		})
	}
}

func TestWriteInitramfs(t *testing.T) {
	code, err := ReadZip(makeZip(t,
		entry{"bootstrap", 0o755, "#!/bin/sh\necho hi\n", true},
		entry{"conf/app.json", 0o644, `{"a":1}`, true},
		// Modes the function, not root, could not use or should not have.
		entry{"bin/tool", 0o700, "tool", true},
		entry{"secret.txt", 0o600, "s", true},
		entry{"open.txt", 0o666, "o", true},
		entry{"private/", fs.ModeDir | 0o700, "", true},
		entry{"private/data", 0o640, "d", true},
	))
	if err != nil {
		t.Fatal(err)
	}
	agent := t.TempDir() + "/agent"
	mod := t.TempDir() + "/virtio_console.ko"
	for p, body := range map[string]string{agent: "AGENT", mod: "MODULE"} {
		if err := writeFile(p, body); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, InitramfsSpec{Agent: agent, Modules: []string{mod}, Code: code}); err != nil {
		t.Fatal(err)
	}
	type file struct {
		mode     cpio.FileMode
		body     string
		uid, gid int
	}
	got := map[string]file{}
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
		got[h.Name] = file{h.Mode, string(b), h.Uid, h.Guid}
	}
	want := []struct {
		name string
		perm cpio.FileMode
		body string
	}{
		{"init", 0o755, "AGENT"},
		{"var/task/bootstrap", 0o755, "#!/bin/sh\necho hi\n"},
		{"var/task/conf/app.json", 0o644, `{"a":1}`},
		{"var/task/bin/tool", 0o755, "tool"},
		{"var/task/secret.txt", 0o644, "s"},
		{"var/task/open.txt", 0o644, "o"},
		{"var/task/private/data", 0o644, "d"},
		{"lib/modules/hearth/virtio_console.ko", 0o644, "MODULE"},
		{"lib/modules/hearth/order", 0o644, "virtio_console.ko\n"},
		{"etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
	}
	for _, w := range want {
		g, ok := got[w.name]
		if !ok {
			t.Errorf("%s missing from the initramfs", w.name)
			continue
		}
		if g.mode.Perm() != w.perm || g.body != w.body {
			t.Errorf("%s: mode %o body %q, want %o %q", w.name, g.mode.Perm(), g.body, w.perm, w.body)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "var/task/conf", "var/task/private"} {
		if g, ok := got[d]; !ok || !g.mode.IsDir() || g.mode.Perm() != 0o755 {
			t.Errorf("directory %s missing or not 0755: %+v", d, g)
		}
	}
	// Root owns everything: the function, another user, cannot chmod it.
	for name, g := range got {
		if g.uid != 0 || g.gid != 0 {
			t.Errorf("%s owned by %d:%d", name, g.uid, g.gid)
		}
	}
	// The agent writes the users: one list of them, in the agent.
	for _, name := range []string{"etc/passwd", "etc/group"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s in the initramfs", name)
		}
	}
}

// storedZip is a zip whose entries are stored, not deflated, so a test can
// find an entry's bytes in it and damage them.
func storedZip(t *testing.T, bootstrap, other string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []struct{ name, body string }{{"bootstrap", bootstrap}, {"data.txt", other}} {
		h := &zip.FileHeader{Name: e.name, Method: zip.Store}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// damage flips one byte of the first occurrence of what in data.
func damage(t *testing.T, data []byte, what string) []byte {
	t.Helper()
	i := bytes.Index(data, []byte(what))
	if i < 0 {
		t.Fatalf("%q not in the zip", what)
	}
	out := bytes.Clone(data)
	out[i] ^= 0xff
	return out
}

func TestValidateZipReadsEveryEntry(t *testing.T) {
	good := storedZip(t, "#!/bin/sh\necho hi\n", "some data the function reads")
	deflated := makeZip(t, entry{"bootstrap", 0o755, "#!/bin/sh", true}, entry{"big.txt", 0o644, strings.Repeat("abcdefgh", 4096), true})
	// Damage the middle of the deflate stream of big.txt, past its header.
	i := bytes.Index(deflated, []byte("big.txt")) // the local header; its data follows
	brokenDeflate := bytes.Clone(deflated)
	brokenDeflate[i+len("big.txt")+10] ^= 0xff
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" for success
	}{
		{"intact", good, ""},
		{"intact deflated", deflated, ""},
		{"bad CRC in a data file", damage(t, good, "some data"), "data.txt"},
		{"bad CRC in bootstrap", damage(t, good, "echo hi"), "bootstrap"},
		{"broken deflate stream", brokenDeflate, "big.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The directory is intact: ReadZip alone accepts them all.
			if _, err := ReadZip(tt.data); err != nil {
				t.Fatalf("ReadZip: %v", err)
			}
			err := ValidateZip(tt.data)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateZip: %v", err)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok {
				t.Fatalf("got %v, want an InvalidParameterValueException", err)
			}
			if le.Type != "InvalidParameterValueException" || le.Status != 400 ||
				!strings.HasPrefix(le.Message, UnzipFailed) || !strings.Contains(le.Message, tt.wantErr) {
				t.Errorf("got %s %d %q, want InvalidParameterValueException 400 starting %q and naming %s", le.Type, le.Status, le.Message, UnzipFailed, tt.wantErr)
			}
		})
	}
}

// namedZip is a zip of empty stored files with these names and a bootstrap:
// quick to build with thousands of entries.
func namedZip(t *testing.T, names []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range append([]string{"bootstrap"}, names...) {
		h := &zip.FileHeader{Name: name, Method: zip.Store}
		h.SetMode(0o755)
		if _, err := zw.CreateHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fileNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("lib/f%05d", i)
	}
	return names
}

// TestReadZipRefusesHostileLayouts covers the layouts that would make the
// initramfs writer do something other than unpack files under /var/task: more
// entries than a guest can hold, two entries for one path (the later one
// silently wins in the guest), and an entry under a symlink, which the
// guest kernel's unpacker follows: a symlink "a" to "/" and an entry
// "a/init" would replace the agent, which runs as root.
func TestReadZipRefusesHostileLayouts(t *testing.T) {
	bootstrap := entry{"bootstrap", 0o755, "#!/bin/sh", true}
	link := func(name, target string) entry { return entry{name, fs.ModeSymlink | 0o777, target, true} }
	file := func(name string) entry { return entry{name, 0o644, "x", true} }
	dir := func(name string) entry { return entry{name, fs.ModeDir | 0o755, "", true} }
	tests := []struct {
		name    string
		data    []byte
		wantMsg string // "" for success
	}{
		{"entries at the cap", namedZip(t, fileNames(MaxZipEntries-1)), ""},
		{"one entry over the cap", namedZip(t, fileNames(MaxZipEntries)), "10001 entries; at most 10000"},
		{"same name twice", makeZip(t, bootstrap, file("data.txt"), file("data.txt")), `"data.txt" is in the zip twice`},
		{"same name after cleaning", makeZip(t, bootstrap, file("lib/a.so"), file("./lib//a.so")), `"./lib//a.so" is in the zip twice`},
		{"bootstrap twice by a backslash", makeZip(t, bootstrap, entry{`.\bootstrap`, 0o755, "other", true}), `is in the zip twice: an earlier entry is also bootstrap`},
		{"a folder and a file of one name", makeZip(t, bootstrap, dir("lib/"), file("lib")), `"lib" is in the zip twice`},
		{"a folder twice", makeZip(t, bootstrap, dir("lib/"), dir("lib/")), `"lib/" is in the zip twice`},
		{"an entry through a symlink", makeZip(t, bootstrap, link("a", "/"), file("a/init")), `"a/init" would be written through the symlink "a"`},
		{"through a symlink deeper down", makeZip(t, bootstrap, dir("x/"), link("x/y", "/etc"), file("x/y/z/passwd")), `"x/y/z/passwd" would be written through the symlink "x/y"`},
		{"the symlink after the entry", makeZip(t, bootstrap, file("a/init"), link("a", "/")), `"a/init" would be written through the symlink "a"`},
		{"a folder through a symlink", makeZip(t, bootstrap, link("a", "/etc"), dir("a/sub/")), `"a/sub/" would be written through the symlink "a"`},
		{"a file used as a folder", makeZip(t, bootstrap, file("conf"), file("conf/app.json")), `"conf/app.json" is inside "conf", which is a file`},
		{"a NUL in a name", makeZip(t, bootstrap, file("a\x00b")), "NUL"},
		{"a symlink to nothing", makeZip(t, bootstrap, link("a", "")), `"a" is a symlink whose target is 0 bytes`},
		{"a symlink target longer than a path", makeZip(t, bootstrap, link("a", strings.Repeat("x", 4096))), "target is 4096 bytes: a target is 1 to 4095 bytes"},
		{"escape still refused", makeZip(t, bootstrap, file("lib/../../x")), "outside the task root"},

		{"a symlink beside its look-alikes", makeZip(t, bootstrap, link("a", "/etc"), file("a-b/c"), file("a.b"), file("ab/c")), ""},
		{"a symlink to a folder in the package", makeZip(t, bootstrap, dir("real/"), file("real/x"), link("alias", "real")), ""},
		{"a symlink target as long as a path", makeZip(t, bootstrap, link("a", strings.Repeat("x", 4095))), ""},
		{"a folder then its files", makeZip(t, bootstrap, dir("lib/"), dir("lib/sub/"), file("lib/sub/x")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, check := range []struct {
				name string
				fn   func([]byte) error
			}{
				{"ReadZip", func(b []byte) error { _, err := ReadZip(b); return err }},
				{"ValidateZip", ValidateZip},
			} {
				err := check.fn(tt.data)
				if tt.wantMsg == "" {
					if err != nil {
						t.Fatalf("%s: %v", check.name, err)
					}
					continue
				}
				le, ok := lambdaerr.As(err)
				if !ok {
					t.Fatalf("%s: got %v, want an InvalidParameterValueException", check.name, err)
				}
				if le.Type != "InvalidParameterValueException" || le.Status != 400 || !strings.Contains(le.Message, tt.wantMsg) {
					t.Errorf("%s: got %s %d %q, want InvalidParameterValueException 400 containing %q", check.name, le.Type, le.Status, le.Message, tt.wantMsg)
				}
			}
		})
	}
}

// TestWriteInitramfsSymlink checks that a symlink in the package reaches the
// guest as a symlink, its target as its body, and nothing is written under it.
func TestWriteInitramfsSymlink(t *testing.T) {
	code, err := ReadZip(makeZip(t,
		entry{"bootstrap", 0o755, "#!/bin/sh", true},
		entry{"real/x", 0o644, "x", true},
		entry{"alias", fs.ModeSymlink | 0o777, "real", true},
	))
	if err != nil {
		t.Fatal(err)
	}
	agent := t.TempDir() + "/agent"
	if err := writeFile(agent, "AGENT"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, InitramfsSpec{Agent: agent, Code: code}); err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(&buf)
	var found bool
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "var/task/alias/") {
			t.Errorf("%s written under the symlink", h.Name)
		}
		if h.Name == "var/task/alias" {
			found = true
			// The reader hands a symlink's body over as its Linkname.
			if h.Mode&^cpio.ModePerm != cpio.TypeSymlink || h.Linkname != "real" {
				t.Errorf("alias: mode %o target %q, want a symlink to real", h.Mode, h.Linkname)
			}
		}
	}
	if !found {
		t.Error("var/task/alias missing from the initramfs")
	}
}
