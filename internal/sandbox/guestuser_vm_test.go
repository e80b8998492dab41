package sandbox_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
)

// whoamiReport is what the test function's "whoami" action answers.
type whoamiReport struct {
	UID         int               `json:"uid"`
	GID         int               `json:"gid"`
	EUID        int               `json:"euid"`
	Groups      []int             `json:"groups"`
	User        string            `json:"user"`
	NoNewPrivs  string            `json:"noNewPrivs"`
	CapEff      string            `json:"capEff"`
	CapPrm      string            `json:"capPrm"`
	Writes      map[string]string `json:"writes"`
	Ports       []string          `json:"ports"`
	Mounts      map[string]string `json:"mounts"`
	PID1Visible bool              `json:"pid1Visible"`
	Home        string            `json:"home"`
	Term        string            `json:"term"`
}

// The function in a guest is untrusted: it runs as Lambda's sandbox user
// (uid 993, gid 990) with no privileges, /tmp is the one place it can
// write, and the agent's channel to the host, the console and the agent
// itself are out of its reach; the agent still serves it.
func TestFunctionRunsUnprivileged(t *testing.T) {
	f := newFixture(t, nil, "./internal/testfunction", nil)
	env := f.boot(t, sandbox.Function{Name: "guestuser", MemoryMB: 256, Timeout: 20 * time.Second,
		EphemeralStorageMB: 1024})
	res := invoke(t, env, `{"action":"whoami"}`)
	if res.Error != nil {
		t.Fatalf("function error: %+v", res.Error)
	}
	var r whoamiReport
	if err := json.Unmarshal(res.Payload, &r); err != nil {
		t.Fatalf("response %s: %v", res.Payload, err)
	}
	t.Logf("whoami: %s", res.Payload)

	if r.UID != 993 || r.EUID != 993 || r.GID != 990 || r.User != "sbx_user1051" {
		t.Errorf("runs as uid %d (euid %d) gid %d user %q, want 993 993 990 sbx_user1051", r.UID, r.EUID, r.GID, r.User)
	}
	if len(r.Groups) > 1 || (len(r.Groups) == 1 && r.Groups[0] != 990) {
		t.Errorf("supplementary groups %v, want none", r.Groups)
	}
	if r.NoNewPrivs != "1" || strings.Trim(r.CapEff, "0") != "" || strings.Trim(r.CapPrm, "0") != "" || r.CapEff == "" {
		t.Errorf("NoNewPrivs %q CapEff %q CapPrm %q, want 1 and no capabilities", r.NoNewPrivs, r.CapEff, r.CapPrm)
	}
	if len(r.Ports) == 0 {
		t.Errorf("no /dev/vport* device seen; the port check tested nothing")
	}

	const denied, readOnly = "permission denied", "read-only file system"
	writes := []struct {
		path string
		want []string // "" for a write that works, else any of these errors
	}{
		{"/tmp/hostile", []string{""}},
		{"/var/task/hostile", []string{readOnly, denied}},
		{"/var/task/bootstrap", []string{readOnly, denied}},
		{"/hostile", []string{denied}},
		{"/etc/hostile", []string{denied}},
		{"/etc/passwd", []string{denied}},
		{"/dev/console", []string{denied}},
		{"/dev/kmsg", []string{denied}},
		{"/dev/ttyS0", []string{denied, "no such file"}},
	}
	for _, p := range r.Ports {
		writes = append(writes, struct {
			path string
			want []string
		}{p, []string{denied}})
	}
	for _, w := range writes {
		got, ok := r.Writes[w.path]
		if !ok {
			t.Errorf("%s: not tried", w.path)
			continue
		}
		match := false
		for _, want := range w.want {
			match = match || (want == "" && got == "") || (want != "" && strings.Contains(got, want))
		}
		if !match {
			t.Errorf("write %s: %q, want one of %q", w.path, got, w.want)
		}
	}

	mounts := []struct{ target, want string }{
		{"/var/task", "ro,"},
		{"/opt", "ro,"},
		{"/sys", "ro,"},
		{"/proc", "hidepid="},
		{"/tmp", "nosuid,nodev,"}, // its disk (tmpdisk_vm_test.go checks its size)
	}
	for _, m := range mounts {
		if opts := r.Mounts[m.target]; !strings.Contains(opts+",", m.want) {
			t.Errorf("%s mounted %q, want %q in its options", m.target, opts, m.want)
		}
	}
	if r.PID1Visible {
		t.Errorf("the function can see the agent (PID 1) in /proc")
	}
	if r.Term != "" || r.Home != "/tmp" {
		t.Errorf("TERM %q HOME %q: want the agent's environment kept from the function, HOME=/tmp", r.Term, r.Home)
	}
	// The agent, as root, still reads the runtime's memory in /proc.
	if res.MaxRSSKiB <= 0 {
		t.Errorf("MaxRSSKiB %d: the agent could not read the runtime's /proc status", res.MaxRSSKiB)
	}

	// And the function keeps working as before.
	if res := invoke(t, env, `{"name":"again"}`); res.Error != nil || !strings.Contains(string(res.Payload), `"cwd":"/var/task"`) {
		t.Errorf("echo after whoami: %+v %s", res.Error, res.Payload)
	}
}
