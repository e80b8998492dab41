package guestimage

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// Lambda's limits on a zip package.
const (
	MaxZipBytes      = 50 << 20  // a direct upload
	MaxUnzippedBytes = 262144000 // the code once unpacked
)

// Code is a validated zip code package: it has an executable bootstrap at its
// root, no entry escapes the task root, and it fits Lambda's size limits.
type Code struct {
	files    []*zip.File
	size     int64
	digest   string
	zipBytes int64
}

// ReadZipFile reads and validates the zip at path.
func ReadZipFile(p string) (*Code, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, lambdaerr.InvalidParameter("cannot read code package %s: %v", p, err)
	}
	return ReadZip(data)
}

// UnzipFailed is Lambda's answer to a package it cannot unzip, word for
// word: deployment tools match on the exception's name and show the message.
const UnzipFailed = "Could not unzip uploaded file. Please check your file, then try to upload again."

// ReadZip validates a zip package held in memory: its directory, its entry
// names, sizes and bootstrap. It does not decompress the entries; ValidateZip
// does, for uploads.
func ReadZip(data []byte) (*Code, error) {
	c, rootNames, bootstrap, err := readEntries(data)
	if err != nil {
		return nil, err
	}
	if bootstrap == nil {
		slices.Sort(rootNames)
		if len(rootNames) > 8 {
			rootNames = append(rootNames[:8], "…")
		}
		return nil, lambdaerr.InvalidParameter("the zip has no bootstrap at its root: a function on a provided runtime needs an executable file named bootstrap there (the root holds: %s)", strings.Join(rootNames, ", "))
	}
	if m := fileMode(bootstrap); m.IsDir() {
		return nil, lambdaerr.InvalidParameter("bootstrap in the zip is a directory, not an executable file")
	} else if m.Perm()&0o111 == 0 {
		return nil, lambdaerr.InvalidParameter("bootstrap in the zip is not executable (mode %#o): run chmod 755 bootstrap before zipping it", m.Perm())
	}
	return c, nil
}

// readEntries reads a zip's directory: every entry stays inside the root
// and the whole fits Lambda's size limits. It returns the names at the
// root and the bootstrap entry, if any, for the caller's own checks.
func readEntries(data []byte) (c *Code, rootNames []string, bootstrap *zip.File, err error) {
	if len(data) > MaxZipBytes {
		return nil, nil, nil, lambdaerr.RequestTooLarge("Zipped size must be smaller than %d bytes (got %d)", MaxZipBytes, len(data))
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, nil, lambdaerr.InvalidParameter("%s (%v)", UnzipFailed, err)
	}
	sum := sha256.Sum256(data)
	c = &Code{digest: hex.EncodeToString(sum[:]), zipBytes: int64(len(data))}
	for _, f := range zr.File {
		name, ok := cleanName(f.Name)
		if !ok {
			return nil, nil, nil, lambdaerr.InvalidParameter("%s (zip entry %q would land outside the task root)", UnzipFailed, f.Name)
		}
		if name == "" {
			continue
		}
		c.size += int64(f.UncompressedSize64)
		if c.size > MaxUnzippedBytes {
			return nil, nil, nil, lambdaerr.InvalidParameter("Unzipped size must be smaller than %d bytes", MaxUnzippedBytes)
		}
		if !strings.Contains(name, "/") {
			rootNames = append(rootNames, name)
		}
		if name == "bootstrap" {
			bootstrap = f
		}
		c.files = append(c.files, f)
	}
	return c, rootNames, bootstrap, nil
}

// ValidateZip is what an upload must pass: ReadZip, then every entry read
// whole, so that corrupt data (a bad CRC, a broken deflate stream) is refused
// at CreateFunction rather than found at the first cold start. The reads are
// bounded: archive/zip fails an entry that inflates past its declared size,
// and ReadZip has capped the declared sizes.
func ValidateZip(data []byte) error {
	c, err := ReadZip(data)
	if err != nil {
		return err
	}
	return c.verify()
}

// verify reads every entry to its end, which makes archive/zip check its
// CRC-32.
func (c *Code) verify() error {
	for _, f := range c.files {
		if err := readWhole(f); err != nil {
			return lambdaerr.InvalidParameter("%s (%s: %v)", UnzipFailed, f.Name, err)
		}
	}
	return nil
}

func readWhole(f *zip.File) error {
	if f.Mode().IsDir() {
		return nil
	}
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err != nil {
		return err
	}
	if uint64(n) != f.UncompressedSize64 {
		return fmt.Errorf("%d bytes where the directory says %d", n, f.UncompressedSize64)
	}
	return nil
}

// Digest is the SHA-256 of the zip, in hex.
func (c *Code) Digest() string { return c.digest }

// Size is the unpacked size in bytes.
func (c *Code) Size() int64 { return c.size }

// ZipSize is the size of the zip itself.
func (c *Code) ZipSize() int64 { return c.zipBytes }

// fileMode is an entry's mode. Zips made without Unix attributes (on
// Windows, say) carry no permission bits; treat their files as 0755 so that
// a bootstrap from such a tool still runs, as the zip format gives no way to
// tell.
func fileMode(f *zip.File) fs.FileMode {
	m := f.Mode()
	if f.CreatorVersion>>8 != 3 { // 3 is Unix; other creators carry no modes
		if m.IsDir() {
			return fs.ModeDir | 0o755
		}
		return 0o755
	}
	return m
}

// cleanName turns an entry name into a path relative to the task root and
// reports whether it stays inside it.
func cleanName(name string) (string, bool) {
	name = strings.ReplaceAll(name, "\\", "/")
	if strings.HasPrefix(name, "/") {
		return "", false
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", true
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", false
	}
	return clean, true
}

// walk calls fn for each entry with its cleaned name and mode.
func (c *Code) walk(fn func(name string, mode fs.FileMode, f *zip.File) error) error {
	for _, f := range c.files {
		name, _ := cleanName(f.Name)
		if err := fn(name, fileMode(f), f); err != nil {
			return err
		}
	}
	return nil
}
