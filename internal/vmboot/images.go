package vmboot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hearthdev/hearth/internal/atomicfile"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
)

// imageFile is the initramfs's name in its folder under the images folder.
const imageFile = "initramfs.cpio"

// imageCache makes each stored image once: callers that ask for one being
// built wait for that build instead of starting their own, and builds of
// different images run side by side. Its zero value is ready.
type imageCache struct {
	mu       sync.Mutex
	building map[string]*imageBuild // by the image's path

	partsOnce sync.Once
	parts     string // what every image of this host holds besides the code

	// readZip reads a code package; nil is guestimage.ReadPackageFile. Tests
	// count and hold the reads through it.
	readZip func(path string) (*guestimage.Code, error)
}

// imageBuild is one build in flight; done closes when img and err are set.
type imageBuild struct {
	done chan struct{}
	img  sandbox.Image
	err  error
}

// Image writes the initramfs for code into dir.
func (h *Host) Image(dir string, code *guestimage.Code) (sandbox.Image, error) {
	p := filepath.Join(dir, imageFile)
	err := guestimage.BuildInitramfs(p, guestimage.InitramfsSpec{Agent: h.Agent, Modules: h.Kernel.Modules, Code: code})
	if err != nil {
		return sandbox.Image{}, fmt.Errorf("initramfs: %w", err)
	}
	return h.image(p), nil
}

// StoredImage returns the image of code kept under imagesDir, building it
// once: a suspended environment needs its initramfs again to resume, so it
// outlives the command that made it. It is the image CodeImage returns for
// the same code.
func (h *Host) StoredImage(imagesDir string, code *guestimage.Code) (sandbox.Image, error) {
	return h.storedImage(context.Background(), imagesDir, code.Digest(), func() (guestimage.InitramfsSpec, error) {
		return guestimage.InitramfsSpec{Code: code}, nil
	})
}

// LayerZip is a layer version's zip: its SHA-256 (hex) and where it is.
type LayerZip struct {
	Digest, Path string
}

// CodeImage returns the image of the code package whose SHA-256 (hex) is
// digest with layers unpacked into /opt in their order, kept under
// imagesDir. The image is found by the digests alone: when it is there, no
// zip is read. Otherwise the zips are read, checked against their digests
// and built into an image once, however many callers ask for it at the same
// time.
//
// An empty digest is the image with the agent alone, for functions whose
// code is on a disk of their own (container images).
func (h *Host) CodeImage(ctx context.Context, imagesDir, digest, zipPath string, layers ...LayerZip) (sandbox.Image, error) {
	if digest == "" {
		return h.storedImage(ctx, imagesDir, "agent-only", func() (guestimage.InitramfsSpec, error) { return guestimage.InitramfsSpec{}, nil })
	}
	return h.storedImage(ctx, imagesDir, imageID(digest, layers), func() (guestimage.InitramfsSpec, error) {
		read := h.images.readZip
		if read == nil {
			// Its bootstrap, if its runtime needs one, was checked at upload.
			read = guestimage.ReadPackageFile
		}
		code, err := read(zipPath)
		if err != nil {
			return guestimage.InitramfsSpec{}, err
		}
		if code.Digest() != digest {
			return guestimage.InitramfsSpec{}, fmt.Errorf("code package %s: its SHA-256 is %s, not %s", zipPath, code.Digest(), digest)
		}
		spec := guestimage.InitramfsSpec{Code: code}
		for _, l := range layers {
			lc, err := guestimage.ReadLayerZipFile(l.Path)
			if err != nil {
				return guestimage.InitramfsSpec{}, err
			}
			if lc.Digest() != l.Digest {
				return guestimage.InitramfsSpec{}, fmt.Errorf("layer %s: its SHA-256 is %s, not %s", l.Path, lc.Digest(), l.Digest)
			}
			spec.Layers = append(spec.Layers, lc)
		}
		return spec, nil
	})
}

// imageID names what an image of code and layers holds besides the host's
// parts: the code's digest alone when there are no layers (so images built
// before layers existed still serve), else that and the layers' digests in
// their order, which decides what /opt holds.
func imageID(digest string, layers []LayerZip) string {
	id := digest
	for _, l := range layers {
		id += " " + l.Digest
	}
	return id
}

// storedImage returns the image under imagesDir named by id (see imageID),
// calling load for its code and layers and building it when it is not there
// yet.
func (h *Host) storedImage(ctx context.Context, imagesDir, id string, load func() (guestimage.InitramfsSpec, error)) (sandbox.Image, error) {
	p := filepath.Join(imagesDir, h.imageKey(id), imageFile)
	c := &h.images
	c.mu.Lock()
	// Under the lock PruneImages holds: an image found here is marked
	// used before any prune can judge it unused.
	if _, err := os.Stat(p); err == nil {
		markUsed(filepath.Dir(p))
		c.mu.Unlock()
		return h.image(p), nil
	}
	if b, ok := c.building[p]; ok {
		c.mu.Unlock()
		select {
		case <-b.done:
			return b.img, b.err
		case <-ctx.Done():
			return sandbox.Image{}, ctx.Err()
		}
	}
	b := &imageBuild{done: make(chan struct{})}
	if c.building == nil {
		c.building = map[string]*imageBuild{}
	}
	c.building[p] = b
	c.mu.Unlock()

	// The build goes on when ctx ends: others may be waiting for it, and
	// the image is kept for the next caller anyway.
	b.img, b.err = h.buildStored(p, load)
	c.mu.Lock()
	delete(c.building, p)
	c.mu.Unlock()
	close(b.done)
	return b.img, b.err
}

// buildStored builds the image at p unless it appeared since the caller
// looked (made by a build that just ended, or by another process).
func (h *Host) buildStored(p string, load func() (guestimage.InitramfsSpec, error)) (sandbox.Image, error) {
	if _, err := os.Stat(p); err == nil {
		return h.image(p), nil
	}
	spec, err := load()
	if err != nil {
		return sandbox.Image{}, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sandbox.Image{}, err
	}
	// Written aside under a name of its own and renamed when complete: a
	// crash leaves no half image under the name that is used, and another
	// process building the same image does not write into this one's file.
	err = atomicfile.WriteFunc(p, 0o600, func(w io.Writer) error {
		spec.Agent, spec.Modules = h.Agent, h.Kernel.Modules
		return guestimage.WriteInitramfs(w, spec)
	})
	if err != nil {
		return sandbox.Image{}, fmt.Errorf("initramfs: %w", err)
	}
	markUsed(dir)
	return h.image(p), nil
}

// imageKey names the folder of the image with id (see imageID): it covers
// all that goes into the image, so a new agent build or other kernel
// modules make another image rather than reuse a stale one.
func (h *Host) imageKey(id string) string {
	c := &h.images
	c.partsOnce.Do(func() {
		c.parts = fmt.Sprintln(h.AgentDigest, h.Kernel.Path)
		for _, m := range h.Kernel.Modules {
			// A module is known by its path, size and time: hashing them on
			// every call would cost what this cache saves.
			var size, mtime int64
			if fi, err := os.Stat(m); err == nil {
				size, mtime = fi.Size(), fi.ModTime().UnixNano()
			}
			c.parts += fmt.Sprintln(m, size, mtime)
		}
	})
	sum := sha256.Sum256([]byte(id + "\n" + c.parts))
	return hex.EncodeToString(sum[:])[:16]
}

func (h *Host) image(initrd string) sandbox.Image {
	return sandbox.Image{Kernel: h.Kernel, Initrd: initrd, AgentDigest: h.AgentDigest}
}
