// Package fnzip writes a function's zip package: the files given, with their
// Unix modes kept so that bootstrap stays executable.
package fnzip

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write creates out holding each file under its base name at the zip's root.
func Write(out string, files ...string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	for _, p := range files {
		if err := add(zw, p); err != nil {
			f.Close()
			return fmt.Errorf("zip %s: %w", p, err)
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func add(zw *zip.Writer, p string) error {
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	hdr, err := zip.FileInfoHeader(fi)
	if err != nil {
		return err
	}
	hdr.Name = filepath.Base(p)
	hdr.Method = zip.Deflate
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, src)
	return err
}
