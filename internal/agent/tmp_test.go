package agent

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A zip function's /tmp disk is mounted as the tmpfs it replaces was: no
// setuid, no device nodes, writable and executable.
func TestTmpDiskMount(t *testing.T) {
	m := tmpDiskMount("/dev/vda", "/tmp")
	if m.source != "/dev/vda" || m.target != "/tmp" || m.fstype != "ext4" {
		t.Errorf("mount %+v, want /dev/vda on /tmp as ext4", m)
	}
	if set := uintptr(unix.MS_NOSUID | unix.MS_NODEV); m.flags&set != set {
		t.Errorf("flags %#x: want nosuid and nodev", m.flags)
	}
	if m.flags&(unix.MS_RDONLY|unix.MS_NOEXEC|unix.MS_BIND|unix.MS_REMOUNT) != 0 {
		t.Errorf("flags %#x: /tmp must be a writable, executable mount of its own", m.flags)
	}
	if m.data != "noinit_itable,discard" {
		t.Errorf("data %q: want discards passed to the sparse file, no itable zeroing", m.data)
	}
}

// openTmp leaves /tmp open to everyone, sticky, without mkfs's lost+found.
func TestOpenTmp(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := openTmp(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModeSticky|os.ModePerm) != os.ModeSticky|0o777 {
		t.Errorf("mode %v, want drwxrwxrwt", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "lost+found")); !os.IsNotExist(err) {
		t.Errorf("lost+found still there: %v", err)
	}
}
