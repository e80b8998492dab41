package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// A bare program name is found in the PATH inside the root the process
// will see, never in the agent's.
func TestLookPathIn(t *testing.T) {
	root := t.TempDir()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"usr/bin/python3", 0o755},
		{"opt/tools/python3", 0o755},
		{"usr/local/bin/notes", 0o644}, // not executable
	} {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"python3", nil, "/usr/bin/python3"},
		{"python3", []string{"PATH=/opt/tools:/usr/bin"}, "/opt/tools/python3"},
		{"python3", []string{"PATH=relative:/usr/bin"}, "/usr/bin/python3"},
		{"/usr/bin/python3", nil, "/usr/bin/python3"},
		{"./python3", nil, "./python3"},
		{"notes", nil, "notes"},
		{"dir", nil, "dir"},
		{"missing", nil, "missing"},
	} {
		if got := lookPathIn(root, tc.name, tc.env); got != tc.want {
			t.Errorf("lookPathIn(%q, %v) = %q, want %q", tc.name, tc.env, got, tc.want)
		}
	}
}
