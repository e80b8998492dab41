package runtimes

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
)

// The RICs' sources, as they go into a root's /var/runtime.
//
//go:embed python/bootstrap python/hearth_ric.py nodejs/bootstrap nodejs/hearth_ric.mjs
var ricFiles embed.FS

// File is one file of a runtime interface client.
type File struct {
	// Name is the file's name in RuntimeDir.
	Name string
	// Mode is its permission bits: the bootstrap is executable.
	Mode fs.FileMode
	Data []byte
}

// Files returns the RIC's files, sorted by name. Embedding loses the
// executable bit, so the bootstrap's mode is set here.
func (r Runtime) Files() ([]File, error) {
	entries, err := fs.ReadDir(ricFiles, r.dir)
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", r.Name, err)
	}
	var files []File
	for _, e := range entries {
		data, err := ricFiles.ReadFile(path.Join(r.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("runtime %s: %w", r.Name, err)
		}
		mode := fs.FileMode(0o644)
		if e.Name() == "bootstrap" {
			mode = 0o755
		}
		files = append(files, File{Name: e.Name(), Mode: mode, Data: data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// RICDigest is a digest of the RIC's files (names, modes and contents):
// what a built root records, so that a root built from other sources is
// told apart from a current one.
func (r Runtime) RICDigest() (string, error) {
	files, err := r.Files()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %o %d\n", f.Name, f.Mode, len(f.Data))
		h.Write(f.Data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
