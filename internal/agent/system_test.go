package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLoadModuleList(t *testing.T) {
	tests := []struct {
		name    string
		order   string
		failOn  string
		want    []string
		wantErr string
	}{
		{"in order", "virtio.ko\nvirtio_ring.ko\nvirtio_mmio.ko\n", "", []string{"/m/virtio.ko", "/m/virtio_ring.ko", "/m/virtio_mmio.ko"}, ""},
		{"blank lines and spaces", "\n  a.ko  \n\n\tb.ko\n", "", []string{"/m/a.ko", "/m/b.ko"}, ""},
		{"no trailing newline", "a.ko", "", []string{"/m/a.ko"}, ""},
		{"empty list", "", "", nil, ""},
		{"stops at the first failure", "a.ko\nbad.ko\nc.ko\n", "/m/bad.ko", []string{"/m/a.ko", "/m/bad.ko"}, "module bad.ko: no such device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var loaded []string
			load := func(path string) error {
				loaded = append(loaded, path)
				if path == tt.failOn {
					return errors.New("no such device")
				}
				return nil
			}
			err := loadModuleList(strings.NewReader(tt.order), "/m", load, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if !slices.Equal(loaded, tt.want) {
				t.Errorf("loaded %v, want %v", loaded, tt.want)
			}
		})
	}
}

func TestRandPoolInfo(t *testing.T) {
	for _, n := range []int{0, 1, 32, 256} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + 1)
		}
		info := randPoolInfo(b)
		bits := binary.NativeEndian.Uint32(info[0:4])
		size := binary.NativeEndian.Uint32(info[4:8])
		if len(info) != 8+n || bits != uint32(8*n) || size != uint32(n) || string(info[8:]) != string(b) {
			t.Errorf("%d bytes: len %d, entropy_count %d, buf_size %d", n, len(info), bits, size)
		}
	}
}

// What the function may write and see is decided by the mount plan: /tmp
// is writable and sized as Lambda's default, the code and layers are
// read-only binds, other users' processes are hidden and /sys is read-only.
func TestSystemMounts(t *testing.T) {
	plan := systemMounts("/var/task")
	last := map[string]mountSpec{} // the final state of each target
	binds := map[string]bool{}
	for _, m := range plan {
		last[m.target] = m
		if m.flags&unix.MS_BIND != 0 && m.flags&unix.MS_REMOUNT == 0 {
			if m.source != m.target {
				t.Errorf("bind %s onto %s, want onto itself", m.source, m.target)
			}
			binds[m.target] = true
		}
	}
	tests := []struct {
		target string
		set    uintptr // flags that must be set
		clear  uintptr // flags that must not be
		data   string  // options that must appear
		roBind bool
	}{
		{"/var/task", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, 0, "", true},
		{"/opt", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, 0, "", true},
		{"/tmp", unix.MS_NOSUID | unix.MS_NODEV, unix.MS_RDONLY | unix.MS_NOEXEC, "mode=1777,size=512m", false},
		{"/proc", unix.MS_NOSUID | unix.MS_NOEXEC, 0, "hidepid=2", false},
		{"/sys", unix.MS_RDONLY | unix.MS_NOSUID, 0, "", false},
		{"/dev", unix.MS_NOSUID | unix.MS_NOEXEC, 0, "mode=0755", false},
	}
	for _, tt := range tests {
		m, ok := last[tt.target]
		if !ok {
			t.Errorf("%s not mounted", tt.target)
			continue
		}
		if m.flags&tt.set != tt.set || m.flags&tt.clear != 0 || !strings.Contains(m.data, tt.data) {
			t.Errorf("%s: flags %#x data %q; want %#x set, %#x clear, %q", tt.target, m.flags, m.data, tt.set, tt.clear, tt.data)
		}
		if tt.roBind && (!binds[tt.target] || m.flags&(unix.MS_REMOUNT|unix.MS_BIND) != unix.MS_REMOUNT|unix.MS_BIND) {
			t.Errorf("%s: not a bind remounted read-only: %+v", tt.target, m)
		}
	}
	// /proc comes first: the rest of the set-up reads it.
	if plan[0].target != "/proc" {
		t.Errorf("first mount %s, want /proc", plan[0].target)
	}
	if r := tmpRemount(2048); r.target != "/tmp" || r.flags&unix.MS_REMOUNT == 0 || r.data != "mode=1777,size=2048m" {
		t.Errorf("tmpRemount(2048) = %+v", r)
	}
}

// Only the harmless devices stay open to the function; the host's channel,
// the console and the kernel log are root's.
func TestDevicePrivate(t *testing.T) {
	char := fs.ModeDevice | fs.ModeCharDevice
	tests := []struct {
		name string
		mode fs.FileMode
		want bool
	}{
		{"vport1p1", char, true},
		{"console", char, true},
		{"ttyS0", char, true},
		{"hvc0", char, true},
		{"kmsg", char, true},
		{"mem", char, true},
		{"vda", fs.ModeDevice, true},
		{"null", char, false},
		{"zero", char, false},
		{"urandom", char, false},
		{"random", char, false},
		{"full", char, false},
		{"tty", char, false},
		{"ptmx", char, false},
		{"pts", fs.ModeDir, false},
		{"shm", fs.ModeDir, false},
		{"stdout", fs.ModeSymlink, false},
	}
	for _, tt := range tests {
		if got := devicePrivate(tt.name, tt.mode); got != tt.want {
			t.Errorf("devicePrivate(%s, %v) = %v, want %v", tt.name, tt.mode, got, tt.want)
		}
	}
}
