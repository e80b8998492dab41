// Package ociimage builds small linux/amd64 container images of one layer
// in memory: the test and benchmark images (a static program and the
// folders the guest mounts on) that Hearth pushes to a registry on
// loopback.
package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of the layer: a folder when Dir, else a regular file
// with Data. Path has no leading slash.
type File struct {
	Path string
	Mode int64
	Dir  bool
	Data []byte
}

// GuestDirs are the folders a root needs for the guest to mount on, and
// Lambda's task folder: /tmp (1777), /proc, /sys, /dev, /var, /var/task.
func GuestDirs() []File {
	out := []File{{Path: "tmp", Mode: 0o1777, Dir: true}}
	for _, d := range []string{"proc", "sys", "dev", "var", "var/task"} {
		out = append(out, File{Path: d, Mode: 0o755, Dir: true})
	}
	return out
}

// mtime is every entry's: the same bytes make the same digest.
var mtime = time.Unix(1700000000, 0)

// Build is the image of one layer holding files, in their order, with
// cfg as its configuration.
func Build(files []File, cfg v1.Config) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Typeflag: tar.TypeReg, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: mtime}
		if f.Dir {
			h.Name, h.Typeflag, h.Size = f.Path+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// Program is the image of a static program at /app/<name>: its
// ENTRYPOINT, WORKDIR /app, with env, the guest's folders, and cfg's
// other settings (ports) kept.
func Program(name string, bin []byte, cfg v1.Config) (v1.Image, error) {
	files := append([]File{{Path: "app", Mode: 0o755, Dir: true}}, GuestDirs()...)
	files = append(files, File{Path: "app/" + name, Mode: 0o755, Data: bin})
	cfg.Entrypoint, cfg.WorkingDir = []string{"/app/" + name}, "/app"
	return Build(files, cfg)
}
