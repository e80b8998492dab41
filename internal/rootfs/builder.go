package rootfs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// FormatVersion names the layout of a cached root (ext4 options, sidecar
// files). Bump it when a change makes old disks wrong: they are then simply
// not found, and rebuilt.
const FormatVersion = 1

// DefaultMaxUncompressedSize is Lambda's limit on a container image: 10 GB
// uncompressed, all layers counted.
const DefaultMaxUncompressedSize int64 = 10 << 30

// DefaultTimeout bounds resolving an image at a registry.
const DefaultTimeout = 20 * time.Second

// Options tune a Builder; zero values take the defaults.
type Options struct {
	// MaxUncompressedSize is the most bytes an image's layers may unpack
	// to, all layers counted (as Lambda counts).
	MaxUncompressedSize int64
	// Timeout bounds Resolve's talk with a registry, and each connection
	// attempt during a build.
	Timeout time.Duration
	// Keychain gives registry credentials; default authn.DefaultKeychain
	// (the Docker config file, then anonymous).
	Keychain authn.Keychain
	// Transport carries registry requests; default an http.Transport with
	// short connect timeouts. Plain HTTP is refused for non-loopback hosts
	// whatever the transport.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Builder builds root disks into a cache folder. It is safe for concurrent
// use; one Builder should own a cache folder.
type Builder struct {
	dir       string // <cache>/ext4-v<FormatVersion>
	opts      Options
	transport http.RoundTripper
	log       *slog.Logger

	mu       sync.Mutex
	inflight map[string]*flight
}

// New returns a Builder caching under cacheDir, which it creates. Builds a
// crash left half done are removed.
func New(cacheDir string, opts Options) (*Builder, error) {
	if opts.MaxUncompressedSize <= 0 {
		opts.MaxUncompressedSize = DefaultMaxUncompressedSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := opts.Transport
	if t == nil {
		base := remote.DefaultTransport.(*http.Transport).Clone()
		base.DialContext = (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext
		base.TLSHandshakeTimeout = opts.Timeout
		base.ResponseHeaderTimeout = opts.Timeout
		t = base
	}
	dir := filepath.Join(cacheDir, fmt.Sprintf("ext4-v%d", FormatVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), buildPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("rootfs cache: removing an unfinished build: %w", err)
			}
		}
	}
	return &Builder{
		dir:       dir,
		opts:      opts,
		transport: httpsUnlessLoopback{next: t},
		log:       opts.Logger,
		inflight:  map[string]*flight{},
	}, nil
}

// Pull resolves uri at its registry and builds its root: Resolve then Build.
func (b *Builder) Pull(ctx context.Context, uri string) (*Root, error) {
	img, err := b.Resolve(ctx, uri)
	if err != nil {
		return nil, err
	}
	return b.Build(ctx, img)
}

// flight is one build of a digest that callers wait for.
type flight struct {
	done    chan struct{}
	root    *Root
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Build returns img's root disk, building it unless the cache has it.
// Concurrent calls for one digest share one build, which is cancelled only
// when every caller waiting for it has gone; different digests build in
// parallel.
func (b *Builder) Build(ctx context.Context, img *Image) (*Root, error) {
	if root, ok := b.cached(img.Digest); ok {
		root.ResolvedURI = img.ResolvedURI
		return root, nil
	}
	if img.open == nil {
		return nil, fmt.Errorf("rootfs: image %s is neither in the cache nor readable (removed from the cache since it was resolved?)", img.Digest)
	}

	b.mu.Lock()
	f, ok := b.inflight[img.Digest]
	if !ok {
		bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		b.inflight[img.Digest] = f
		go func() {
			root, err := b.build(bctx, img)
			cancel()
			b.mu.Lock()
			f.root, f.err = root, err
			delete(b.inflight, img.Digest)
			b.mu.Unlock()
			close(f.done)
		}()
	}
	f.waiters++
	b.mu.Unlock()

	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		root := *f.root
		root.ResolvedURI = img.ResolvedURI
		return &root, nil
	case <-ctx.Done():
		b.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
		}
		b.mu.Unlock()
		return nil, fmt.Errorf("building root for %s: %w", img.Digest, ctx.Err())
	}
}

// Lookup returns the cached root of digest ("sha256:…"), if built.
func (b *Builder) Lookup(digest string) (*Root, bool) {
	return b.cached(digest)
}
