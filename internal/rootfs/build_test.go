package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// streamLayer is a layer of one file of size zero bytes, produced on
// demand; served counts the bytes handed out, and each Read first waits
// for gate (when set).
type streamLayer struct {
	size   int64
	served atomic.Int64
	gate   chan struct{}
	opened chan struct{}
	once   sync.Once
}

func (s *streamLayer) layer(t *testing.T) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: s.size}); err != nil {
				pw.CloseWithError(err)
				return
			}
			_, err := io.Copy(tw, io.LimitReader(zeros{}, s.size))
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return &servedReader{r: pr, s: s}, nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type servedReader struct {
	r io.ReadCloser
	s *streamLayer
}

func (r *servedReader) Read(p []byte) (int, error) {
	if r.s.opened != nil {
		r.s.once.Do(func() { close(r.s.opened) })
	}
	if r.s.gate != nil {
		<-r.s.gate
	}
	n, err := r.r.Read(p)
	r.s.served.Add(int64(n))
	return n, err
}

func (r *servedReader) Close() error { return r.r.Close() }

// localImage wraps a v1.Image as Build's input, as OpenLayout would.
func localImage(t *testing.T, img v1.Image) *Image {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return &Image{Digest: d.String(), open: func(context.Context) (v1.Image, error) { return img, nil }}
}

func TestBuildStopsAtTheSizeLimit(t *testing.T) {
	const limit = 1 << 20
	s := &streamLayer{size: 64 << 20}
	img := configure(t, mustAppend(t, s.layer(t)), "amd64")
	in := localImage(t, img) // computing the digest read the layer once
	s.served.Store(0)
	b := newBuilder(t, Options{MaxUncompressedSize: limit})

	_, err := b.Build(ctxT(t), in)
	if !IsCode(err, TooLarge) {
		t.Fatalf("Build = %v, want %s", err, TooLarge)
	}
	// It stopped reading soon after the limit, not at the end of the layer.
	if got := s.served.Load(); got > 2*limit {
		t.Errorf("read %d bytes of a %d-byte layer with a %d-byte limit", got, s.size, limit)
	}
	assertEmptyCache(t, b)
}

func assertEmptyCache(t *testing.T, b *Builder) {
	t.Helper()
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("the cache holds %v after a failed build", entries)
	}
}

// waitIdle waits until no build is in flight.
func waitIdle(t *testing.T, b *Builder) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.inflight)
		b.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a build is still in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCallerLeavingDoesNotCancelOthersButLastOneDoes(t *testing.T) {
	s := &streamLayer{size: 1 << 20}
	img := configure(t, mustAppend(t, s.layer(t)), "amd64")
	in := localImage(t, img)
	s.gate, s.opened = make(chan struct{}), make(chan struct{})
	b := newBuilder(t, Options{})

	// Two callers share one build; the first leaves, the second gets it.
	ctx1, cancel1 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	var root2 *Root
	go func() { _, err := b.Build(ctx1, in); errs <- err }()
	<-s.opened // the build is reading the layer
	go func() {
		var err error
		root2, err = b.Build(ctxT(t), in)
		errs <- err
	}()
	waitWaiters(t, b, in.Digest, 2)
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want context.Canceled", err)
	}
	close(s.gate)
	if err := <-errs; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if _, err := os.Stat(root2.Path); err != nil {
		t.Errorf("second caller's disk: %v", err)
	}

	// A build whose only caller leaves is cancelled and leaves nothing.
	s2 := &streamLayer{size: 1 << 20}
	img2 := configure(t, mustAppend(t, s2.layer(t)), "amd64")
	in2 := localImage(t, img2)
	s2.gate, s2.opened = make(chan struct{}), make(chan struct{})
	b2 := newBuilder(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := b2.Build(ctx, in2); errs <- err }()
	<-s2.opened
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("lone caller: %v, want context.Canceled", err)
	}
	close(s2.gate)
	waitIdle(t, b2)
	assertEmptyCache(t, b2)
	if _, ok := b2.Lookup(in2.Digest); ok {
		t.Errorf("a cancelled build was cached")
	}
}

func waitWaiters(t *testing.T, b *Builder, digest string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		f := b.inflight[digest]
		got := 0
		if f != nil {
			got = f.waiters
		}
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for %s, want %d", got, digest, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRemovesUnfinishedBuilds(t *testing.T) {
	cache := t.TempDir()
	b := newBuilderIn(t, cache)
	stale := filepath.Join(b.dir, buildPrefix+"123")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, diskFile), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	newBuilderIn(t, cache)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("unfinished build %s survived New: %v", stale, err)
	}
}

func newBuilderIn(t *testing.T, cache string) *Builder {
	t.Helper()
	b, err := New(cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckEntryPoint(t *testing.T) {
	b := newBuilder(t, Options{})
	root, err := b.Build(ctxT(t), localImage(t, testImage(t, "amd64")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		argv []string
		ok   bool
	}{
		{[]string{"/app/handler", "handler.main"}, true},
		{[]string{"/app/../app/handler"}, true},
		{[]string{"/bin/tool"}, true},     // through a directory symlink (/bin → usr/bin)
		{[]string{"/usr/bin/tool"}, true}, // directly
		{nil, false},                      // nothing to start
		{[]string{"app/handler"}, false},  // relative
		{[]string{"handler"}, false},      // relative, PATH lookup is not Lambda's
		{[]string{"/app/link"}, false},    // a symlink entry point
		{[]string{"/app/data"}, false},    // not executable
		{[]string{"/etc/secret"}, false},  // executable in the lower layer, whited out
		{[]string{"/app/missing"}, false}, // absent
		{[]string{"/app"}, false},         // a directory
		{[]string{"/loop/a/x"}, false},    // symlink loop
		{[]string{"/opq/old"}, false},     // hidden by an opaque whiteout
	}
	for _, tc := range tests {
		err := root.CheckEntryPoint(tc.argv)
		if tc.ok && err != nil {
			t.Errorf("CheckEntryPoint(%q) = %v, want nil", tc.argv, err)
		}
		if !tc.ok && !IsCode(err, InvalidEntryPoint) {
			t.Errorf("CheckEntryPoint(%q) = %v, want %s", tc.argv, err, InvalidEntryPoint)
		}
	}
}

// go-containerregistry falls back to plain HTTP for private (RFC 1918)
// registries by itself; Hearth refuses it off loopback.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	var sent []string
	rt := httpsUnlessLoopback{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r.URL.String())
		return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(nil)), Request: r}, nil
	})}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:5000/v2/", true},
		{"http://localhost:5000/v2/", true},
		{"http://[::1]:5000/v2/", true},
		{"https://registry.example/v2/", true},
		{"http://10.0.0.8:5000/v2/", false},
		{"http://registry.local/v2/", false},
		{"http://registry.example/v2/", false},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rt.RoundTrip(&http.Request{Method: "GET", URL: u, Header: http.Header{}})
		if resp != nil {
			resp.Body.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want allowed %v", tc.url, err, tc.ok)
		}
	}
	if len(sent) != 4 {
		t.Errorf("requests sent: %v, want the 4 allowed", sent)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
