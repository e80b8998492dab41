package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one tar entry of a test layer.
type entry struct {
	name     string
	typ      byte // tar.TypeReg when zero
	mode     int64
	body     string
	link     string
	uid, gid int
}

func tarLayer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage is a two-layer image: the upper layer deletes a file and
// empties a folder of the lower one (whiteouts), and holds an executable,
// symlinks and a file with another owner.
func testImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	lower := tarLayer(t,
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/secret", body: "lower layer secret", mode: 0o755},
		entry{name: "etc/keep", body: "kept\n"},
		entry{name: "opq/", typ: tar.TypeDir},
		entry{name: "opq/old", body: "hidden by an opaque whiteout"},
		entry{name: "usr/bin/", typ: tar.TypeDir},
		entry{name: "usr/bin/tool", body: "#!/bin/sh\n", mode: 0o755},
		entry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
	)
	upper := tarLayer(t,
		entry{name: "etc/.wh.secret"},
		entry{name: "opq/", typ: tar.TypeDir},
		entry{name: "opq/.wh..wh..opq"},
		entry{name: "opq/new", body: "new"},
		entry{name: "app/", typ: tar.TypeDir},
		entry{name: "app/handler", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		entry{name: "app/link", typ: tar.TypeSymlink, link: "handler"},
		entry{name: "app/data", body: "private", mode: 0o640, uid: 1000, gid: 1000},
		entry{name: "loop/a", typ: tar.TypeSymlink, link: "b"},
		entry{name: "loop/b", typ: tar.TypeSymlink, link: "a"},
	)
	return configure(t, mustAppend(t, lower, upper), arch)
}

func mustAppend(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configure(t *testing.T, img v1.Image, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Entrypoint = []string{"/app/handler"}
	cf.Config.Cmd = []string{"handler.main"}
	cf.Config.WorkingDir = "/app"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin", "GREETING=hi"}
	cf.Config.User = "nobody"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry is an in-process registry on loopback that counts requests.
type testRegistry struct {
	host string // 127.0.0.1:port
	mu   sync.Mutex
	deny string   // requests whose path contains it are answered 401
	reqs []string // "METHOD path"
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
		deny := r.deny
		r.mu.Unlock()
		if deny != "" && strings.Contains(req.URL.Path, deny) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	uri := r.host + "/" + repoTag
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	r.reset()
	return uri
}

func (r *testRegistry) pushIndex(t *testing.T, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	uri := r.host + "/" + repoTag
	ref, err := name.ParseReference(uri, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	r.reset()
	return uri
}

func (r *testRegistry) setDeny(s string) {
	r.mu.Lock()
	r.deny = s
	r.mu.Unlock()
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

func (r *testRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// count is how many requests contained substr.
func (r *testRegistry) count(substr string) int {
	n := 0
	for _, q := range r.requests() {
		if strings.Contains(q, substr) {
			n++
		}
	}
	return n
}

func newBuilder(t *testing.T, opts Options) *Builder {
	t.Helper()
	if opts.Keychain == nil {
		opts.Keychain = authn.NewMultiKeychain() // anonymous: the test must not read ~/.docker
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	b, err := New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// debugfs runs one debugfs request against an ext4 image.
func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, out)
	}
	return string(out)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
