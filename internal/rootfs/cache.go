package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// A cached root is a folder <cache>/ext4-v<N>/sha256-<hex>/ holding:
const (
	diskFile    = "rootfs.ext4" // the read-only ext4 disk
	metaFile    = "image.json"  // metadata: digest and Config
	treeFile    = "tree.json"   // what CheckEntryPoint needs of the tree
	buildPrefix = ".build-"     // folders of builds in progress
)

// Root is a built root disk.
type Root struct {
	// Path is the ext4 disk image; it must be attached read-only (it is
	// shared by every environment of every function using the image).
	Path string
	// Size is the disk image's size in bytes.
	Size int64
	// Digest is the image manifest's digest, "sha256:…".
	Digest string
	// ResolvedURI is repository@digest for a registry image.
	ResolvedURI string
	// Config is the image's ENTRYPOINT, CMD, WORKDIR and ENV.
	Config Config

	dir string
}

type meta struct {
	FormatVersion int    `json:"formatVersion"`
	Digest        string `json:"digest"`
	Config        Config `json:"config"`
}

// entryDir is the cache folder of a digest, or "" when digest is not one.
func (b *Builder) entryDir(digest string) string {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok || algo != "sha256" || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	return filepath.Join(b.dir, algo+"-"+hex)
}

// cached returns the root of digest if it is in the cache: a stat and a
// small read.
func (b *Builder) cached(digest string) (*Root, bool) {
	dir := b.entryDir(digest)
	if dir == "" {
		return nil, false
	}
	fi, err := os.Stat(filepath.Join(dir, diskFile))
	if err != nil {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, false
	}
	var m meta
	if err := json.Unmarshal(data, &m); err != nil || m.Digest != digest || m.FormatVersion != FormatVersion {
		b.log.Warn("rootfs: ignoring a damaged cache entry", "dir", dir, "err", err)
		return nil, false
	}
	return &Root{Path: filepath.Join(dir, diskFile), Size: fi.Size(), Digest: digest, Config: m.Config, dir: dir}, true
}

// cachedImage is Resolve's answer for a digest already built.
func (b *Builder) cachedImage(digest string, repo name.Repository) (*Image, bool) {
	root, ok := b.cached(digest)
	if !ok {
		return nil, false
	}
	img := &Image{Digest: digest, Config: root.Config}
	if repo.RepositoryStr() != "" {
		img.ResolvedURI = repo.Digest(digest).String()
	}
	return img, true
}

// commit moves a finished build folder into place: its files and the
// folder are synced first, the parent after the rename, so that a crash
// leaves either no entry or a whole one.
func (b *Builder) commit(tmp, digest string) error {
	for _, f := range []string{diskFile, metaFile, treeFile} {
		if err := syncPath(filepath.Join(tmp, f)); err != nil {
			return err
		}
	}
	if err := syncPath(tmp); err != nil {
		return err
	}
	final := b.entryDir(digest)
	if err := os.Rename(tmp, final); err != nil {
		if _, ok := b.cached(digest); ok {
			// Another Builder on this folder finished first.
			return os.RemoveAll(tmp)
		}
		return fmt.Errorf("rootfs cache: %w", err)
	}
	return syncPath(b.dir)
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("rootfs cache: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rootfs cache: sync %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

var errNoTree = errors.New("rootfs cache: tree index missing")
