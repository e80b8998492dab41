package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
	"github.com/hearthdev/hearth/internal/vmm"
)

// Root is a function's own root file system: a container image's, built
// into a read-only ext4 disk (package rootfs) shared by all its
// environments, and the command that starts its runtime there.
type Root struct {
	// Disk is the ext4 image's path; Digest the image's manifest digest,
	// which its path names (the cache is by digest), and Size its size: a
	// snapshot is restored only onto the same disk.
	Disk   string `json:"disk"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Command is the runtime's argv in the root (ENTRYPOINT and CMD after
	// the function's overrides), WorkingDir its folder there ("" is /).
	Command    []string `json:"command"`
	WorkingDir string   `json:"workingDir,omitempty"`
}

// The disks of an environment, as the guest knows them.
const (
	rootSerial = "hearth-root"
	tmpSerial  = "hearth-tmp"
	// tmpDiskFile is the environment's /tmp, in its folder: kept across a
	// suspend, copied into each clone of a template.
	tmpDiskFile = "tmp.ext4"
)

// DefaultTmpMB is the size of /tmp when the function sets none: Lambda's
// default EphemeralStorage.
const DefaultTmpMB = 512

// disks is what an environment of fn in dir attaches: for a function with
// a root, the root (read-only); for every function, the environment's
// /tmp. /tmp is a disk even for a zip in the initramfs: a tmpfs would live
// in the guest's memory, and a 128 MB function could not fill the 10 GB
// /tmp Lambda lets it have. The disk is sparse: it costs the host what the
// function writes.
func disks(fn Function, dir string) []vmm.Disk {
	tmp := vmm.Disk{Path: filepath.Join(dir, tmpDiskFile), Serial: tmpSerial}
	if fn.Root == nil {
		return []vmm.Disk{tmp}
	}
	return []vmm.Disk{{Path: fn.Root.Disk, ReadOnly: true, Serial: rootSerial}, tmp}
}

// guestRoot is the Init message's account of fn's root.
func guestRoot(fn Function) *guestproto.Root {
	if fn.Root == nil {
		return nil
	}
	return &guestproto.Root{Disk: rootSerial, TmpDisk: tmpSerial, Command: fn.Root.Command, WorkingDir: fn.Root.WorkingDir}
}

func tmpMB(fn Function) int {
	if fn.EphemeralStorageMB > 0 {
		return fn.EphemeralStorageMB
	}
	return DefaultTmpMB
}

// makeTmpDisk makes a fresh, empty ext4 disk of mb megabytes at path. The
// file is sparse and mkfs initialises no inode tables (the guest mounts it
// with noinit_itable): a 10 GB disk takes a few megabytes and milliseconds.
// No journal: /tmp does not outlive its environment, and a crash ends the
// environment. No blocks are reserved for root: the function gets them all.
func makeTmpDisk(ctx context.Context, path string, mb int) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(mb) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
		"-E", "root_owner=0:0,lazy_itable_init=1,nodiscard", "-L", "tmp", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(path)
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("/tmp disk: mkfs.ext4 is not installed (apt-get install e2fsprogs): %w", err)
		}
		return fmt.Errorf("/tmp disk: mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// copySparse copies the file src to a new file dst, sharing its blocks
// (FICLONE) where the file system can, else copying only its data and
// leaving its holes holes: a clone's /tmp costs what the template wrote
// into it, not its size.
func copySparse(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return nil
	}
	size := fi.Size()
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from here on
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		off = hole
	}
	return out.Truncate(size)
}

// check refuses a snapshot whose root disk is gone or is not the one
// it was made with: a guest restored onto another file system would find
// its page cache and its open files wrong.
func (r *Root) check() error {
	if r == nil {
		return nil
	}
	fi, err := os.Stat(r.Disk)
	if err != nil {
		return fmt.Errorf("%w: its root disk (image %s) is gone: %v", ErrSnapshotInvalid, r.Digest, err)
	}
	if fi.Size() != r.Size {
		return fmt.Errorf("%w: its root disk %s changed since the snapshot (%d bytes, was %d)", ErrSnapshotInvalid, r.Disk, fi.Size(), r.Size)
	}
	return nil
}

// checkTmpDisk refuses a snapshot whose /tmp disk is not in dir: the
// guest had it attached and mounted. A zip function's snapshot made before
// /tmp was a disk has none, and falls back to a cold start.
func checkTmpDisk(fn Function, dir string) error {
	fi, err := os.Stat(filepath.Join(dir, tmpDiskFile))
	if err != nil {
		return fmt.Errorf("%w: its /tmp disk: %v", ErrSnapshotInvalid, err)
	}
	if want := int64(tmpMB(fn)) << 20; fi.Size() != want {
		return fmt.Errorf("%w: its /tmp disk is %d bytes, not %d", ErrSnapshotInvalid, fi.Size(), want)
	}
	return nil
}
