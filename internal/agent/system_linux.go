package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
// for the Runtime API.
func prepareSystem(log *slog.Logger) error {
	mounts := []struct {
		target, fstype string
		flags          uintptr
		data           string
	}{
		{"/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
		{"/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.target, err)
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
	if err := loadModules(log); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	_ = unix.Sethostname([]byte("hearth"))
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
