package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/hearthdev/hearth/internal/vmm"
)

// DefaultUser is the system user QEMU runs as when Hearth runs as root:
// scripts/install-deps.sh creates it, with no login and no home.
const DefaultUser = "hearth-vmm"

// jail is who QEMU runs as. A nil cred is this process's own user.
type jail struct {
	cred *syscall.Credential
	name string
}

// resolveJail settles the user QEMU runs as. Only root can start a process
// as another user: root takes name, or DefaultUser if it exists; anyone
// else runs QEMU as themself (still under seccomp and cgroup limits).
func resolveJail(name string, log *slog.Logger) (jail, error) {
	if os.Geteuid() != 0 {
		if name != "" {
			if u, err := user.Current(); err != nil || u.Username != name {
				return jail{}, fmt.Errorf("qemu: running QEMU as %q needs root", name)
			}
		}
		return jail{}, nil
	}
	explicit := name != ""
	if !explicit {
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		if explicit {
			return jail{}, fmt.Errorf("qemu: user %q: %w", name, err)
		}
		log.Warn("QEMU runs as root: create its user with scripts/install-deps.sh", "user", name, "err", err)
		return jail{}, nil
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return jail{}, fmt.Errorf("qemu: user %q: %w", name, err)
	}
	if uid == 0 {
		return jail{}, nil
	}
	// No supplementary groups: Groups empty makes the child drop them all.
	return jail{name: name, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}, nil
}

// credential is the identity QEMU starts with for spec, or nil for this
// process's own. Under KVM it also gets /dev/kvm's group, if that is what
// lets it open the device.
func (j jail) credential(spec vmm.MachineSpec) *syscall.Credential {
	if j.cred == nil {
		return nil
	}
	c := *j.cred
	c.Groups = []uint32{}
	if spec.Accel == vmm.AccelKVM {
		var st syscall.Stat_t
		if syscall.Stat("/dev/kvm", &st) == nil && st.Gid != c.Gid && st.Mode&0o006 != 0o006 {
			c.Groups = []uint32{st.Gid}
		}
	}
	return &c
}

// grantRead lets QEMU's user read path (a kernel, an initramfs), if it
// cannot yet, by giving the file to its group with group read. It never
// grants write.
func (j jail) grantRead(f *os.File) error {
	if j.cred == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == j.cred.Uid && mode&0o400 != 0,
		st.Gid == j.cred.Gid && mode&0o040 != 0,
		mode&0o004 != 0:
		return nil
	}
	if err := f.Chown(-1, int(j.cred.Gid)); err != nil {
		return fmt.Errorf("qemu: letting %s read %s: %w", j.name, f.Name(), err)
	}
	if err := f.Chmod(mode | 0o040); err != nil {
		return fmt.Errorf("qemu: letting %s read %s: %w", j.name, f.Name(), err)
	}
	return nil
}

// own gives a file QEMU writes (the guest's memory) to QEMU's user.
func (j jail) own(f *os.File) error {
	if j.cred == nil {
		return nil
	}
	if err := f.Chown(int(j.cred.Uid), int(j.cred.Gid)); err != nil {
		return fmt.Errorf("qemu: giving %s to %s: %w", f.Name(), j.name, err)
	}
	return nil
}
