package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// builtRoot builds testImage into a new cache.
func builtRoot(t *testing.T) (*Builder, *Root) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.tar")
	if err := tarball.WriteToFile(path, nil, testImage(t, "amd64")); err != nil {
		t.Fatal(err)
	}
	b := newBuilder(t, Options{})
	img, err := b.OpenTarball(path)
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.Build(ctxT(t), img)
	if err != nil {
		t.Fatal(err)
	}
	return b, root
}

// copyEntry copies root's entry files into dir, changing them with edit.
func copyEntry(t *testing.T, root *Root, dir string, edit func(name string, data []byte) []byte) {
	t.Helper()
	for _, name := range EntryFiles() {
		data, err := os.ReadFile(root.EntryFile(name))
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			data = edit(name, data)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A root built on one host installs into another's cache as it is: the
// same disk, read-only, found by Lookup and Digests, its entry point
// checked; entries that name another digest or format are refused and
// leave nothing behind.
func TestInstallRootBuiltElsewhere(t *testing.T) {
	src, root := builtRoot(t)
	if ds, err := src.Digests(); err != nil || !slices.Equal(ds, []string{root.Digest}) {
		t.Fatalf("Digests = %v, %v; want [%s]", ds, err, root.Digest)
	}

	for _, tc := range []struct {
		name string
		edit func(name string, data []byte) []byte
		want string
	}{
		{"another digest", func(name string, data []byte) []byte {
			if name == metaFile {
				return []byte(strings.Replace(string(data), root.Digest[7:17], "0000000000", 1))
			}
			return data
		}, "the metadata names"},
		{"another format", func(name string, data []byte) []byte {
			if name == metaFile {
				return []byte(strings.Replace(string(data), `"formatVersion":1`, `"formatVersion":99`, 1))
			}
			return data
		}, "format 99"},
		{"a broken tree index", func(name string, data []byte) []byte {
			if name == treeFile {
				return data[:len(data)/2]
			}
			return data
		}, "tree index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newBuilder(t, Options{})
			_, err := dst.Install(root.Digest, func(dir string) error {
				copyEntry(t, root, dir, tc.edit)
				return nil
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Install: %v, want an error saying %q", err, tc.want)
			}
			if _, ok := dst.Lookup(root.Digest); ok {
				t.Error("a refused root is in the cache")
			}
			if left, _ := os.ReadDir(dst.dir); len(left) != 0 {
				t.Errorf("left in the cache: %v", left)
			}
		})
	}

	dst := newBuilder(t, Options{})
	got, err := dst.Install(root.Digest, func(dir string) error {
		copyEntry(t, root, dir, nil)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != root.Size || got.Config.WorkingDir != root.Config.WorkingDir || got.Path == root.Path {
		t.Errorf("installed %+v, built %+v", got, root)
	}
	if fi, err := os.Stat(got.Path); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("installed disk: %v %v, want read-only", fi.Mode(), err)
	}
	if err := got.CheckEntryPoint([]string{"/app/handler"}); err != nil {
		t.Errorf("entry point on the installed root: %v", err)
	}
	if r, ok := dst.Lookup(root.Digest); !ok || r.Path != got.Path {
		t.Errorf("Lookup after Install: %v %v", r, ok)
	}
	// Installed already: fill is not called again.
	if _, err := dst.Install(root.Digest, func(string) error { t.Error("fill called for a cached root"); return nil }); err != nil {
		t.Error(err)
	}
	if _, err := dst.Install("sha256:nothex", func(string) error { return nil }); err == nil {
		t.Error("Install of a digest that is not one")
	}
}
