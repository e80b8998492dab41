package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Microsoft/hcsshim/ext4/tar2ext4"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// build writes img's disk into a folder aside and commits it to the cache.
// Nothing but the disk touches the filesystem: the flattened tar streams
// from the layers through a pipe into tar2ext4.
func (b *Builder) build(ctx context.Context, img *Image) (root *Root, err error) {
	start := time.Now()
	src, err := img.open(ctx)
	if err != nil {
		return nil, err
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
	// The disk is read-only from birth: nothing may change a shared root.
	disk, err := os.OpenFile(filepath.Join(tmp, diskFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	defer disk.Close()

	count := &counter{ctx: ctx, limit: b.opts.MaxUncompressedSize}
	flat := mutate.Extract(&countedImage{Image: src, c: count})
	defer flat.Close()
	pr, pw := io.Pipe()
	t := newTree()
	copied := make(chan error, 1)
	go func() {
		err := t.copy(flat, pw)
		pw.CloseWithError(err)
		copied <- err
	}()
	var opts []tar2ext4.Option
	if limit := b.opts.MaxUncompressedSize; limit > 12<<30 {
		// tar2ext4 caps disks at 16 GB by default; leave room for the
		// ext4 overhead of a larger limit.
		opts = append(opts, tar2ext4.MaximumDiskSize(limit+limit/2))
	}
	convErr := tar2ext4.ConvertTarToExt4(pr, disk, opts...)
	pr.CloseWithError(errors.Join(convErr, io.ErrClosedPipe)) // unblocks the copier if tar2ext4 stopped early
	copyErr := <-copied

	source := img.ResolvedURI
	if source == "" {
		source = img.Digest
	}
	switch {
	case count.exceeded.Load():
		return nil, tooLarge(source, b.opts.MaxUncompressedSize)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("building root for %s: %w", source, ctx.Err())
	case copyErr != nil:
		if img.ResolvedURI != "" {
			return nil, b.registryError(ctx, source, copyErr)
		}
		return nil, newError(InvalidImage, copyErr, "The layers of the source image %s could not be read.", source)
	case convErr != nil:
		if strings.Contains(convErr.Error(), "exceeded maximum size") {
			return nil, newError(TooLarge, convErr, "The root file system of the source image %s exceeds the maximum disk size.", source)
		}
		return nil, newError(InvalidImage, convErr, "The layers of the source image %s could not be turned into a root file system.", source)
	}
	if err := disk.Sync(); err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	if err := disk.Close(); err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	if err := writeJSON(filepath.Join(tmp, treeFile), t.index()); err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	if err := writeJSON(filepath.Join(tmp, metaFile), meta{FormatVersion: FormatVersion, Digest: img.Digest, Config: img.Config}); err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	if err := b.commit(tmp, img.Digest); err != nil {
		return nil, err
	}
	root, ok := b.cached(img.Digest)
	if !ok {
		return nil, fmt.Errorf("rootfs cache: %s vanished after it was built", img.Digest)
	}
	b.log.Info("rootfs: built", "digest", img.Digest, "source", source,
		"uncompressed", count.n.Load(), "disk", root.Size, "duration", time.Since(start).Round(time.Millisecond))
	return root, nil
}

// counter counts the uncompressed bytes of all layers, and stops reads
// once they pass the limit or the build's context ends.
type counter struct {
	ctx      context.Context
	limit    int64
	n        atomic.Int64
	exceeded atomic.Bool
}

var errTooLarge = errors.New("image exceeds the uncompressed size limit")

// countedImage is an image whose layers read through a counter; Extract
// reads every layer to its end, so the count is the layers' whole size.
type countedImage struct {
	v1.Image
	c *counter
}

func (i *countedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for k, l := range ls {
		out[k] = &countedLayer{Layer: l, c: i.c}
	}
	return out, nil
}

type countedLayer struct {
	v1.Layer
	c *counter
}

func (l *countedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	return &countedReader{ReadCloser: rc, c: l.c}, nil
}

type countedReader struct {
	io.ReadCloser
	c *counter
}

func (r *countedReader) Read(p []byte) (int, error) {
	if err := r.c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.ReadCloser.Read(p)
	if r.c.n.Add(int64(n)) > r.c.limit {
		r.c.exceeded.Store(true)
		return n, errTooLarge
	}
	return n, err
}
