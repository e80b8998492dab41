package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/guestproto"
)

func TestRootMounts(t *testing.T) {
	type step struct {
		source, target, fstype string
		flags                  uintptr
		data                   string
	}
	image := []step{
		{"/dev/vdb", "/r", "ext4", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV, ""},
		{"/dev/vda", "/r/tmp", "ext4", unix.MS_NOSUID | unix.MS_NODEV, "noinit_itable,discard"},
		{"proc", "/r/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "hidepid=2"},
		{"sysfs", "/r/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY, ""},
		{"/dev", "/r/dev", "", unix.MS_BIND | unix.MS_REC, ""},
	}
	ro := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	zip := append(slices.Clone(image),
		step{"/var/task", "/r/var/task", "", unix.MS_BIND | unix.MS_REC, ""},
		step{"", "/r/var/task", "", ro, ""},
		step{"/opt", "/r/opt", "", unix.MS_BIND | unix.MS_REC, ""},
		step{"", "/r/opt", "", ro, ""})
	for _, tc := range []struct {
		name string
		zip  bool
		want []step
	}{{"image", false, image}, {"zip on a root", true, zip}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []step
			for i, m := range rootMounts("/r", "/dev/vdb", "/dev/vda", "/var/task", tc.zip) {
				got = append(got, step{m.source, m.target, m.fstype, m.flags, m.data})
				if (i == 0) != (m.need == "") {
					t.Errorf("mount %d (%s): need %q; only the root itself may be made", i, m.target, m.need)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDiskBySerial(t *testing.T) {
	sys := t.TempDir()
	for dev, serial := range map[string]string{"vda": "hearth-tmp\n", "vdb": "hearth-root"} {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "serial"), []byte(serial), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sys, "loop0"), 0o755); err != nil { // no serial
		t.Fatal(err)
	}
	for serial, want := range map[string]string{"hearth-root": "vdb", "hearth-tmp": "vda", "hearth": ""} {
		got, ok := diskBySerial(sys, serial)
		if got != want || ok != (want != "") {
			t.Errorf("diskBySerial(%q) = %q, %v; want %q", serial, got, ok, want)
		}
	}
}

func TestRuntimeCmdForARoot(t *testing.T) {
	tests := []struct {
		name     string
		system   bool
		root     guestproto.Root
		wantArgv []string
		wantDir  string
		chroot   string
	}{
		{"image command", true, guestproto.Root{Command: []string{"/app/fn", "-v"}, WorkingDir: "/app"}, []string{"/app/fn", "-v"}, "/app", RootDir},
		{"no working dir is /", true, guestproto.Root{Command: []string{"/fn"}}, []string{"/fn"}, "/", RootDir},
		{"zip on a root", true, guestproto.Root{}, []string{"/var/task/bootstrap"}, "/var/task", RootDir},
		{"host process: no chroot", false, guestproto.Root{Command: []string{"/fn"}}, []string{"/fn"}, "/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{cfg: Config{System: tc.system, TaskRoot: "/var/task", RuntimeAPIAddr: "127.0.0.1:9001"}}
			root := tc.root
			rc, err := a.runtimeCmd(guestproto.Init{Root: &root})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.argv, tc.wantArgv) || rc.dir != tc.wantDir || rc.chroot != tc.chroot {
				t.Errorf("got argv %q dir %q chroot %q; want %q %q %q", rc.argv, rc.dir, rc.chroot, tc.wantArgv, tc.wantDir, tc.chroot)
			}
			if !slices.Contains(rc.env, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001") {
				t.Errorf("env lacks the Runtime API: %q", rc.env)
			}
		})
	}
}
