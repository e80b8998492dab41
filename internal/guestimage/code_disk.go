package guestimage

import (
	"archive/tar"
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"

	"github.com/hearthdev/hearth/internal/atomicfile"
)

// WriteCodeDisk writes a read-only ext4 root at p holding code in
// /var/task and the folders the guest mounts on (/dev, /proc, /sys, /tmp),
// with the same modes the initramfs gives the code. It is the "zip on a
// disk" alternative to putting the code in the initramfs: the code is read
// from virtio-blk on demand instead of unpacked by the guest kernel at
// boot. Hearth does not use it for functions (see README, Measured); `hearth
// bench kinds` measures it.
func WriteCodeDisk(p string, code *Code) error {
	f, err := atomicfile.Create(p, 0o444)
	if err != nil {
		return err
	}
	defer f.Abort()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCodeTar(pw, code)) }()
	err = tar2ext4.ConvertTarToExt4(pr, f.File)
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if tar2ext4 stopped early
	if err != nil {
		return fmt.Errorf("code disk: %w", err)
	}
	return f.Commit()
}

// writeCodeTar writes the tar stream WriteCodeDisk converts.
func writeCodeTar(w io.Writer, code *Code) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	var dir func(name string, mode int64) error
	dir = func(name string, mode int64) error {
		if name == "." || name == "/" || dirs[name] {
			return nil
		}
		if err := dir(path.Dir(name), 0o755); err != nil {
			return err
		}
		dirs[name] = true
		return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: mtime})
	}
	for _, d := range []string{"dev", "proc", "sys", "var/task"} {
		if err := dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return err
	}
	err := code.walk(func(name string, mode fs.FileMode, f *zip.File) error {
		name = path.Join("var/task", name)
		if mode.IsDir() {
			return dir(name, 0o755)
		}
		if err := dir(path.Dir(name), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if mode&fs.ModeSymlink != 0 {
			target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget))
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: string(target), Mode: 0o777, ModTime: mtime})
		}
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(codePerm(mode.Perm())), Size: int64(f.UncompressedSize64), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, rc); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
