package guestimage

import (
	"archive/zip"
	"bytes"
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

func makeZip(t *testing.T, entries ...entry) []byte {
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
