package microvm

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/ociimage"
	"github.com/hearthdev/hearth/internal/rootfs"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/testvm"
	"github.com/hearthdev/hearth/internal/vmm"
	"github.com/hearthdev/hearth/internal/vmm/fakevmm"
)

// testRegistry is an in-process OCI registry on loopback.
func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushImage pushes an image of one layer holding an executable /server
// to host/repo:tag; entrypoint is its ENTRYPOINT (none if empty).
func pushImage(t *testing.T, host, repo string, entrypoint ...string) string {
	t.Helper()
	img, err := ociimage.Build([]ociimage.File{{Path: "server", Mode: 0o755, Data: []byte("#!/bin/sh\nexec sleep 1000000\n")}},
		v1.Config{Entrypoint: entrypoint, Env: []string{"FROM_IMAGE=1", "OVERRIDDEN=image"}})
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/" + repo + ":v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// hookServer stands in for a guest's servers: the hooks on its hook port
// record each call; answers are scripted per hook; any other path is the
// app, which counts hits.
type hookServer struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []hookCall
	answers map[string][]int // status codes to answer first, per hook
	hits    int
}

type hookCall struct {
	Name, Body string
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{answers: map[string][]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, hookPath)
		if !ok {
			h.mu.Lock()
			h.hits++
			n := h.hits
			h.mu.Unlock()
			fmt.Fprintf(w, `{"hits":%d}`, n)
			return
		}
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.calls = append(h.calls, hookCall{name, string(b)})
		status := http.StatusOK
		if a := h.answers[name]; len(a) > 0 {
			status, h.answers[name] = a[0], a[1:]
		}
		h.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) answer(name string, statuses ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answers[name] = statuses
}

func (h *hookServer) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, c := range h.calls {
		out = append(out, c.Name)
	}
	return out
}

func (h *hookServer) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = nil
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// hmacTokens is a stand-in for vmproxy.Tokens: id, ports and expiry
// signed with a key.
type hmacTokens struct{ key []byte }

func (h hmacTokens) sign(s string) string {
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(s))
	return hex.EncodeToString(mac.Sum(nil))
}

func (h hmacTokens) Mint(id string, ports []PortRange, expires time.Time) (string, error) {
	var ps []string
	for _, p := range ports {
		ps = append(ps, fmt.Sprintf("%d-%d", p.Start, p.End))
	}
	body := fmt.Sprintf("%s|%s|%d", id, strings.Join(ps, ","), expires.Unix())
	return body + "|" + h.sign(body), nil
}

func (h hmacTokens) Verify(token, id string, port int, now time.Time) error {
	i := strings.LastIndex(token, "|")
	if i < 0 || !hmac.Equal([]byte(h.sign(token[:i])), []byte(token[i+1:])) {
		return errors.New("bad token")
	}
	parts := strings.Split(token[:i], "|")
	var exp int64
	fmt.Sscan(parts[2], &exp)
	if parts[0] != id || now.Unix() > exp {
		return errors.New("token not for this MicroVM, or expired")
	}
	for _, r := range strings.Split(parts[1], ",") {
		var a, b int
		fmt.Sscanf(r, "%d-%d", &a, &b)
		if port >= a && port <= b {
			return nil
		}
	}
	return errors.New("port not allowed")
}

