package guestimage

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// The code disk holds the code under var/task with the initramfs's modes,
// each folder before what it holds (tar2ext4 needs the parents first), and
// the folders the guest mounts on.
func TestWriteCodeDisk(t *testing.T) {
	code, err := ReadZip(makeZip(t,
		entry{"bootstrap", 0o700, "#!/bin/sh", true},
		entry{"lib/data.txt", 0o600, "data", true},
		entry{"alias", fs.ModeSymlink | 0o777, "lib", true},
	))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeCodeTar(&buf, code); err != nil {
		t.Fatal(err)
	}
	type got struct {
		typ  byte
		mode int64
		body string
	}
	entries := map[string]got{}
	seen := map[string]bool{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if parent := filepath.Dir(name); parent != "." && !seen[parent] {
			t.Errorf("%s comes before its folder", name)
		}
		seen[name] = true
		body, _ := io.ReadAll(tr)
		if h.Typeflag == tar.TypeSymlink {
			body = []byte(h.Linkname)
		}
		entries[name] = got{h.Typeflag, h.Mode, string(body)}
	}
	want := map[string]got{
		"dev": {tar.TypeDir, 0o755, ""}, "proc": {tar.TypeDir, 0o755, ""}, "sys": {tar.TypeDir, 0o755, ""},
		"tmp": {tar.TypeDir, 0o1777, ""}, "var/task": {tar.TypeDir, 0o755, ""}, "var/task/lib": {tar.TypeDir, 0o755, ""},
		"var/task/bootstrap":    {tar.TypeReg, 0o755, "#!/bin/sh"},
		"var/task/lib/data.txt": {tar.TypeReg, 0o644, "data"},
		"var/task/alias":        {tar.TypeSymlink, 0o777, "lib"},
	}
	for name, w := range want {
		if g, ok := entries[name]; !ok || g != w {
			t.Errorf("%s: %+v (present %v), want %+v", name, g, ok, w)
		}
	}

	p := filepath.Join(t.TempDir(), "code.ext4")
	if err := WriteCodeDisk(p, code); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The ext4 superblock starts at 1024; its magic is at offset 56 in it.
	if len(disk) < 2048 || binary.LittleEndian.Uint16(disk[1024+56:]) != 0xEF53 {
		t.Errorf("%s (%d bytes) is not an ext4 file system", p, len(disk))
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("the disk's mode: %v %v, want read-only", fi.Mode(), err)
	}
}
