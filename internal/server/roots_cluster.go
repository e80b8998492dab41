package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/broker"
	"github.com/hearthdev/hearth/internal/cluster"
	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/invoke"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// Container images' root disks, cluster-wide. A host that builds a root
// (a function's image pulled from its registry) or finds one in its cache
// (`hearth image import` builds there without the daemon) puts it in the
// replicated object store hearth_roots under its image's digest; a host
// that lacks a digest fetches it the first time it needs it (a cold
// start, a drained environment it adopts, a function created through it
// on an image imported elsewhere), checks it and installs it in its own
// cache as if it had built it.
//
// What travels is the built disk (with its two small sidecar files), not
// the image's blobs: a snapshot made over a root can only resume over the
// very same disk, block for block, which a rebuild from the blobs does not
// promise (tar2ext4's layout is not a stable format); an imported image
// keeps no blobs at all, only its disk; and the receiver spends no minutes
// of CPU rebuilding. The disk is larger than the compressed layers, but it
// is written compactly and travels as a sparse stream (zero blocks
// skipped), through the same code as a moved environment's memory.

// rootsBucket is the object store of the roots: <hex>/<entry file>, the
// disk last, so that a disk object means a whole root.
const rootsBucket = "hearth_roots"

// Bounds on sharing roots.
const (
	// rootsScanEvery is how often the cache is looked at for roots not
	// yet shared (imports made beside the daemon).
	rootsScanEvery = 5 * time.Second
	// rootFetchTimeout bounds a fetch or a share that no caller bounds.
	rootFetchTimeout = 10 * time.Minute
	// maxRootSidecar bounds image.json and tree.json.
	maxRootSidecar = 256 << 20
	// maxRootDisk bounds a disk: tar2ext4's largest for Lambda's 10 GB.
	maxRootDisk = rootfs.DefaultMaxUncompressedSize * 2
)

// The disk object's metadata: its SHA-256 over the whole file (holes
// read as zeros) and its size, as the host that put it read them.
const (
	rootMetaSHA256 = "disk-sha256"
	rootMetaSize   = "disk-size"
)

