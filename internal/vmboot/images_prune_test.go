package vmboot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// ageImage makes the image folder of initrd look unused for d.
func ageImage(t *testing.T, initrd string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	dir := filepath.Dir(initrd)
	for _, p := range []string{initrd, filepath.Join(dir, usedFile), dir} {
		if err := os.Chtimes(p, old, old); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// Images unused for long go, unless an environment names them; a use
// marks an image without touching the initramfs (a suspended
// environment's manifest pins its time), and a pruned image is built
// again when next asked for.
func TestPruneImages(t *testing.T) {
	ctx := context.Background()
	h := testHost(t)
	images, zips := t.TempDir(), t.TempDir()
	build := func(marker string) (string, string, string) {
		t.Helper()
		p, digest := writeZip(t, zips, marker+".zip", marker)
		img, err := h.CodeImage(ctx, images, digest, p)
		if err != nil {
			t.Fatal(err)
		}
		return img.Initrd, digest, p
	}
	unused, unusedDigest, unusedZip := build("unused")
	named, _, _ := build("named-by-a-suspended-env")
	fresh, _, _ := build("fresh")
	used, usedDigest, usedZip := build("used-again")
	for _, p := range []string{unused, named, used} {
		ageImage(t, p, 10*24*time.Hour)
	}
	before, err := os.Stat(used)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.CodeImage(ctx, images, usedDigest, usedZip); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(used); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("a use changed the initramfs's time: %v → %v (%v)", before.ModTime(), after.ModTime(), err)
	}

	removed, err := h.PruneImages(images, 7*24*time.Hour, map[string]bool{named: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{filepath.Dir(unused)}) {
		t.Errorf("removed %v, want only %s", removed, filepath.Dir(unused))
	}
	for _, p := range []string{named, fresh, used} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("kept image %s: %v", p, err)
		}
	}
	img, err := h.CodeImage(ctx, images, unusedDigest, unusedZip)
	if err != nil || img.Initrd != unused {
		t.Fatalf("a pruned image asked for again: %+v %v", img, err)
	}
	if _, err := os.Stat(unused); err != nil {
		t.Errorf("not built again: %v", err)
	}
}
