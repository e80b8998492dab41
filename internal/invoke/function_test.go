package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/store"
)

func TestSchedulerFunctionOfAnImage(t *testing.T) {
	s := &Service{}
	f := store.Function{FunctionName: "img", Version: "$LATEST", MemorySize: 256, Timeout: 3, PackageType: store.PackageImage,
		State: "Active", EphemeralStorage: &store.EphemeralStorage{Size: 1024},
		Environment: &store.Environment{Variables: map[string]string{"A": "function", "C": "3"}},
		Image: &store.FunctionImage{ImageURI: "127.0.0.1:5000/fn:v1", Digest: "sha256:ab", RootDisk: "/cache/sha256-ab/rootfs.ext4", RootSize: 4096,
			Command: []string{"/app/fn", "x"}, WorkingDir: "/app", Env: []string{"A=image", "B=2", "PATH=/app:/bin"}}}
	fn, err := s.schedulerFunction(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fn.CodeDigest != "" {
		t.Errorf("CodeDigest %q: an image function boots the agent alone", fn.CodeDigest)
	}
	r := fn.Root
	if r == nil || r.Disk != f.Image.RootDisk || r.Size != 4096 || r.Digest != "sha256:ab" || !slices.Equal(r.Command, f.Image.Command) || r.WorkingDir != "/app" {
		t.Fatalf("root %+v", r)
	}
	want := map[string]string{"A": "function", "B": "2", "C": "3", "PATH": "/app:/bin"}
	if !maps.Equal(fn.Env, want) {
		t.Errorf("env %v, want %v (the function's over the image's)", fn.Env, want)
	}
	if fn.EphemeralStorageMB != 1024 {
		t.Errorf("EphemeralStorageMB %d", fn.EphemeralStorageMB)
	}
	if zip, err := s.schedulerFunction(store.Function{FunctionName: "z", PackageType: store.PackageZip, CodeSha256: "AAAA"}, nil); err != nil || zip.Root != nil || zip.CodeDigest == "" {
		t.Errorf("zip function: root %+v, digest %q, %v", zip.Root, zip.CodeDigest, err)
	}
}

// A zip on a managed runtime runs on the runtime's root, with no command:
// the agent binds the code and starts the root's bootstrap.
func TestSchedulerFunctionOfAManagedRuntime(t *testing.T) {
	cache := t.TempDir()
	build := filepath.Join(cache, "runtimes", "0123abcd")
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("0123abcd", filepath.Join(cache, "runtimes", "current")); err != nil {
		t.Fatal(err)
	}
	rt, err := runtimes.Lookup("python3.11")
	if err != nil {
		t.Fatal(err)
	}
	ric, err := rt.RICDigest()
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := json.Marshal(runtimes.Manifest{Runtime: rt.Name, RICDigest: ric})
	if err := os.WriteFile(filepath.Join(build, runtimes.ManifestName(rt.Name)), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(build, runtimes.DiskName(rt.Name)), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	f := store.Function{FunctionName: "py", Version: "$LATEST", Runtime: "python3.11", Handler: "app.handler",
		PackageType: store.PackageZip, CodeSha256: "AAAA", State: "Active"}
	fn, err := (&Service{cfg: Config{CacheDir: cache}}).schedulerFunction(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := fn.Root
	if r == nil || r.Disk != filepath.Join(build, "python3.11.ext4") || r.Size != 8192 || r.Digest != "python3.11@0123abcd" || len(r.Command) != 0 {
		t.Fatalf("root %+v", r)
	}
	if fn.CodeDigest == "" || fn.Handler != "app.handler" {
		t.Errorf("code digest %q, handler %q: the zip is the code", fn.CodeDigest, fn.Handler)
	}
	f.Runtime = "nodejs18.x" // not built in this cache
	if _, err := (&Service{cfg: Config{CacheDir: cache}}).schedulerFunction(f, nil); !errors.Is(err, runtimes.ErrNotBuilt) || !strings.Contains(err.Error(), "make runtimes") {
		t.Errorf("a runtime not built: %v", err)
	}
}

func TestInvokable(t *testing.T) {
	for state, conflict := range map[string]bool{"": false, "Active": false, "Pending": true, "Failed": true} {
		err := invokable(store.Function{State: state})
		le, ok := lambdaerr.As(err)
		if got := ok && le.Status == 409; got != conflict || (!conflict && err != nil) {
			t.Errorf("state %q: %v", state, err)
		}
	}
	err := invokable(store.Function{State: "Pending"})
	le, _ := lambdaerr.As(err)
	if want := "The operation cannot be performed at this time. The function is currently in the following state: Pending"; le == nil || le.Message != want || le.Type != "ResourceConflictException" {
		t.Errorf("error %v, want %q", err, want)
	}
}

// countedFunctions counts the layer look-ups.
type countedFunctions struct {
	*store.Store
	layerReads atomic.Int32
}

func (c *countedFunctions) FunctionLayers(ctx context.Context, f store.Function) ([]store.LayerVersion, error) {
	c.layerReads.Add(1)
	return c.Store.FunctionLayers(ctx, f)
}

func TestFunctionLayerDigests(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	const arn = "arn:aws:lambda:us-east-1:000000000000:layer:"
	var layers []store.Layer
	var want []string
	for _, name := range []string{"one", "two"} {
		lv, err := fx.store.PublishLayerVersion(ctx, store.LayerVersion{LayerName: name}, arn+name, []byte("zip of "+name))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, store.Layer{Arn: lv.LayerVersionArn})
		want = append(want, lv.Digest)
	}
	// The function lists them the other way round: its order is kept.
	slices.Reverse(layers)
	slices.Reverse(want)
	for _, f := range []store.Function{
		{FunctionName: "layered", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3, Layers: layers},
		{FunctionName: "plain", Version: "$LATEST", RevisionID: "r", MemorySize: 128, Timeout: 3},
	} {
		if err := fx.store.CreateFunction(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	fns := &countedFunctions{Store: fx.store}
	svc := New(Config{Functions: fns})
	for i := range 3 {
		fn, err := svc.function(ctx, "layered", "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fn.LayerDigests, want) {
			t.Fatalf("call %d: layer digests %v, want %v", i, fn.LayerDigests, want)
		}
	}
	if n := fns.layerReads.Load(); n != 1 {
		t.Errorf("layers looked up %d times for 3 invocations, want once", n)
	}
	fn, err := svc.function(ctx, "plain", "")
	if err != nil {
		t.Fatal(err)
	}
	if fn.LayerDigests != nil || fns.layerReads.Load() != 1 {
		t.Errorf("a function without layers: digests %v, %d look-ups", fn.LayerDigests, fns.layerReads.Load())
	}
}

// The paused tier's time comes from the function's policy when it says,
// else from the daemon's setting; 0 in either turns it off.
func TestSchedulerFunctionKeepPaused(t *testing.T) {
	ptr := func(n int) *int { return &n }
	tests := []struct {
		name   string
		daemon time.Duration
		policy store.IdlePolicy
		want   time.Duration
	}{
		{"no policy, daemon default", 0, store.IdlePolicy{}, DefaultKeepPaused},
		{"no policy, daemon's", 2 * time.Minute, store.IdlePolicy{}, 2 * time.Minute},
		{"daemon turned it off", -1, store.IdlePolicy{}, 0},
		{"policy without it", time.Minute, store.IdlePolicy{KeepWarmSeconds: 10, KeepSuspendedHours: 1}, time.Minute},
		{"policy says", time.Minute, store.IdlePolicy{KeepWarmSeconds: 10, KeepPausedSeconds: ptr(30), KeepSuspendedHours: 1}, 30 * time.Second},
		{"policy turns it off", time.Minute, store.IdlePolicy{KeepWarmSeconds: 10, KeepPausedSeconds: ptr(0), KeepSuspendedHours: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{KeepPaused: tt.daemon})
			fn, err := s.schedulerFunction(store.Function{FunctionName: "f", PackageType: store.PackageZip, CodeSha256: "AAAA", IdlePolicy: tt.policy}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if fn.KeepPaused != tt.want || fn.KeepWarm <= 0 || fn.KeepSuspended <= 0 {
				t.Errorf("keep warm %v paused %v suspended %v, want paused %v", fn.KeepWarm, fn.KeepPaused, fn.KeepSuspended, tt.want)
			}
		})
	}
}
