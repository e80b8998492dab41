package server

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/broker/brokertest"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/ociimage"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// rootsHost is one host's image cache on one broker of a cluster.
type rootsHost struct {
	dir   string // the cache folder
	b     *rootfs.Builder
	roots *clusterRoots
}

func rootsHosts(t *testing.T, bs []*broker.Broker) []rootsHost {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	var hs []rootsHost
	for i, br := range bs {
		dir := t.TempDir()
		b, err := rootfs.New(dir, rootfs.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		r := newClusterRoots(b, br.JetStream(), br.Replicas(), string(rune('a'+i)), log)
		r.ready = &cluster.ReadySet{}
		hs = append(hs, rootsHost{dir: dir, b: b, roots: r})
	}
	return hs
}

// importImage builds an image of a program and files of zeros and random
// bytes into b's cache, as `hearth image import` does.
func importImage(t *testing.T, b *rootfs.Builder, zeros, random int) *rootfs.Root {
	t.Helper()
	noise := make([]byte, random)
	_, _ = rand.Read(noise)
	files := append(ociimage.GuestDirs(), ociimage.File{Path: "app", Mode: 0o755, Dir: true},
		ociimage.File{Path: "app/handler", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		ociimage.File{Path: "app/zeros", Mode: 0o644, Data: make([]byte, zeros)},
		ociimage.File{Path: "app/noise", Mode: 0o644, Data: noise})
	img, err := ociimage.Build(files, v1.Config{Entrypoint: []string{"/app/handler"}, WorkingDir: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "img.tar")
	if err := tarball.WriteToFile(path, nil, img); err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenTarball(path)
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func digestOf(t *testing.T, path string) string {
	t.Helper()
	d, err := guestimage.FileDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A root imported on one host reaches the others through the replicated
// object store, on the real embedded JetStream (three brokers): the cache
// scan shares it, another host fetches it on first need into its cache —
// the same disk byte for byte, read-only, its entry point checked — and
// concurrent needs fetch it once; a digest no host has answers as an
// image that is gone; a disk whose bytes are not the sender's, or an
// entry naming another image, is refused and leaves nothing in the cache.
func TestRootsSharedByDigest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bs := brokertest.Cluster(t, ctx, 3)
	hs := rootsHosts(t, bs)
	a, b, c := hs[0], hs[1], hs[2]

	root := importImage(t, a.b, 8<<20, 2<<20)
	// Not shared yet: b has nothing to fetch.
	_, err := b.roots.Fetch(ctx, root.Digest)
	if re, ok := rootfs.AsError(err); !ok || re.Code != rootfs.NotFound || re.StateReasonCode() != "ImageDeleted" {
		t.Fatalf("fetch before a shared it: %v; want an image-not-found error (ImageDeleted)", err)
	}

	t0 := time.Now()
	a.roots.shareCache(ctx)
	shared := time.Since(t0)
	// What placement reads in the heartbeats: a has the root, b not yet.
	key := cluster.RootKey(root.Digest)
	if !a.roots.ready.Ready().HasRoot(key) || b.roots.ready.Ready().HasRoot(key) {
		t.Errorf("ready roots: a %+v, b %+v; want the root on a only", a.roots.ready.Ready(), b.roots.ready.Ready())
	}
	obs, err := a.roots.objs.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, rootKey(root.Digest, rootfs.DiskFile))
	if err != nil {
		t.Fatalf("the disk is not in the store after the scan: %v", err)
	}
	if st, err := obs.Status(ctx); err != nil || st.Replicas() != 3 {
		t.Errorf("hearth_roots: %v replicas (%v), want 3", st, err)
	}

	// Two needs at once on b: one fetch, one installed root.
	t0 = time.Now()
	var wg sync.WaitGroup
	got := make([]*rootfs.Root, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = b.roots.Fetch(ctx, root.Digest)
		}()
	}
	wg.Wait()
	fetched := time.Since(t0)
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("fetch %d: %v", i, errs[i])
		}
	}
	if !b.roots.ready.Ready().HasRoot(key) {
		t.Errorf("b fetched the root; its ready roots %+v lack it", b.roots.ready.Ready())
	}
	if got[0].Path != got[1].Path || got[0].Size != root.Size || got[0].Path == root.Path {
		t.Fatalf("fetched %+v and %+v of %+v", got[0], got[1], root)
	}
	if digestOf(t, got[0].Path) != digestOf(t, root.Path) {
		t.Fatal("the fetched disk differs from the built one")
	}
	if fi, err := os.Stat(got[0].Path); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("fetched disk mode %v (%v), want read-only", fi.Mode(), err)
	}
	if err := got[0].CheckEntryPoint([]string{"/app/handler"}); err != nil {
		t.Errorf("the fetched root's tree index: %v", err)
	}
	t.Logf("disk %d KB, %d KB in the store (sparse); shared in %v, fetched in %v", root.Size>>10, info.Size>>10, shared.Round(time.Millisecond), fetched.Round(time.Millisecond))
	if int64(info.Size) >= root.Size {
		t.Errorf("the store holds %d bytes of a %d-byte disk with 8 MB of zeros: not sparse", info.Size, root.Size)
	}
	// API's Lookup on c fetches too (a function created through c on an
	// image imported on a).
	if r, ok := c.roots.Lookup(root.Digest); !ok || digestOf(t, r.Path) != digestOf(t, root.Path) {
		t.Errorf("Lookup on c: %v %v", r, ok)
	}

	t.Run("forged disk", func(t *testing.T) {
		forged := importImage(t, a.b, 1<<20, 1<<20)
		if err := a.roots.Share(ctx, forged); err != nil {
			t.Fatal(err)
		}
		// Another disk under its name, with the sender's metadata kept:
		// the store's own digest is right, the disk's is not.
		other := importImage(t, a.b, 1<<20, 1<<20)
		key := rootKey(forged.Digest, rootfs.DiskFile)
		info, err := obs.GetInfo(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := putSparse(ctx, obs, jetstream.ObjectMeta{Name: key, Metadata: info.Metadata}, other.Path); err != nil {
			t.Fatal(err)
		}
		_, err = b.roots.Fetch(ctx, forged.Digest)
		if err == nil || !strings.Contains(err.Error(), "the sender's is") {
			t.Errorf("fetch of a forged disk: %v", err)
		}
		checkNothingCached(t, b, forged.Digest)
		if b.roots.ready.Ready().HasRoot(cluster.RootKey(forged.Digest)) {
			t.Error("a root refused is told ready")
		}
	})

	t.Run("entry of another image", func(t *testing.T) {
		x := importImage(t, a.b, 0, 1<<10)
		y := importImage(t, a.b, 0, 1<<10)
		for _, r := range []*rootfs.Root{x, y} {
			if err := a.roots.Share(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// x's metadata under y's name.
		if _, err := putSparse(ctx, obs, jetstream.ObjectMeta{Name: rootKey(y.Digest, "image.json")}, x.EntryFile("image.json")); err != nil {
			t.Fatal(err)
		}
		_, err := b.roots.Fetch(ctx, y.Digest)
		if err == nil || !strings.Contains(err.Error(), "the metadata names "+x.Digest) {
			t.Errorf("fetch of y with x's metadata: %v", err)
		}
		checkNothingCached(t, b, y.Digest)
	})

	t.Run("cold start on a host without the root", func(t *testing.T) {
		s := &Server{roots: c.roots, log: slog.New(slog.DiscardHandler)}
		fn := scheduler.Function{Function: sandbox.Function{Name: "img", Root: &sandbox.Root{Disk: root.Path, Digest: root.Digest, Size: root.Size}}}
		if err := s.localRoot(ctx, &fn); err != nil || fn.Root.Disk == root.Path || filepath.Base(fn.Root.Disk) != rootfs.DiskFile {
			t.Errorf("localRoot: %v, disk %s", err, fn.Root.Disk)
		}
		gone := scheduler.Function{Function: sandbox.Function{Name: "gone", Root: &sandbox.Root{Disk: "/x", Digest: "sha256:" + strings.Repeat("ab", 32)}}}
		err := s.localRoot(ctx, &gone)
		le, ok := lambdaerr.As(err)
		if !ok || le.Status != http.StatusConflict || !strings.Contains(le.Message, "ImageDeleted") {
			t.Errorf("a root no host has: %v; want a 409 naming ImageDeleted", err)
		}
		// A managed runtime's root is not an image's: left as it is.
		rt := scheduler.Function{Function: sandbox.Function{Name: "py", Root: &sandbox.Root{Disk: "/rt/disk", Digest: "python3.12@abc"}}}
		if err := s.localRoot(ctx, &rt); err != nil || rt.Root.Disk != "/rt/disk" {
			t.Errorf("a runtime's root: %v %s", err, rt.Root.Disk)
		}
	})
}

// checkNothingCached fails when digest is in b's cache or a folder of an
// install is left.
func checkNothingCached(t *testing.T, h rootsHost, digest string) {
	t.Helper()
	if _, ok := h.b.Lookup(digest); ok {
		t.Errorf("%s is in the cache", digest)
	}
	dirs, _ := filepath.Glob(filepath.Join(h.dir, "*", ".build-*"))
	if len(dirs) != 0 {
		t.Errorf("left: %v", dirs)
	}
}
