package rootfs

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// tree records, while the flattened layers stream past, what checking an
// entry point needs later: symbolic links and executable regular files.
// (Not every file: an image may hold hundreds of thousands.)
type tree struct {
	symlinks    map[string]string
	executables map[string]bool
	hardlinks   map[string]string // link → target, resolved at the end
}

// treeIndex is the tree as stored beside the disk.
type treeIndex struct {
	Symlinks    map[string]string `json:"symlinks"`
	Executables []string          `json:"executables"`
}

func newTree() *tree {
	return &tree{symlinks: map[string]string{}, executables: map[string]bool{}, hardlinks: map[string]string{}}
}

func abs(name string) string { return path.Clean("/" + name) }

// copy passes the tar stream r to w, recording each entry.
func (t *tree) copy(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			t.symlinks[abs(hdr.Name)] = hdr.Linkname
		case tar.TypeLink:
			t.hardlinks[abs(hdr.Name)] = abs(hdr.Linkname)
		case tar.TypeReg:
			if hdr.Mode&0o111 != 0 {
				t.executables[abs(hdr.Name)] = true
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (t *tree) index() treeIndex {
	// Extract emits upper layers first, so a hard link may precede its
	// target: resolve them once everything is seen.
	for link, target := range t.hardlinks {
		if t.executables[target] {
			t.executables[link] = true
		}
	}
	ix := treeIndex{Symlinks: t.symlinks, Executables: make([]string, 0, len(t.executables))}
	for p := range t.executables {
		ix.Executables = append(ix.Executables, p)
	}
	sort.Strings(ix.Executables)
	return ix
}

// CheckEntryPoint checks, against the image's files, the command a function
// would start: argv is the effective ENTRYPOINT followed by CMD (after any
// ImageConfig override). Lambda requires an absolute ENTRYPOINT that is not
// a symbolic link; directories on the way may be links (/bin → usr/bin).
// A problem is an *Error with Code InvalidEntryPoint.
func (r *Root) CheckEntryPoint(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return newError(InvalidEntryPoint, nil, "The image %s has no ENTRYPOINT or CMD to start.", r.Digest)
	}
	exe := argv[0]
	if !path.IsAbs(exe) {
		return newError(InvalidEntryPoint, nil, "The entry point %q is not an absolute path.", exe)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, treeFile))
	if err != nil {
		return fmt.Errorf("%w: %w", errNoTree, err)
	}
	var ix treeIndex
	if err := json.Unmarshal(data, &ix); err != nil {
		return fmt.Errorf("%w: %w", errNoTree, err)
	}
	dir, err := realDir(ix.Symlinks, path.Dir(path.Clean(exe)), 0)
	if err != nil {
		return newError(InvalidEntryPoint, err, "The entry point %q cannot be resolved in the image.", exe)
	}
	p := path.Join(dir, path.Base(exe))
	if target, ok := ix.Symlinks[p]; ok {
		return newError(InvalidEntryPoint, nil, "The entry point %q is a symbolic link (to %q); it must be the file itself.", exe, target)
	}
	i := sort.SearchStrings(ix.Executables, p)
	if i == len(ix.Executables) || ix.Executables[i] != p {
		return newError(InvalidEntryPoint, nil, "The entry point %q is not an executable file in the image.", exe)
	}
	return nil
}

// realDir resolves the symbolic links in dir, inside the image's root.
func realDir(links map[string]string, dir string, hops int) (string, error) {
	if dir == "/" {
		return "/", nil
	}
	if hops > 40 {
		return "", errors.New("too many levels of symbolic links")
	}
	parent, err := realDir(links, path.Dir(dir), hops)
	if err != nil {
		return "", err
	}
	cur := path.Join(parent, path.Base(dir))
	target, ok := links[cur]
	if !ok {
		return cur, nil
	}
	if !path.IsAbs(target) {
		target = path.Join(parent, target)
	}
	return realDir(links, path.Clean(target), hops+1)
}
