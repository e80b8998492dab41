package vmboot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Stored images are a cache: each is made again from its zip when it is
// missing. Without eviction the images folder would keep one initramfs
// (the agent and the code: megabytes) for every code update, and for
// every agent build ever run. PruneImages removes the ones unused for a
// while that no environment's folder names.

// usedFile marks, by its time, when an image was last used: the
// initramfs's own time cannot be touched, as a suspended environment's
// manifest pins it by its size and time.
const usedFile = "used"

// markUsedEvery bounds how often a use writes the mark.
const markUsedEvery = time.Hour

// markUsed records that the image in dir is used now (at most once per
// markUsedEvery: a cold start should not write to disk for this).
func markUsed(dir string) {
	p := filepath.Join(dir, usedFile)
	if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) < markUsedEvery {
		return
	}
	now := time.Now()
	if err := os.Chtimes(p, now, now); errors.Is(err, os.ErrNotExist) {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			_ = f.Close()
		}
	}
}

// lastUse is when the image in dir was last used or built.
func lastUse(dir string) time.Time {
	var last time.Time
	for _, p := range []string{dir, filepath.Join(dir, imageFile), filepath.Join(dir, usedFile)} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	return last
}

// PruneImages removes from imagesDir the images unused for unusedFor
// (their last use marked within markUsedEvery) whose initramfs no
// environment, template or MicroVM folder names (inUse, by path): a
// suspended one needs its initramfs to resume. It returns the folders
// removed. An image being built is never removed.
func (h *Host) PruneImages(imagesDir string, unusedFor time.Duration, inUse map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(imagesDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	// Unused for the whole window, so also while the lock is held below:
	// a use marks the image under the same lock.
	c := &h.images
	c.mu.Lock()
	defer c.mu.Unlock()
	var removed []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(imagesDir, e.Name())
		p := filepath.Join(dir, imageFile)
		if inUse[p] || c.building[p] != nil || time.Since(lastUse(dir)) < unusedFor+markUsedEvery {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, fmt.Errorf("prune images: %w", err)
		}
		removed = append(removed, dir)
	}
	return removed, nil
}
