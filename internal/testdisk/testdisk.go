// Package testdisk gives tests a small file system of their own that they
// can fill, to see what Hearth does when the disk is full: a real tmpfs,
// so every write fails with ENOSPC as on a full disk. Mounting needs root
// (CAP_SYS_ADMIN), as the tests that boot VMs do. Nothing here is used by
// the product.
package testdisk

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a fresh folder and returns it;
// it is unmounted when t ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	opts := "size=" + strconv.FormatInt(size, 10) + ",mode=0700"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		t.Fatalf("mount a tmpfs on %s (the full-disk tests need root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file into dir's file system until at most leave bytes are
// free (rounded to its blocks), and returns a function that frees them.
func Fill(t testing.TB, dir string, leave int64) (free func()) {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for Free(t, dir) > leave {
		n := min(int64(len(buf)), Free(t, dir)-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	return func() { _ = os.Remove(p) }
}

// Free is the bytes still free in dir's file system.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
