package agent

import (
	"strconv"
	"strings"
	"testing"
)

// The guest's user list names the function's user with Lambda's numbers, so
// that `id` and getpwuid(993) find it, and every line is well formed.
func TestUserFiles(t *testing.T) {
	users := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(passwdFile(), "\n"), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 {
			t.Fatalf("passwd line %q has %d fields, want 7", line, len(f))
		}
		users[f[0]] = f
	}
	groups := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(groupFile(), "\n"), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 4 {
			t.Fatalf("group line %q has %d fields, want 4", line, len(f))
		}
		groups[f[2]] = f
	}
	tests := []struct {
		user, uid, gid, home string
	}{
		{"root", "0", "0", "/root"},
		{"sbx_user1051", "993", "990", "/tmp"},
		{"nobody", "65534", "65534", "/"},
	}
	for _, tt := range tests {
		u, ok := users[tt.user]
		if !ok {
			t.Errorf("no user %s", tt.user)
			continue
		}
		if u[2] != tt.uid || u[3] != tt.gid || u[5] != tt.home || u[6] != "/sbin/nologin" {
			t.Errorf("%s: %v, want uid %s gid %s home %s", tt.user, u, tt.uid, tt.gid, tt.home)
		}
		if _, ok := groups[tt.gid]; !ok {
			t.Errorf("%s's group %s not in /etc/group", tt.user, tt.gid)
		}
	}
	if users[FunctionUser][2] != strconv.Itoa(FunctionUID) {
		t.Errorf("the function's user is not uid %d", FunctionUID)
	}
}

// The runtime runs as the sandbox user in its own group and none other, in
// a process group of its own.
func TestRuntimeAttr(t *testing.T) {
	a := runtimeAttr(functionCredential())
	c := a.Credential
	if !a.Setpgid || c == nil || c.Uid != 993 || c.Gid != 990 {
		t.Fatalf("attr %+v, credential %+v", a, c)
	}
	// A nil Groups or NoSetGroups would leave root's supplementary groups.
	if c.Groups == nil || len(c.Groups) != 0 || c.NoSetGroups {
		t.Errorf("supplementary groups %v (NoSetGroups %v), want set to none", c.Groups, c.NoSetGroups)
	}
	if a := runtimeAttr(nil); a.Credential != nil || !a.Setpgid {
		t.Errorf("outside a guest: %+v", a)
	}
}
