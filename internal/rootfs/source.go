package rootfs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Config is the part of an image's configuration Lambda honours: ENTRYPOINT,
// CMD, WORKDIR and ENV. Lambda ignores the rest (USER among them: the
// function runs as Lambda's own unprivileged user).
type Config struct {
	EntryPoint []string `json:"entryPoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Env        []string `json:"env,omitempty"`
}

// Image is an image pinned to its manifest digest and checked as far as
// possible without reading its layers. Build turns it into a Root.
type Image struct {
	// Digest is the linux/amd64 image manifest's digest ("sha256:…"): the
	// cache key. For a multi-platform index it is the chosen platform's
	// manifest, not the index, so that the pin names exactly what runs.
	Digest string
	// ResolvedURI is repository@digest for a registry image (Lambda's
	// ResolvedImageUri); empty for a tarball or layout import.
	ResolvedURI string
	Config      Config
	// CompressedSize is the sum of the layers' sizes in the manifest.
	CompressedSize int64

	// open reads the image for a build; nil when the digest was already in
	// the cache at resolve time.
	open func(ctx context.Context) (v1.Image, error)
}

var wantPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// parseReference parses an image URI. Plain HTTP is allowed only for a
// registry on a loopback address (name.Insecure); others must speak HTTPS.
func parseReference(uri string) (name.Reference, error) {
	bad := func(err error) error {
		return newError(InvalidReference, err, "Source image %s is not valid. Provide a valid source image.", uri)
	}
	if strings.TrimSpace(uri) != uri || uri == "" {
		return nil, bad(nil)
	}
	ref, err := name.ParseReference(uri)
	if err != nil {
		return nil, bad(err)
	}
	if isLoopbackHost(ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(uri, name.Insecure); err != nil {
			return nil, bad(err)
		}
	}
	return ref, nil
}

// isLoopbackHost reports whether hostport ("host[:port]") names this machine.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpsUnlessLoopback refuses plain-HTTP requests to hosts other than
// loopback. go-containerregistry itself falls back to HTTP for private
// (RFC 1918) and .local registries; Hearth does not send credentials or
// trust content over plain HTTP off this machine.
type httpsUnlessLoopback struct{ next http.RoundTripper }

func (t httpsUnlessLoopback) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !isLoopbackHost(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: only loopback registries may use HTTP", req.URL.Host)
	}
	return t.next.RoundTrip(req)
}

func (b *Builder) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(b.opts.Keychain),
		remote.WithTransport(b.transport),
		remote.WithPlatform(wantPlatform),
		remote.WithRetryBackoff(remote.Backoff{Duration: b.opts.Timeout / 20, Factor: 2, Jitter: 0.1, Steps: 3}),
		remote.WithUserAgent("hearth"),
	}
}

// Resolve pins a registry image URI ("host/repo:tag" or "host/repo@sha256:…")
// to the digest of its linux/amd64 manifest and reads its config. It talks
// to the registry for at most Options.Timeout; a digest already built is
// answered from the cache without any request.
func (b *Builder) Resolve(ctx context.Context, uri string) (*Image, error) {
	ref, err := parseReference(uri)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	if d, ok := ref.(name.Digest); ok {
		if img, ok := b.cachedImage(d.DigestStr(), repo); ok {
			return img, nil
		}
	}

	rctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	fail := func(err error) (*Image, error) { return nil, b.registryError(ctx, uri, err) }

	desc, err := remote.Get(ref, b.remoteOptions(rctx)...)
	if err != nil {
		return fail(err)
	}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return fail(err)
		}
		if img, err = selectPlatform(uri, idx); err != nil {
			return fail(err)
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return fail(err)
		}
	default:
		return nil, newError(InvalidImage, nil, "The image manifest, config or layer media type for the source image %s is not supported (%s).", uri, desc.MediaType)
	}
	digest, err := img.Digest()
	if err != nil {
		return fail(err)
	}
	if cached, ok := b.cachedImage(digest.String(), repo); ok {
		return cached, nil
	}
	out, err := b.inspect(uri, img)
	if err != nil {
		return fail(err)
	}
	out.ResolvedURI = repo.Digest(out.Digest).String()
	pinned := repo.Digest(out.Digest)
	out.open = func(ctx context.Context) (v1.Image, error) {
		// The build outlives Resolve's timeout: read the image again, by
		// digest, under the build's context.
		img, err := remote.Image(pinned, b.remoteOptions(ctx)...)
		if err != nil {
			return nil, b.registryError(ctx, uri, err)
		}
		return img, nil
	}
	return out, nil
}

// OpenTarball reads a `docker save` tarball holding one image.
func (b *Builder) OpenTarball(path string) (*Image, error) {
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, newError(InvalidImage, err, "%s is not a readable image tarball (docker save with one image).", path)
	}
	out, err := b.local(path, img)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OpenLayout reads an OCI image layout folder; its index may hold several
// platforms, of which linux/amd64 is chosen.
func (b *Builder) OpenLayout(dir string) (*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, newError(InvalidImage, err, "%s is not an OCI image layout.", dir)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, newError(InvalidImage, err, "%s is not an OCI image layout.", dir)
	}
	img, err := selectPlatform(dir, idx)
	if err != nil {
		if _, ok := AsError(err); !ok {
			err = newError(InvalidImage, err, "%s is not a readable OCI image layout.", dir)
		}
		return nil, err
	}
	return b.local(dir, img)
}

// local finishes OpenTarball and OpenLayout: inspect, or take the cache's.
func (b *Builder) local(source string, img v1.Image) (*Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, newError(InvalidImage, err, "%s: cannot compute the image digest.", source)
	}
	if cached, ok := b.cachedImage(digest.String(), name.Repository{}); ok {
		return cached, nil
	}
	out, err := b.inspect(source, img)
	if err != nil {
		if _, ok := AsError(err); !ok {
			err = newError(InvalidImage, err, "%s is not a readable image.", source)
		}
		return nil, err
	}
	out.open = func(context.Context) (v1.Image, error) { return img, nil }
	return out, nil
}

// inspect reads the manifest and config: platform, media types, compressed
// size, and the settings Lambda honours.
func (b *Builder) inspect(source string, img v1.Image) (*Image, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if mt != types.DockerManifestSchema2 && mt != types.OCIManifestSchema1 {
		return nil, newError(InvalidImage, nil, "The image manifest, config or layer media type for the source image %s is not supported (%s).", source, mt)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if p := cf.Platform(); p == nil || !platformMatches(*p) {
		got := "unknown"
		if p != nil {
			got = platformString(*p)
		}
		return nil, newError(UnsupportedPlatform, nil, "The source image %s is built for %s; Hearth runs linux/amd64 images.", source, got)
	}
	var compressed int64
	for _, l := range m.Layers {
		compressed += l.Size
	}
	// Compressed layers are (all but pathologically) smaller than what
	// they unpack to: refuse before any download when they alone exceed.
	if compressed > b.opts.MaxUncompressedSize {
		return nil, tooLarge(source, b.opts.MaxUncompressedSize)
	}
	return &Image{
		Digest:         digest.String(),
		CompressedSize: compressed,
		Config: Config{
			EntryPoint: cf.Config.Entrypoint,
			Cmd:        cf.Config.Cmd,
			WorkingDir: cf.Config.WorkingDir,
			Env:        cf.Config.Env,
		},
	}, nil
}

func tooLarge(source string, limit int64) *Error {
	return newError(TooLarge, nil, "The uncompressed size of the source image %s exceeds the maximum of %d bytes.", source, limit)
}

func platformMatches(p v1.Platform) bool {
	return p.OS == wantPlatform.OS && p.Architecture == wantPlatform.Architecture
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// selectPlatform picks the linux/amd64 image of an index (nested indexes,
// as `docker save` and buildx write, are walked), or says which platforms
// the index offers.
func selectPlatform(source string, idx v1.ImageIndex) (v1.Image, error) {
	var seen []string
	img, err := findPlatform(idx, &seen, 0)
	if err != nil || img != nil {
		return img, err
	}
	sort.Strings(seen)
	if len(seen) == 0 {
		return nil, newError(InvalidImage, nil, "The source image %s holds no image manifest.", source)
	}
	return nil, newError(UnsupportedPlatform, nil, "The source image %s has no linux/amd64 image; platforms available: %s.", source, strings.Join(seen, ", "))
}

func findPlatform(idx v1.ImageIndex, seen *[]string, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := findPlatform(child, seen, depth+1); err != nil || img != nil {
				return img, err
			}
		case d.MediaType.IsImage():
			p := d.Platform
			if p != nil && p.OS == "unknown" {
				continue // buildx attestation manifests
			}
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			if p == nil {
				// A layout or save without platforms in its index: the
				// config says.
				cf, err := img.ConfigFile()
				if err != nil {
					return nil, err
				}
				p = cf.Platform()
			}
			if p == nil {
				*seen = append(*seen, "unknown")
				continue
			}
			if platformMatches(*p) {
				return img, nil
			}
			*seen = append(*seen, platformString(*p))
		}
	}
	return nil, nil
}

// registryError turns an error from talking to a registry into an *Error
// when it is about the image or the registry, or returns the caller's own
// cancellation as is.
func (b *Builder) registryError(ctx context.Context, uri string, err error) error {
	if _, ok := AsError(err); ok {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("resolving %s: %w", uri, ctx.Err())
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return newError(NotFound, err, "Source image %s does not exist. Provide a valid source image.", uri)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return newError(AccessDenied, err, "Lambda does not have permission to access the source image %s.", uri)
			}
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			return newError(NotFound, err, "Source image %s does not exist. Provide a valid source image.", uri)
		case http.StatusUnauthorized, http.StatusForbidden:
			return newError(AccessDenied, err, "Lambda does not have permission to access the source image %s.", uri)
		}
		return newError(Unreachable, err, "The registry of the source image %s answered with an error (HTTP %d).", uri, te.StatusCode)
	}
	if errors.Is(err, remote.ErrSchema1) {
		return newError(InvalidImage, err, "The image manifest, config or layer media type for the source image %s is not supported (Docker schema 1).", uri)
	}
	var (
		ue *url.Error
		ne net.Error
	)
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrDeadlineExceeded) {
		return newError(Unreachable, err, "The registry of the source image %s could not be reached.", uri)
	}
	return newError(InvalidImage, err, "The source image %s could not be read.", uri)
}
