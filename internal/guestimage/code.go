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
	// MaxZipEntries is Hearth's own limit (Lambda states none). Every entry
	// becomes a file in the guest's root file system, which the guest kernel
	// unpacks into guest memory before anything runs: an inode and dentry
	// (~1 KB) and, for a file, at least one 4 KB page. At 10,000 entries
	// that is at most ~50 MB, which a 128 MB guest can still boot with; a
	// 50 MB zip can declare over a million entries (central directory
	// records may share one local header), which no guest could. Each entry
	// also costs host heap while the package is held. A provided-runtime
	// package is a binary and a few files; a vendored dependency tree of a
	// typical service is a few thousand.
	MaxZipEntries = 10000
)

// maxLinkTarget is the longest symlink target Linux takes (PATH_MAX less
// its NUL).
const maxLinkTarget = 4095

// Code is a validated zip code package: it has an executable bootstrap at its
// root, no entry escapes the task root, no two entries name one path, no
// entry lies under a symlink or a file of the package, and it fits Lambda's
// size limits and Hearth's entry count.
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

// ReadPackageFile reads the zip at path and checks it as ReadZipFile does,
// except for the bootstrap: a managed runtime's code has none (its root
// brings the runtime's). Which runtime needs one is the upload's check;
// an image is built from the code alone, the same for any runtime.
func ReadPackageFile(p string) (*Code, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, lambdaerr.InvalidParameter("cannot read code package %s: %v", p, err)
	}
	c, _, _, err := readEntries(data)
	return c, err
}

// ValidatePackageZip is what an upload for a managed runtime must pass:
// ValidateZip without the bootstrap.
func ValidatePackageZip(data []byte) error {
	_, err := ValidateLayerZip(data)
	return err
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
	// archive/zip has parsed the whole directory by now: the cap bounds
	// what is kept and what the guest unpacks, not this first parse.
	if n := len(zr.File); n > MaxZipEntries {
		return nil, nil, nil, lambdaerr.InvalidParameter("%s (the zip has %d entries; at most %d are allowed)", UnzipFailed, n, MaxZipEntries)
	}
	sum := sha256.Sum256(data)
	c = &Code{digest: hex.EncodeToString(sum[:]), zipBytes: int64(len(data))}
	kinds := make(map[string]fs.FileMode, len(zr.File)) // cleaned name → type bits
	for _, f := range zr.File {
		if strings.ContainsRune(f.Name, 0) {
			// The guest's cpio unpacker ends a name at its first NUL, so
			// "a\x00b" would land on "a" unseen by the checks below.
			return nil, nil, nil, lambdaerr.InvalidParameter("%s (zip entry %q has a NUL byte in its name)", UnzipFailed, f.Name)
		}
		name, ok := cleanName(f.Name)
		if !ok {
			return nil, nil, nil, lambdaerr.InvalidParameter("%s (zip entry %q would land outside the task root)", UnzipFailed, f.Name)
		}
		if name == "" {
			continue
		}
		// In the guest a later entry silently replaces an earlier one of
		// the same path, so which one runs would depend on the unpacker.
		if _, dup := kinds[name]; dup {
			return nil, nil, nil, lambdaerr.InvalidParameter("%s (zip entry %q is in the zip twice: an earlier entry is also %s)", UnzipFailed, f.Name, name)
		}
		kinds[name] = fileMode(f).Type()
		// A symlink's target is its data. Linux makes no symlink to ""
		// and none longer than a path, and the image keeps 4,096 bytes.
		if kinds[name]&fs.ModeSymlink != 0 && (f.UncompressedSize64 == 0 || f.UncompressedSize64 > maxLinkTarget) {
			return nil, nil, nil, lambdaerr.InvalidParameter("%s (zip entry %q is a symlink whose target is %d bytes: a target is 1 to %d bytes)", UnzipFailed, f.Name, f.UncompressedSize64, maxLinkTarget)
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
	if err := checkParents(c.files, kinds); err != nil {
		return nil, nil, nil, err
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

// checkParents refuses an entry that lies under another entry that is not a
// folder. Under a symlink it is the escape that matters: the guest kernel's
// initramfs unpacker follows symlinks in the paths it creates, so a symlink
// "a" to "/" and an entry "a/init" would replace the agent, which runs as
// root. Under a file the guest would replace the file with a folder. The
// check holds whatever the entries' order.
func checkParents(files []*zip.File, kinds map[string]fs.FileMode) error {
	child, parent, kind, found := entryUnderNonFolder(kinds)
	if !found {
		return nil
	}
	// Name the entry as the zip does.
	for _, f := range files {
		if n, _ := cleanName(f.Name); n == child {
			child = f.Name
			break
		}
	}
	if kind&fs.ModeSymlink != 0 {
		return lambdaerr.InvalidParameter("%s (zip entry %q would be written through the symlink %q)", UnzipFailed, child, parent)
	}
	return lambdaerr.InvalidParameter("%s (zip entry %q is inside %q, which is a file, not a folder)", UnzipFailed, child, parent)
}

// entryUnderNonFolder finds a name of kinds (cleaned names → type bits)
// that lies under another that is not a folder, and that other's kind.
func entryUnderNonFolder(kinds map[string]fs.FileMode) (child, parent string, kind fs.FileMode, found bool) {
	// Names under "a/" are contiguous in sorted order, so each non-folder
	// entry needs one search rather than every entry a walk up its path
	// (names can be 65,535 bytes deep).
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, parent := range names {
		kind := kinds[parent]
		if kind.IsDir() {
			continue
		}
		prefix := parent + "/"
		i, _ := slices.BinarySearch(names, prefix)
		if i == len(names) || !strings.HasPrefix(names[i], prefix) {
			continue
		}
		return names[i], parent, kind, true
	}
	return "", "", 0, false
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
