package runtimes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The roots' place in Hearth's cache (the folder scripts/build-kernel.sh
// and the CLI share): scripts/build-runtimes.sh builds into
// <cache>/runtimes/<hash>/ and points <cache>/runtimes/current at it.
const (
	cacheSubdir = "runtimes"
	currentLink = "current"
)

// DiskName and ManifestName are a runtime's files in a build's folder.
func DiskName(runtime string) string     { return runtime + ".ext4" }
func ManifestName(runtime string) string { return runtime + ".json" }

// ErrNotBuilt is wrapped by RootPath's error when the cache holds no
// current root for the runtime.
var ErrNotBuilt = errors.New("managed runtime root not built")

// RootPath returns the path of the read-only root disk of the managed
// runtime name in the cache folder cacheDir. It checks that the root holds
// the RIC this binary embeds: a root built from older sources is refused
// like a missing one, both with an error that says to run `make runtimes`.
func RootPath(cacheDir, name string) (string, error) {
	rt, err := Lookup(name)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, cacheSubdir, currentLink)
	disk := filepath.Join(dir, DiskName(name))
	if _, err := os.Stat(disk); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: no %s: run `make runtimes` (scripts/build-runtimes.sh)", ErrNotBuilt, disk)
		}
		return "", fmt.Errorf("runtime %s: %w", name, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName(name)))
	if err != nil {
		return "", fmt.Errorf("%w: %s has no manifest (%v): run `make runtimes` (scripts/build-runtimes.sh)", ErrNotBuilt, disk, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("runtime %s: manifest: %w", name, err)
	}
	want, err := rt.RICDigest()
	if err != nil {
		return "", err
	}
	if m.RICDigest != want {
		return "", fmt.Errorf("%w: %s holds another runtime interface client than this build of Hearth: run `make runtimes` (scripts/build-runtimes.sh)", ErrNotBuilt, disk)
	}
	// The link's target, so that a rebuild moving "current" does not change
	// a disk under an environment that uses it.
	return filepath.EvalSymlinks(disk)
}
