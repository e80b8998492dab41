package invoke

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/runtimes"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// Hearth's idle policy when a function has none stored.
const (
	defaultKeepWarm      = 60 * time.Second
	defaultKeepSuspended = 24 * time.Hour
	// DefaultKeepPaused is how long a paused environment is kept before it
	// is suspended. Measured under emulation: a paused hello holds ~90 MiB
	// of host RSS (QEMU's translation cache, heap and binary; its guest RAM
	// is out) against ~167 MiB warm, and answers in ~10–80 ms against
	// ~220–330 ms for a resume; five minutes covers the gaps of a function
	// called now and then without keeping a process for ever.
	DefaultKeepPaused = 5 * time.Minute
)

// schedulerFunction turns a stored configuration (the API's wire shape)
// into what the scheduler runs, so that the scheduler never sees the wire
// shape.
func (s *Service) schedulerFunction(f store.Function, reserved *int) (scheduler.Function, error) {
	fn := scheduler.Function{
		Function: sandbox.Function{Name: f.FunctionName, Version: f.Version, MemoryMB: f.MemorySize,
			Timeout: time.Duration(f.Timeout) * time.Second, Handler: f.Handler, Region: s.cfg.Region, Network: f.NetworkPolicy},
		Revision:      f.RevisionID,
		CodeDigest:    f.CodeDigest(),
		Reserved:      reserved,
		KeepWarm:      time.Duration(f.IdlePolicy.KeepWarmSeconds) * time.Second,
		KeepPaused:    s.DefaultKeepPaused(),
		KeepSuspended: time.Duration(f.IdlePolicy.KeepSuspendedHours) * time.Hour,
		// A version published while its function's SnapStart applied to
		// published versions is optimized, as Lambda says; the daemon's
		// --snap-start applies to every revision.
		SnapStart: s.cfg.SnapStart || (f.SnapStart != nil && f.SnapStart.OptimizationStatus == "On"),
	}
	if f.Environment != nil {
		fn.Env = f.Environment.Variables
	}
	if f.EphemeralStorage != nil {
		fn.EphemeralStorageMB = f.EphemeralStorage.Size
	}
	if img := f.Image; f.PackageType == store.PackageImage && img != nil {
		fn.Root = &sandbox.Root{Disk: img.RootDisk, Digest: img.Digest, Size: img.RootSize,
			Command: img.Command, WorkingDir: img.WorkingDir}
		fn.Env = imageEnv(img.Env, fn.Env)
	}
	if f.PackageType != store.PackageImage && isManaged(f.Runtime) {
		root, err := managedRoot(s.cfg.CacheDir, f.Runtime)
		if err != nil {
			return scheduler.Function{}, err
		}
		fn.Root = root
	}
	if s.cfg.Services != nil {
		env, port := s.cfg.Services.GuestServices(f.FunctionName)
		merged := maps.Clone(fn.Env)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, env)
		fn.Env, fn.ServicesPort = merged, port
	}
	if p := f.IdlePolicy.KeepPausedSeconds; p != nil {
		fn.KeepPaused = time.Duration(*p) * time.Second
	}
	if f.IdlePolicy.KeepWarmSeconds == 0 && f.IdlePolicy.KeepSuspendedHours == 0 {
		fn.KeepWarm, fn.KeepSuspended = defaultKeepWarm, defaultKeepSuspended
	}
	if fn.KeepSuspended <= 0 {
		fn.KeepSuspended = defaultKeepSuspended
	}
	return fn, nil
}

func isManaged(runtime string) bool {
	_, err := runtimes.Lookup(runtime)
	return err == nil
}

// managedRoot is the root of a zip function on the managed runtime name:
// the runtime's read-only disk, on which the agent binds the zip at
// /var/task and runs the runtime's /var/runtime/bootstrap (no Command). A
// snapshot is pinned to the disk's path, which names the build's hash, and
// its size, as an image's is.
func managedRoot(cacheDir, name string) (*sandbox.Root, error) {
	disk, err := runtimes.RootPath(cacheDir, name)
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", name, err)
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", name, err)
	}
	return &sandbox.Root{Disk: disk, Digest: name + "@" + filepath.Base(filepath.Dir(disk)), Size: fi.Size()}, nil
}

// imageEnv is an image's ENV ("K=V" lines) under the function's
// Environment: the function's variables win, as in Lambda.
func imageEnv(image []string, fn map[string]string) map[string]string {
	if len(image) == 0 {
		return fn
	}
	env := make(map[string]string, len(image)+len(fn))
	for _, kv := range image {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	maps.Copy(env, fn)
	return env
}

// invokable refuses a function that cannot run yet (its image is being
// built) or at all (its image failed), with Lambda's answer.
func invokable(f store.Function) error {
	switch f.State {
	case "", "Active":
		return nil
	}
	return lambdaerr.ResourceConflict("The operation cannot be performed at this time. The function is currently in the following state: %s", f.State)
}

// layers returns the digests of f's layer zips, in f's order. A layer
// version's ARN names one zip for good (a layer's version numbers are never
// reused), so each ARN is looked up once, not on every invocation.
func (s *Service) layers(ctx context.Context, f store.Function) ([]string, error) {
	if len(f.Layers) == 0 {
		return nil, nil
	}
	digests := make([]string, len(f.Layers))
	for i, l := range f.Layers {
		d, ok := s.layerDigests.Load(l.Arn)
		if !ok {
			return s.lookUpLayers(ctx, f)
		}
		digests[i] = d.(string)
	}
	return digests, nil
}

func (s *Service) lookUpLayers(ctx context.Context, f store.Function) ([]string, error) {
	lvs, err := s.cfg.Functions.FunctionLayers(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", f.FunctionName, err)
	}
	if len(lvs) != len(f.Layers) {
		return nil, fmt.Errorf("reading the layers of %s: %d layer versions for %d layers", f.FunctionName, len(lvs), len(f.Layers))
	}
	digests := make([]string, len(lvs))
	for i, lv := range lvs {
		s.layerDigests.Store(f.Layers[i].Arn, lv.Digest)
		digests[i] = lv.Digest
	}
	return digests, nil
}
