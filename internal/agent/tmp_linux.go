package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// tmpDiskMount mounts the environment's /tmp disk dev at target: the
// function's one writable place, as in Lambda, without setuid or device
// nodes, with discards passed to the host's sparse file and no background
// zeroing of inode tables (the host made it with none to do).
func tmpDiskMount(dev, target string) mountSpec {
	return mountSpec{dev, target, "ext4", noSuidDev, "noinit_itable,discard"}
}

// openTmp readies the freshly mounted /tmp disk at dir for the function.
// Its file system is root's (mkfs -E root_owner=0:0): open it to everyone,
// sticky, as /tmp is; mkfs's lost+found has no use here.
func openTmp(dir string) error {
	_ = os.Remove(filepath.Join(dir, "lost+found"))
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		return fmt.Errorf("chmod /tmp: %w", err)
	}
	return nil
}

// mountTmpDisk puts the disk whose serial is serial at /tmp in place of the
// tmpfs systemMounts made, for a function that runs in the initramfs: a
// tmpfs lives in the guest's memory, the disk in a sparse file on the host,
// so the function gets its whole EphemeralStorage whatever its memory. The
// tmpfs is empty (the runtime has not started) and is unmounted first.
func mountTmpDisk(serial string) error {
	dev, err := findDisk(serial, diskWait)
	if err != nil {
		return err
	}
	if err := unix.Unmount("/tmp", 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount the /tmp tmpfs: %w", err)
	}
	if err := tmpDiskMount(dev, "/tmp").apply(); err != nil {
		return err
	}
	return openTmp("/tmp")
}
