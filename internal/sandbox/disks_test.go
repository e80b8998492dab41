package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

func TestMakeTmpDiskIsSparseExt4(t *testing.T) {
	p := filepath.Join(t.TempDir(), tmpDiskFile)
	if err := makeTmpDisk(context.Background(), p, 10240); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 10240<<20 {
		t.Errorf("size %d, want 10 GiB", fi.Size())
	}
	if used := vmm.DiskBytes(p); used > 64<<20 {
		t.Errorf("a 10 GiB /tmp disk takes %d MiB on the host: not sparse", used>>20)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 2)
	if _, err := f.ReadAt(sb, 1024+0x38); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(sb) != 0xEF53 {
		t.Errorf("no ext4 superblock magic: %x", sb)
	}
}

func TestCopySparseKeepsDataAndHoles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(64 << 20)
	chunks := map[int64][]byte{0: bytes.Repeat([]byte("a"), 4096), 32 << 20: bytes.Repeat([]byte("b"), 8192), size - 4096: bytes.Repeat([]byte("c"), 4096)}
	for off, b := range chunks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	dst := filepath.Join(dir, "dst")
	if err := copySparse(dst, src); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(got)) != size {
		t.Fatalf("copy is %d bytes, want %d", len(got), size)
	}
	for off, b := range chunks {
		if !bytes.Equal(got[off:off+int64(len(b))], b) {
			t.Errorf("data at %d differs", off)
		}
	}
	if used := vmm.DiskBytes(dst); used > 4<<20 {
		t.Errorf("the copy takes %d KiB on disk: its holes were filled", used>>10)
	}
	if err := copySparse(dst, src); err == nil {
		t.Error("copySparse overwrote an existing file")
	}
}

func TestValidateRefusesAChangedRoot(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "rootfs.ext4")
	if err := os.WriteFile(disk, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	root := &Root{Disk: disk, Digest: "sha256:abc", Size: 8192, Command: []string{"/fn"}}
	if err := root.check(); err != nil {
		t.Fatalf("same disk refused: %v", err)
	}
	if err := os.WriteFile(disk, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := root.check(); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("changed disk: %v, want ErrSnapshotInvalid", err)
	}
	os.Remove(disk)
	if err := root.check(); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("missing disk: %v, want ErrSnapshotInvalid", err)
	}
	fn := Function{Root: root, EphemeralStorageMB: 512}
	if err := checkTmpDisk(fn, dir); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("missing /tmp disk: %v, want ErrSnapshotInvalid", err)
	}
	// A zip function's /tmp is a disk too: a snapshot made before it was
	// (none in its folder) is refused, and the environment booted cold.
	if err := checkTmpDisk(Function{}, dir); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("zip function, missing /tmp disk: %v, want ErrSnapshotInvalid", err)
	}
	if err := makeTmpDisk(context.Background(), filepath.Join(dir, tmpDiskFile), DefaultTmpMB); err != nil {
		t.Fatal(err)
	}
	if err := checkTmpDisk(Function{}, dir); err != nil {
		t.Errorf("zip function with its /tmp disk: %v", err)
	}
	if err := checkTmpDisk(Function{EphemeralStorageMB: 1024}, dir); !errors.Is(err, ErrSnapshotInvalid) {
		t.Errorf("/tmp disk of another size: %v, want ErrSnapshotInvalid", err)
	}
}

func TestEnvSpecAttachesRootAndTmp(t *testing.T) {
	dir := t.TempDir()
	fn := Function{Name: "f", MemoryMB: 128, Root: &Root{Disk: "/cache/sha256-x/rootfs.ext4", Command: []string{"/fn"}}}
	e := newEnv(Config{Log: nil}.withDefaults(), fn, Image{}, "env-x", dir)
	want := []vmm.Disk{{Path: "/cache/sha256-x/rootfs.ext4", ReadOnly: true, Serial: rootSerial}, {Path: filepath.Join(dir, tmpDiskFile), Serial: tmpSerial}}
	if len(e.spec.Disks) != 2 || e.spec.Disks[0] != want[0] || e.spec.Disks[1] != want[1] {
		t.Errorf("disks %+v, want %+v", e.spec.Disks, want)
	}
	// A zip function in the initramfs has no root, but its /tmp is a disk.
	if e := newEnv(Config{}.withDefaults(), Function{Name: "z", MemoryMB: 128}, Image{}, "env-y", dir); len(e.spec.Disks) != 1 || e.spec.Disks[0] != want[1] {
		t.Errorf("a zip function's disks %+v, want only %+v", e.spec.Disks, want[1])
	}
}
