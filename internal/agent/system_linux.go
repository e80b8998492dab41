package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ModulesDir holds the kernel modules the initramfs carries, and the file
// ModulesOrder lists them in load order (dependencies first).
const (
	ModulesDir   = "/lib/modules/hearth"
	ModulesOrder = ModulesDir + "/order"
)

// prepareSystem makes the initramfs a usable Linux userland: the virtual
// file systems, the kernel modules of the devices, and a loopback interface
// for the Runtime API. It also shuts the function out of what is the
// agent's: see systemMounts and lockDevices.
func prepareSystem(taskRoot string, log *slog.Logger) error {
	// The initramfs root may be a tmpfs, whose root folder is
	// world-writable by default.
	if err := os.Chmod("/", 0o755); err != nil {
		return fmt.Errorf("chmod /: %w", err)
	}
	for _, m := range systemMounts(taskRoot) {
		if err := m.apply(); err != nil {
			return err
		}
	}
	// The kernel found no /dev/console in the initramfs to give PID 1 its
	// standard streams; now that devtmpfs is up, attach them.
	if con, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			_ = unix.Dup3(con, fd, 0)
		}
		_ = unix.Close(con)
	}
	for link, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		_ = os.Symlink(target, link)
	}
	for name, body := range map[string]string{"/etc/passwd": passwdFile(), "/etc/group": groupFile()} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return err
		}
	}
	if err := loadModules(log); err != nil {
		return err
	}
	if err := lockDevices("/dev"); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	_ = unix.Sethostname([]byte("hearth"))
	return nil
}

// mountSpec is one mount(2) call.
type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func (m mountSpec) apply() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	return nil
}

// DefaultTmpMB is the size of /tmp until the host says otherwise: Lambda's
// default EphemeralStorage.
const DefaultTmpMB = 512

// Mount flags: no setuid programs, no device nodes, and no programs.
const (
	noSuidDev     = unix.MS_NOSUID | unix.MS_NODEV
	noSuidDevExec = noSuidDev | unix.MS_NOEXEC
)

// systemMounts is how the guest's file systems are laid out, in order. The
// function runs as an unprivileged user, for whom:
//   - /tmp (and /dev/shm) is the one writable place, as in Lambda;
//   - the code (taskRoot) and the layers (/opt) are read-only mounts, so
//     that not even a root-owned file left writable by the zip's modes can
//     be changed, and setuid bits in them count for nothing;
//   - /proc hides other users' processes (hidepid=2): the agent's memory
//     map, environment and command line are not the function's to read;
//   - /sys is read-only.
func systemMounts(taskRoot string) []mountSpec {
	ms := []mountSpec{
		{"proc", "/proc", "proc", noSuidDevExec, "hidepid=2"},
		{"sysfs", "/sys", "sysfs", noSuidDevExec | unix.MS_RDONLY, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", noSuidDev, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", noSuidDev, tmpData(DefaultTmpMB)},
		{"tmpfs", "/run", "tmpfs", noSuidDevExec, "mode=0755"},
	}
	for _, dir := range []string{taskRoot, "/opt"} {
		// A folder of the initramfs is no mount of its own: bind it onto
		// itself, then make that bind read-only (a bind ignores the flags
		// it is made with but for MS_REC).
		ms = append(ms,
			mountSpec{dir, dir, "", unix.MS_BIND | unix.MS_REC, ""},
			mountSpec{"", dir, "", unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | noSuidDev, ""})
	}
	return ms
}

// tmpRemount resizes /tmp to the function's EphemeralStorage.
func tmpRemount(mb int) mountSpec {
	return mountSpec{"tmpfs", "/tmp", "tmpfs", unix.MS_REMOUNT | noSuidDev, tmpData(mb)}
}

func tmpData(mb int) string { return fmt.Sprintf("mode=1777,size=%dm", mb) }

// publicDevices are the device nodes any process may open. Every other node
// in /dev (the virtio-serial port to the host, the console and serial
// ports, /dev/kmsg, memory and disks) is root's alone.
var publicDevices = map[string]bool{
	"null": true, "zero": true, "full": true, "random": true, "urandom": true,
	"tty": true, "ptmx": true,
}

// devicePrivate says whether the node name in /dev, of type mode, must be
// closed to the function.
func devicePrivate(name string, mode fs.FileMode) bool {
	if mode&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
		return false // folders (pts, shm), symlinks, files
	}
	return !publicDevices[name]
}

// lockDevices makes every private device node in dir root's, mode 0600:
// devtmpfs gives some of them (the ttys, kmsg) modes that let others read
// or write.
func lockDevices(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !devicePrivate(e.Name(), e.Type()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Lchown(p, 0, 0); err != nil {
			return fmt.Errorf("lock device: %w", err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("lock device: %w", err)
		}
	}
	return nil
}

// loadModules loads the modules listed in ModulesOrder, if any.
func loadModules(log *slog.Logger) error {
	f, err := os.Open(ModulesOrder)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel with its drivers built in
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return loadModuleList(f, ModulesDir, loadModule, log)
}

// loadModuleList loads, with load, each module the order list names, in
// its order, from dir.
func loadModuleList(order io.Reader, dir string, load func(path string) error, log *slog.Logger) error {
	sc := bufio.NewScanner(order)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		if err := load(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		log.Debug("module loaded", "name", name)
	}
	return sc.Err()
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.FinitModule(fd, "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// setClock sets the wall clock from the host's.
func setClock(unixNano int64) error {
	if unixNano == 0 {
		return nil
	}
	ts := unix.NsecToTimespec(unixNano)
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// addEntropy mixes the host's random bytes into the kernel's pool and
// credits them, so that the guest's RNG differs from any other VM booted or
// restored from the same image.
func addEntropy(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := randPoolInfo(b)
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0])))
		if errno != 0 {
			ioErr = errno
			return
		}
		// Credited entropy alone does not reseed a ready CRNG until its
		// next scheduled reseed; force it, or clones stay alike.
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.RNDRESEEDCRNG, 0); errno != 0 {
			ioErr = errno
		}
	}); err != nil {
		return err
	}
	return ioErr
}

// randPoolInfo lays b out as RNDADDENTROPY takes it, credited in full:
// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
// with entropy_count in bits and buf_size in bytes.
func randPoolInfo(b []byte) []byte {
	info := make([]byte, 8+len(b))
	binary.NativeEndian.PutUint32(info[0:4], uint32(len(b)*8))
	binary.NativeEndian.PutUint32(info[4:8], uint32(len(b)))
	copy(info[8:], b)
	return info
}

// bootUptimeMs is the time since the guest kernel started.
func bootUptimeMs() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e6
}