// fixture is a Manager on the fake VMM, a real store and a real rootfs
// builder; guest ports are reached at the hook server (the fake VMM has no
// streams port).
type fixture struct {
	t     *testing.T
	dir   string
	m     *Manager
	vm    *fakevmm.VMM
	st    *store.Store
	clock *clock
	hooks *hookServer
	reg   string
	cfg   Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{t: t, dir: dir, vm: fakevmm.New(), clock: &clock{now: time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)},
		hooks: newHookServer(t), reg: testRegistry(t)}
	for _, f := range []string{"vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fx.st = st
	roots, err := rootfs.New(filepath.Join(dir, "rootfs"), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := fx.hooks.Listener.Addr().String()
	fx.cfg = Config{
		Store:   st,
		Sandbox: sandbox.Config{VMM: fx.vm, Dir: filepath.Join(dir, "microvms"), Accel: vmm.AccelTCG},
		Image:   sandbox.Image{Kernel: &guestimage.Kernel{Path: filepath.Join(dir, "vmlinux")}, Initrd: filepath.Join(dir, "initrd")},
		Images:  roots, Tokens: hmacTokens{key: []byte("k")}, Meter: st,
		Endpoint: func(id string) string { return "http://" + id + ".lambda-microvm.localhost:9080" },
		Now:      fx.clock.Now,
		dial: func(ctx context.Context, env *sandbox.Env, port int) (net.Conn, error) {
			if s := env.State(); s != sandbox.StateReady && s != sandbox.StateBusy {
				return nil, fmt.Errorf("%w (%s)", sandbox.ErrNotRunning, s)
			}
			if port != 9000 && port != DefaultPort {
				return nil, fmt.Errorf("guest port %d: %w: %w", port, sandbox.ErrNothingListening, syscall.ECONNREFUSED)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		traffic: func(*sandbox.Env) (uint64, bool) { return 0, false },
	}
	fx.m = fx.open()
	return fx
}

// open makes a Manager on the fixture's store and folder.
func (fx *fixture) open() *Manager {
	fx.t.Helper()
	m, err := New(context.Background(), fx.cfg)
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

var allHooks = &Hooks{Port: 9000, Ready: true, Validate: true, Run: true, Resume: true, Suspend: true, Terminate: true}

// image creates an image from an image with an entrypoint and waits for
// its build.
func (fx *fixture) image(name string, hooks *Hooks) ImageVersion {
	fx.t.Helper()
	ref := pushImage(fx.t, fx.reg, name, "/server")
	iv, err := fx.m.CreateImage(context.Background(), ImageInput{Name: name, ImageURI: ref, MemoryMiB: 256, Hooks: hooks,
		EnvironmentVariables: map[string]string{"OVERRIDDEN": "input"}})
	if err != nil {
		fx.t.Fatal(err)
	}
	if iv.State != ImageCreating || iv.Version != "1" {
		fx.t.Fatalf("created %+v, want version 1 CREATING", iv)
	}
	return fx.built(name, iv.Version)
}

// built waits for a version's build to end.
func (fx *fixture) built(name, version string) ImageVersion {
	fx.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		iv, err := fx.m.GetImageVersion(context.Background(), name, version)
		if err != nil {
			fx.t.Fatal(err)
		}
		if iv.State != ImageCreating {
			return iv
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("image %s:%s still building", name, version)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (fx *fixture) state(id string) State {
	fx.t.Helper()
	v, err := fx.m.Get(context.Background(), id)
	if err != nil {
		fx.t.Fatal(err)
	}
	return v.State
}

func storeImage(name string, now time.Time) store.MicroVMImage {
	return store.MicroVMImage{Name: name, Created: now, Updated: now}
}

func storeVersion(ref string, now time.Time) store.MicroVMImageVersion {
	return store.MicroVMImageVersion{Input: fmt.Sprintf(`{"name":"slow","imageUri":%q,"memoryMiB":256}`, ref), State: string(ImageCreating), Created: now}
}

// realParts are what a Manager on real QEMU needs in dir: the test
// MicroVM image pushed to a registry on loopback (its reference), the
// agent-only initramfs for kernel k, the store and the roots' builder.
func realParts(t *testing.T, ctx context.Context, dir string, k *guestimage.Kernel) (string, string, *store.Store, *rootfs.Builder) {
	t.Helper()
	ref := testRegistry(t) + "/testmicrovm:v1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, testvm.MicroVMImage(t)); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := guestimage.BuildInitramfs(initrd, guestimage.InitramfsSpec{Agent: testvm.Agent(t), Modules: k.Modules}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	roots, err := rootfs.New(filepath.Join(dir, "rootfs"), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ref, initrd, st, roots
}
