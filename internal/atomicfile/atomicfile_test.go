package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"first", "second, longer"} {
		if err := Write(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if got := names(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("folder holds %v, want only f", got)
	}
}

// A write that fails leaves the old content and nothing beside it.
func TestWriteFuncFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFunc(p, 0o600, func(w io.Writer) error {
		_, _ = w.Write([]byte("half of the n"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("content %q after a failed write, want old", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("folder holds %v, want only f", got)
	}
}

func TestCommitOtherWriter(t *testing.T) {
	dir := t.TempDir()
	tmp, p := filepath.Join(dir, "state.tmp"), filepath.Join(dir, "state")
	if err := os.WriteFile(tmp, []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Commit(tmp, p); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"state"}) {
		t.Errorf("folder holds %v, want only state", got)
	}
}

// RemoveStale removes what dead writers left and keeps a write in progress.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	// A process that has exited: its PID is free (until reused, which a
	// test this short does not see).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	files := map[string]bool{ // name → kept
		fmt.Sprintf("a.zip.%d.123.tmp", dead):        false,
		fmt.Sprintf("a.zip.%d.456.tmp", os.Getpid()): true,
		"credentials.tmp":                            false, // an older writer's name
		"a.zip":                                      true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %v, want the two stale files", removed)
	}
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub.tmp")); err != nil {
		t.Error("a folder was removed")
	}
	if removed, err := RemoveStale(filepath.Join(dir, "missing")); err != nil || removed != nil {
		t.Errorf("missing folder: %v %v", removed, err)
	}
}

// A file being written is not under its name until Commit.
func TestCreateAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	f, err := Create(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is under its name before Commit: %v", err)
	}
	f.Abort()
	f.Abort()
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("folder holds %v after Abort", got)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}
