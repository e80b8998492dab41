package guestimage

import (
	"archive/zip"
	"io/fs"
	"os"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// A layer is a zip unpacked into /opt, in order, before the function
// starts: it is checked as code is (entries inside the root, Lambda's size
// limits, every entry read whole) but needs no bootstrap.

// ValidateLayerZip is what a layer upload must pass; it returns the layer's
// unpacked size, which counts towards the 250 MB a function and its layers
// may take together.
func ValidateLayerZip(data []byte) (int64, error) {
	c, _, _, err := readEntries(data)
	if err != nil {
		return 0, err
	}
	if err := c.verify(); err != nil {
		return 0, err
	}
	return c.size, nil
}

// UnzippedSize is the unpacked size of a zip, from its directory alone:
// what a function's code counts towards the 250 MB limit with its layers.
func UnzippedSize(data []byte) (int64, error) {
	c, _, _, err := readEntries(data)
	if err != nil {
		return 0, err
	}
	return c.size, nil
}

// ReadLayerZipFile reads the layer zip at p and checks its directory as
// ReadZipFile does a code package's, without asking for a bootstrap.
func ReadLayerZipFile(p string) (*Code, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, lambdaerr.InvalidParameter("cannot read layer %s: %v", p, err)
	}
	c, _, _, err := readEntries(data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// OptDir is where a function's layers are unpacked in the guest.
const OptDir = "/opt"

// CheckLayers says whether layers (read with ReadLayerZipFile) can be
// unpacked together into /opt beside code of codeSize unpacked bytes: the
// check an image build makes, for callers that want to refuse such a
// function before it is invoked.
func CheckLayers(codeSize int64, layers []*Code) error {
	_, err := mergeLayers(codeSize, layers)
	return err
}

// optEntry is one entry of the merged layers: its cleaned name under /opt,
// its mode and the zip entry that holds it.
type optEntry struct {
	name string
	mode fs.FileMode
	f    *zip.File
}

// mergeLayers merges layers, in order, into the one tree /opt holds: a
// later layer's entry replaces an earlier one's of the same path, as
// Lambda's unpacking in order does. Each layer is safe on its own (see
// checkParents), but not together: a symlink "x" to "/" in one and an
// entry "x/init" in a later one would be written through the symlink by
// the guest's cpio unpacker, over the agent that runs as root. So the
// merged tree is checked again, and an entry under a symlink or a file of
// it refused. codeSize is the function's own unpacked size: with the
// layers it must fit Lambda's 250 MB (the API checks this at create; an
// image is built from what is on disk, so it is checked again here).
func mergeLayers(codeSize int64, layers []*Code) ([]optEntry, error) {
	total := codeSize
	for _, l := range layers {
		total += l.size
	}
	if total > MaxUnzippedBytes {
		return nil, lambdaerr.InvalidParameter("Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", MaxUnzippedBytes, total)
	}
	at := map[string]int{} // cleaned name → index in out
	var out []optEntry
	for _, l := range layers {
		err := l.walk(func(name string, mode fs.FileMode, f *zip.File) error {
			if i, ok := at[name]; ok {
				out[i] = optEntry{name: name, mode: mode, f: f}
				return nil
			}
			at[name] = len(out)
			out = append(out, optEntry{name: name, mode: mode, f: f})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	kinds := make(map[string]fs.FileMode, len(out))
	for _, e := range out {
		kinds[e.name] = e.mode.Type()
	}
	if child, parent, kind, found := entryUnderNonFolder(kinds); found {
		if kind&fs.ModeSymlink != 0 {
			return nil, lambdaerr.InvalidParameter("The function's layers cannot be unpacked together: %s/%s would be written through the symlink %s/%s, which a layer makes", OptDir, child, OptDir, parent)
		}
		return nil, lambdaerr.InvalidParameter("The function's layers cannot be unpacked together: %s/%s is inside %s/%s, which a layer makes a file, not a folder", OptDir, child, OptDir, parent)
	}
	return out, nil
}
