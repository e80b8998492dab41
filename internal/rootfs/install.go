package rootfs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A root built on one host can be installed into another host's cache as
// it is (the hosts of a cluster share roots by digest): the very same
// disk, so that a snapshot made over it on one host resumes over it on
// the other.

// EntryFiles are the files of a cache entry, by name: what another host
// needs to install it.
func EntryFiles() []string { return []string{metaFile, treeFile, diskFile} }

// DiskFile is the entry file that holds the disk.
const DiskFile = diskFile

// EntryFile is the path of one of r's EntryFiles.
func (r *Root) EntryFile(name string) string { return filepath.Join(r.dir, name) }

// Digests lists the digests of the roots in the cache.
func (b *Builder) Digests() ([]string, error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	var out []string
	for _, e := range entries {
		hex, ok := strings.CutPrefix(e.Name(), "sha256-")
		if !ok || !e.IsDir() {
			continue
		}
		if d := "sha256:" + hex; b.entryDir(d) != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// Install puts into the cache the root of digest another host built: fill
// writes the EntryFiles into the folder it is given. The metadata must
// name digest and this FormatVersion, and the tree index must read; the
// entry is then committed as a build is (a crash leaves none). A digest
// already cached is returned as it is, and fill is not called.
func (b *Builder) Install(digest string, fill func(dir string) error) (root *Root, err error) {
	if r, ok := b.cached(digest); ok {
		return r, nil
	}
	if b.entryDir(digest) == "" {
		return nil, fmt.Errorf("rootfs: install: %q is not a sha256 digest", digest)
	}
	tmp, err := os.MkdirTemp(b.dir, buildPrefix)
	if err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := fill(tmp); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(tmp, metaFile))
	if err != nil {
		return nil, fmt.Errorf("rootfs: install %s: %w", digest, err)
	}
	var m meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("rootfs: install %s: metadata: %w", digest, err)
	}
	if m.Digest != digest || m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("rootfs: install %s: the metadata names %s (format %d, this host's %d)", digest, m.Digest, m.FormatVersion, FormatVersion)
	}
	data, err = os.ReadFile(filepath.Join(tmp, treeFile))
	if err != nil {
		return nil, fmt.Errorf("rootfs: install %s: %w", digest, err)
	}
	var ix treeIndex
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("rootfs: install %s: tree index: %w", digest, err)
	}
	// Read-only, as a disk built here: nothing may change a shared root.
	if err := os.Chmod(filepath.Join(tmp, diskFile), 0o444); err != nil {
		return nil, fmt.Errorf("rootfs: install %s: %w", digest, err)
	}
	for _, f := range []string{metaFile, treeFile} {
		if err := os.Chmod(filepath.Join(tmp, f), 0o644); err != nil {
			return nil, fmt.Errorf("rootfs: install %s: %w", digest, err)
		}
	}
	if err := b.commit(tmp, digest); err != nil {
		return nil, err
	}
	r, ok := b.cached(digest)
	if !ok {
		return nil, fmt.Errorf("rootfs cache: %s vanished after it was installed", digest)
	}
	b.log.Info("rootfs: installed", "digest", digest, "disk", r.Size)
	return r, nil
}
