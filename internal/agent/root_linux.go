package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

// RootDir is where the agent mounts a function's own root (a container
// image's), inside the initramfs.
//
// Only the runtime is chrooted into it (SysProcAttr.Chroot), never the
// agent: the agent keeps its initramfs, with its channel to the host, its
// modules and its /etc, and needs nothing moved or pivoted (pivot_root does
// not work from an initramfs anyway). The function sees the same /dev,
// /proc and /sys as a zip function does, mounted again inside the root, so
// every rule of systemMounts and lockDevices holds there too.
const RootDir = "/newroot"

// diskWait bounds the wait for a disk's device to appear: the drivers probe
// at boot, before the agent runs, but a slow probe must not fail an init.
const diskWait = 5 * time.Second

// rootMount is one step of a root's set-up: a mount whose target must
// already exist in the (read-only) root, except the root itself.
type rootMount struct {
	mountSpec
	// need says what the target is for, when it must exist in the image.
	need string
}

// rootMounts is how a function's root is laid out, in order, given the
// devices of its disks:
//   - the image, read-only, without setuid or device nodes;
//   - /tmp, the environment's own disk: the one writable place, as in
//     Lambda, with discards passed to the host's sparse file and no
//     background zeroing of inode tables (the host made it with none to do);
//   - /proc (hidepid=2) and /sys (read-only) mounted afresh, /dev bound from
//     the agent's (its private nodes are root's, 0600);
//   - for a zip (no command), its code and layers bound read-only from the
//     initramfs.
func rootMounts(root, rootDev, tmpDev, taskRoot string, zip bool) []rootMount {
	in := func(p string) string { return filepath.Join(root, p) }
	ms := []rootMount{
		{mountSpec: mountSpec{rootDev, root, "ext4", unix.MS_RDONLY | noSuidDev, ""}},
		{tmpDiskMount(tmpDev, in("/tmp")), "the writable /tmp"},
		{mountSpec{"proc", in("/proc"), "proc", noSuidDevExec, "hidepid=2"}, "/proc"},
		{mountSpec{"sysfs", in("/sys"), "sysfs", noSuidDevExec | unix.MS_RDONLY, ""}, "/sys"},
		{mountSpec{"/dev", in("/dev"), "", unix.MS_BIND | unix.MS_REC, ""}, "/dev"},
	}
	if zip {
		for _, dir := range []string{taskRoot, "/opt"} {
			ms = append(ms,
				rootMount{mountSpec{dir, in(dir), "", unix.MS_BIND | unix.MS_REC, ""}, dir},
				rootMount{mountSpec{"", in(dir), "", unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | noSuidDev, ""}, dir})
		}
	}
	return ms
}

// mountRoot finds r's disks and mounts the function's root at RootDir.
func mountRoot(r *guestproto.Root, taskRoot string) error {
	rootDev, err := findDisk(r.Disk, diskWait)
	if err != nil {
		return err
	}
	tmpDev, err := findDisk(r.TmpDisk, diskWait)
	if err != nil {
		return err
	}
	for _, m := range rootMounts(RootDir, rootDev, tmpDev, taskRoot, len(r.Command) == 0) {
		if m.need != "" {
			if fi, err := os.Stat(m.target); err != nil || !fi.IsDir() {
				return fmt.Errorf("the image has no folder %s for %s: add it to the image", strings.TrimPrefix(m.target, RootDir), m.need)
			}
		}
		if err := m.apply(); err != nil {
			return err
		}
	}
	return openTmp(filepath.Join(RootDir, "tmp"))
}

// findDisk returns the device node of the virtio-blk disk whose serial is
// serial, waiting up to wait for it to appear.
func findDisk(serial string, wait time.Duration) (string, error) {
	if serial == "" {
		return "", errors.New("no disk named")
	}
	deadline := time.Now().Add(wait)
	for {
		if dev, ok := diskBySerial("/sys/block", serial); ok {
			return "/dev/" + dev, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no disk with serial %q appeared", serial)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// diskBySerial looks through sysBlock (/sys/block) for the disk whose
// serial file says serial.
func diskBySerial(sysBlock, serial string) (string, bool) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return e.Name(), true
		}
	}
	return "", false
}