// clusterRoots is the image cache of a host of a cluster: the rootfs
// Builder, whose roots it shares and fetches. It implements
// api.ImageBuilder.
type clusterRoots struct {
	b    *rootfs.Builder
	objs *lazyObjects
	node string
	log  *slog.Logger
	// ready records the roots this host has, for placement.
	ready *cluster.ReadySet

	mu        sync.Mutex
	published map[string]bool // digests known to be in the store
	flights   map[string]*rootFlight

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// rootFlight is one fetch or share of a digest that callers wait for.
type rootFlight struct {
	done chan struct{}
	root *rootfs.Root
	err  error
}

func newClusterRoots(b *rootfs.Builder, js jetstream.JetStream, replicas int, node string, log *slog.Logger) *clusterRoots {
	return &clusterRoots{b: b, node: node, log: log, published: map[string]bool{}, flights: map[string]*rootFlight{},
		objs: &lazyObjects{js: js, cfg: jetstream.ObjectStoreConfig{Bucket: rootsBucket,
			Description: "Hearth: container images' root disks, by image digest", Storage: jetstream.FileStorage, Replicas: replicas}}}
}

// openRoots is the image cache the API builds into: shared with the other
// hosts in a cluster, this host's alone standalone.
func (s *Server) openRoots(b *rootfs.Builder) api.ImageBuilder {
	if s.member == nil || s.broker == nil {
		return b
	}
	s.roots = newClusterRoots(b, s.broker.JetStream(), s.broker.Replicas(), s.cfg.Cluster.Node, s.log)
	s.roots.ready = s.readySet()
	return s.roots
}

// startRoots shares, now and every few seconds, the roots of the cache
// the store lacks; standalone, nothing.
func (s *Server) startRoots(ctx context.Context) {
	if s.roots != nil {
		s.roots.start(ctx)
	}
}

// stopRoots ends the sharing.
func (s *Server) stopRoots() {
	if s.roots != nil {
		s.roots.stop()
	}
}

func (c *clusterRoots) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(rootsScanEvery)
		defer t.Stop()
		for {
			c.shareCache(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (c *clusterRoots) stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

// shareCache puts in the store the roots of this host's cache it lacks.
func (c *clusterRoots) shareCache(ctx context.Context) {
	digests, err := c.b.Digests()
	if err != nil {
		c.log.Warn("roots: reading the image cache", "err", err)
		return
	}
	for _, d := range digests {
		if ctx.Err() != nil {
			return
		}
		c.ready.HasRoot(cluster.RootKey(d))
		c.mu.Lock()
		done := c.published[d]
		c.mu.Unlock()
		if done {
			continue
		}
		root, ok := c.b.Lookup(d)
		if !ok {
			continue // damaged, or removed meanwhile
		}
		if err := c.Share(ctx, root); err != nil {
			c.log.Warn("roots: sharing a root with the other hosts", "digest", d, "err", err)
		}
	}
}

// Pull builds uri's root, as rootfs.Builder.Pull, and shares it: once the
// function it is for is Active, every host can run it.
func (c *clusterRoots) Pull(ctx context.Context, uri string) (*rootfs.Root, error) {
	root, err := c.b.Pull(ctx, uri)
	if err != nil {
		return nil, err
	}
	c.ready.UsedRoot(cluster.RootKey(root.Digest))
	if err := c.Share(ctx, root); err != nil {
		return nil, fmt.Errorf("sharing the root of %s with the other hosts: %w", uri, err)
	}
	return root, nil
}

// Lookup finds the root of digest in this host's cache, or else fetches
// it from the other hosts'. (The API asks without a context: the fetch is
// bounded here.)
func (c *clusterRoots) Lookup(digest string) (*rootfs.Root, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), rootFetchTimeout)
	defer cancel()
	root, err := c.Fetch(ctx, digest)
	if err != nil {
		c.log.Warn("roots: no root for an image", "digest", digest, "err", err)
		return nil, false
	}
	if err := c.Share(ctx, root); err != nil {
		c.log.Warn("roots: sharing a root with the other hosts", "digest", digest, "err", err)
	}
	return root, true
}

// flight runs f once for key among the callers that ask at once.
func (c *clusterRoots) flight(ctx context.Context, key string, f func() (*rootfs.Root, error)) (*rootfs.Root, error) {
	c.mu.Lock()
	fl, ok := c.flights[key]
	if !ok {
		fl = &rootFlight{done: make(chan struct{})}
		c.flights[key] = fl
		go func() {
			fl.root, fl.err = f()
			c.mu.Lock()
			delete(c.flights, key)
			c.mu.Unlock()
			close(fl.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-fl.done:
		return fl.root, fl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// rootKey names one entry file of digest's root in the store.
func rootKey(digest, file string) string {
	return strings.TrimPrefix(digest, "sha256:") + "/" + file
}

// Share puts root in the store unless it is there already.
func (c *clusterRoots) Share(ctx context.Context, root *rootfs.Root) error {
	c.mu.Lock()
	done := c.published[root.Digest]
	c.mu.Unlock()
	if done {
		return nil
	}
	_, err := c.flight(ctx, "share "+root.Digest, func() (*rootfs.Root, error) {
		fctx, cancel := context.WithTimeout(context.Background(), rootFetchTimeout)
		defer cancel()
		// The roots' store may have no leader for a moment (made on
		// first use, or its leader's host gone): tried again, as a put
		// of the same root replaces what a failed one left.
		return root, broker.RetryWithin(fctx, broker.LeaderWait, func(ctx context.Context) error { return c.share(ctx, root) })
	})
	return err
}

func (c *clusterRoots) share(ctx context.Context, root *rootfs.Root) error {
	obs, err := c.objs.get(ctx)
	if err != nil {
		return err
	}
	switch _, err := obs.GetInfo(ctx, rootKey(root.Digest, rootfs.DiskFile)); {
	case err == nil:
		c.markShared(root.Digest)
		return nil
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return err
	}
	t0 := time.Now()
	disk := root.EntryFile(rootfs.DiskFile)
	sum, err := guestimage.FileDigest(disk)
	if err != nil {
		return err
	}
	var sent int64
	for _, name := range rootfs.EntryFiles() {
		meta := jetstream.ObjectMeta{Name: rootKey(root.Digest, name)}
		if name == rootfs.DiskFile {
			meta.Metadata = map[string]string{rootMetaSHA256: sum, rootMetaSize: strconv.FormatInt(root.Size, 10)}
		}
		n, err := putSparse(ctx, obs, meta, root.EntryFile(name))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		sent += n
	}
	c.markShared(root.Digest)
	c.log.Info("roots: shared a root with the other hosts", "digest", root.Digest, "disk", root.Size, "shipped", sent, "took", time.Since(t0))
	return nil
}

func (c *clusterRoots) markShared(digest string) {
	c.mu.Lock()
	c.published[digest] = true
	c.mu.Unlock()
}

// Fetch returns the root of digest from this host's cache, or fetches it
// from the store into the cache. A digest no host shared is a
// *rootfs.Error with code NotFound (the function's ImageDeleted).
func (c *clusterRoots) Fetch(ctx context.Context, digest string) (*rootfs.Root, error) {
	if root, ok := c.b.Lookup(digest); ok {
		c.ready.UsedRoot(cluster.RootKey(digest))
		return root, nil
	}
	root, err := c.flight(ctx, "fetch "+digest, func() (*rootfs.Root, error) {
		fctx, cancel := context.WithTimeout(context.Background(), rootFetchTimeout)
		defer cancel()
		return c.fetch(fctx, digest)
	})
	if err == nil {
		c.ready.UsedRoot(cluster.RootKey(digest))
	}
	return root, err
}

func (c *clusterRoots) fetch(ctx context.Context, digest string) (*rootfs.Root, error) {
	obs, err := c.objs.get(ctx)
	if err != nil {
		return nil, err
	}
	var info *jetstream.ObjectInfo
	err = broker.RetryWithin(ctx, broker.LeaderWait, func(ctx context.Context) (err error) {
		info, err = obs.GetInfo(ctx, rootKey(digest, rootfs.DiskFile))
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil // an answer
		}
		return err
	})
	if err == nil && info == nil {
		err = jetstream.ErrObjectNotFound
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, &rootfs.Error{Code: rootfs.NotFound, Err: err,
			Message: fmt.Sprintf("Source image %s is in no host's image cache: import or pull it again.", digest)}
	}
	if err != nil {
		return nil, fmt.Errorf("roots: %s: %w", digest, err)
	}
	sum := info.Metadata[rootMetaSHA256]
	size, err := strconv.ParseInt(info.Metadata[rootMetaSize], 10, 64)
	if err != nil || size <= 0 || size > maxRootDisk || len(sum) != 64 {
		return nil, fmt.Errorf("roots: %s: the disk's metadata %q", digest, info.Metadata)
	}
	t0 := time.Now()
	root, err := c.b.Install(digest, func(dir string) error {
		for _, name := range rootfs.EntryFiles() {
			max := int64(maxRootSidecar)
			if name == rootfs.DiskFile {
				max = size
			}
			if err := getSparse(ctx, obs, rootKey(digest, name), filepath.Join(dir, name), max); err != nil {
				return fmt.Errorf("roots: %s: receiving %s: %w", digest, name, err)
			}
		}
		// The store checked each object's bytes as they came; this checks
		// the disk they make, whole, against the sender's own reading.
		disk := filepath.Join(dir, rootfs.DiskFile)
		fi, err := os.Stat(disk)
		if err != nil {
			return err
		}
		got, err := guestimage.FileDigest(disk)
		if err != nil {
			return err
		}
		if fi.Size() != size || got != sum {
			return fmt.Errorf("roots: %s: the disk received is %d bytes with SHA-256 %.12s; the sender's is %d bytes, %.12s", digest, fi.Size(), got, size, sum)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.markShared(digest)
	c.log.Info("roots: fetched a root from the other hosts", "digest", digest, "disk", root.Size, "took", time.Since(t0))
	return root, nil
}

// lazyObjects is an object store made on first use (the cluster may still
// be electing its leaders when the daemon starts).
type lazyObjects struct {
	js  jetstream.JetStream
	cfg jetstream.ObjectStoreConfig

	mu  sync.Mutex
	obs jetstream.ObjectStore
}

func (l *lazyObjects) get(ctx context.Context) (jetstream.ObjectStore, error) {
	l.mu.Lock()
	obs := l.obs
	l.mu.Unlock()
	if obs != nil {
		return obs, nil
	}
	err := broker.Retry(ctx, func(ctx context.Context) (err error) {
		obs, err = l.js.CreateOrUpdateObjectStore(ctx, l.cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", l.cfg.Bucket, err)
	}
	l.mu.Lock()
	l.obs = obs
	l.mu.Unlock()
	return obs, nil
}

// rootsScheduler gives the scheduler, for an image function, the root as
// this host has it: the configuration names the disk in the cache of the
// host that built it; another host's copy is in its own cache, fetched
// on first need.
type rootsScheduler struct {
	invoke.Scheduler
	s *Server
}

func (r rootsScheduler) Acquire(ctx context.Context, fn scheduler.Function) (*scheduler.Lease, error) {
	if err := r.s.localRoot(ctx, &fn); err != nil {
		return nil, err
	}
	return r.Scheduler.Acquire(ctx, fn)
}

func (r rootsScheduler) Prepare(fn scheduler.Function) {
	if !r.s.needsRoot(fn) {
		r.Scheduler.Prepare(fn)
		return
	}
	// A template is made ahead of need: the root may come first.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), rootFetchTimeout)
		defer cancel()
		if err := r.s.localRoot(ctx, &fn); err != nil {
			r.s.log.Warn("roots: no template without the function's root", "function", fn.Name, "err", err)
			return
		}
		r.Scheduler.Prepare(fn)
	}()
}

func (r rootsScheduler) Adopt(ctx context.Context, fn scheduler.Function, rec store.EnvRecord) error {
	// The environment's own manifest names its disk; the pool's function
	// should too, when this host has it (nothing is fetched: a daemon
	// adopts at start).
	if !r.s.needsRoot(fn) {
		if err := r.s.localRoot(ctx, &fn); err != nil {
			r.s.log.Warn("roots: adopting an environment", "env", rec.ID, "err", err)
		}
	}
	return r.Scheduler.Adopt(ctx, fn, rec)
}

// imageRoot reports whether root is a container image's (by its digest),
// not a managed runtime's.
func imageRoot(root *sandbox.Root) bool {
	return root != nil && strings.HasPrefix(root.Digest, "sha256:")
}

// needsRoot reports whether fn's image root is not yet in this host's
// cache.
func (s *Server) needsRoot(fn scheduler.Function) bool {
	if s.roots == nil || !imageRoot(fn.Root) {
		return false
	}
	_, ok := s.roots.b.Lookup(fn.Root.Digest)
	return !ok
}

// localRoot points fn's image root at this host's copy, fetched if need
// be. A root no host has answers as a Failed image function does (409,
// ImageDeleted); one the store could not give, a ServiceException.
func (s *Server) localRoot(ctx context.Context, fn *scheduler.Function) error {
	if s.roots == nil || !imageRoot(fn.Root) {
		return nil
	}
	root, err := s.roots.Fetch(ctx, fn.Root.Digest)
	if err != nil {
		if re, ok := rootfs.AsError(err); ok {
			return lambdaerr.ResourceConflict("The function %s cannot start on host %s: %s (%s)", fn.Name, s.roots.node, re.Message, re.StateReasonCode())
		}
		if ctx.Err() != nil {
			return err
		}
		return lambdaerr.Service("The function %s cannot start on host %s: its image %s could not be fetched from the other hosts: %v", fn.Name, s.roots.node, fn.Root.Digest, err)
	}
	if root.Path != fn.Root.Disk {
		r := *fn.Root
		r.Disk = root.Path
		fn.Root = &r
	}
	return nil
}

// moveRoot is, for an environment offered by another host, the disk its
// root is here: an image's from this host's cache (fetched when fetch is
// set, else only asked whether the store has it); a managed runtime's
// when this host's build of it is the same. refused says it never will
// be.
func (s *Server) moveRoot(ctx context.Context, root *sandbox.Root, fetch bool) (disk string, refused bool, err error) {
	if imageRoot(root) {
		if s.roots == nil {
			return "", true, errors.New("this host shares no container images")
		}
		if !fetch {
			if _, ok := s.roots.b.Lookup(root.Digest); ok {
				return "", false, nil
			}
			obs, err := s.roots.objs.get(ctx)
			if err == nil {
				_, err = obs.GetInfo(ctx, rootKey(root.Digest, rootfs.DiskFile))
			}
			return "", false, err
		}
		r, err := s.roots.Fetch(ctx, root.Digest)
		if err != nil {
			return "", false, fmt.Errorf("its image's root: %w", err)
		}
		if r.Size != root.Size {
			// Same image, another disk: built by another Hearth version.
			return "", true, fmt.Errorf("%w: its image's root disk is %d bytes here, %d in the snapshot", sandbox.ErrIncompatible, r.Size, root.Size)
		}
		return r.Path, false, nil
	}
	// A managed runtime's disk: its digest names the runtime and build.
	name, _, _ := strings.Cut(root.Digest, "@")
	disk, err = runtimes.RootPath(s.cfg.Host.CacheDir, name)
	if err != nil {
		return "", true, fmt.Errorf("runtime %s: %w", name, err)
	}
	if here := name + "@" + filepath.Base(filepath.Dir(disk)); here != root.Digest {
		return "", true, fmt.Errorf("%w: runtime build %s here, %s in the snapshot", sandbox.ErrIncompatible, here, root.Digest)
	}
	return disk, false, nil
}
