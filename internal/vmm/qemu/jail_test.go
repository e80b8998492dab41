package qemu

import (
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/hearthdev/hearth/internal/vmm"
)

// As root, QEMU's user is the named one, else hearth-vmm; root itself or
// no such user means running as this process's user, and naming a missing
// user is an error. Its credential carries no supplementary groups.
func TestResolveJail(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, err := resolveJail("root", slog.Default()); err == nil {
			t.Error("a non-root process may not name another user")
		}
		return
	}
	vmmUser, err := user.Lookup(DefaultUser)
	if err != nil {
		t.Fatalf("no user %s (scripts/install-deps.sh creates it): %v", DefaultUser, err)
	}
	tests := []struct {
		name    string
		wantUID string // "" for no switch
		wantErr bool
	}{
		{"", vmmUser.Uid, false},
		{DefaultUser, vmmUser.Uid, false},
		{"root", "", false},
		{"no-such-user-hearth", "", true},
	}
	for _, tt := range tests {
		j, err := resolveJail(tt.name, slog.Default())
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		got := ""
		if j.cred != nil {
			got = strconv.Itoa(int(j.cred.Uid))
			if c := j.credential(vmm.MachineSpec{Accel: vmm.AccelTCG}); c.Groups == nil || len(c.Groups) != 0 {
				t.Errorf("%q: groups %v, want none (an empty list, which drops them)", tt.name, c.Groups)
			}
		}
		if got != tt.wantUID {
			t.Errorf("%q: uid %q, want %q", tt.name, got, tt.wantUID)
		}
	}
}

// A file QEMU's user cannot read is given to its group with group read,
// never write; a file it can read already is left as it is.
func TestGrantRead(t *testing.T) {
	j := jail{name: "test", cred: &syscall.Credential{Uid: 4242, Gid: 4243, Groups: []uint32{}}}
	tests := []struct {
		mode     os.FileMode
		wantMode os.FileMode
		wantGID  uint32
	}{
		{0o600, 0o640, 4243},
		{0o644, 0o644, 0},
		{0o700, 0o740, 4243},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "initrd")
		if err := os.WriteFile(p, []byte("x"), tt.mode); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		err = j.grantRead(f)
		f.Close()
		if os.Geteuid() != 0 && tt.wantGID != 0 {
			// Only root may give a file to a group it is not in.
			if err == nil {
				t.Errorf("%v: granted without root", tt.mode)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if gid := fi.Sys().(*syscall.Stat_t).Gid; fi.Mode().Perm() != tt.wantMode || gid != tt.wantGID {
			t.Errorf("%v: now %v group %d, want %v group %d", tt.mode, fi.Mode().Perm(), gid, tt.wantMode, tt.wantGID)
		}
	}
}
