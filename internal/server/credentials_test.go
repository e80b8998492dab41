package server

import (
	"os"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/testdisk"
)

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	c, err := loadCredentials(CredentialsFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := ReadCredentials(CredentialsFile(dir))
	old := first[0]
	if fi, _ := os.Stat(CredentialsFile(dir)); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
	steps := []struct {
		name               string
		revoke             bool
		oldValid, newValid bool
	}{
		{"rotate keeps the previous key", false, true, true},
		{"rotate with revoke drops it", true, false, true},
	}
	for _, st := range steps {
		// Make sure the file's time moves, so the change is seen.
		time.Sleep(10 * time.Millisecond)
		next, err := RotateKeys(dir, st.revoke)
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(CredentialsFile(dir), time.Now(), time.Now().Add(time.Duration(len(st.name))*time.Second))
		if _, ok := c.Secret(old.AccessKeyID); ok != st.oldValid {
			t.Errorf("%s: old key valid %v, want %v", st.name, ok, st.oldValid)
		}
		if s, ok := c.Secret(next.AccessKeyID); ok != st.newValid || s != next.SecretAccessKey {
			t.Errorf("%s: new key valid %v", st.name, ok)
		}
		old = next
	}
}

// A rotation that cannot be written (a full disk) keeps the old keys, and
// leaves no half-written file beside them.
func TestKeyRotationFullDisk(t *testing.T) {
	dir := testdisk.Mount(t, 64<<10)
	if _, err := loadCredentials(CredentialsFile(dir)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(CredentialsFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, dir, 0)
	if _, err := RotateKeys(dir, false); err == nil {
		t.Fatal("rotation on a full disk succeeded")
	}
	if after, _ := os.ReadFile(CredentialsFile(dir)); string(after) != string(before) {
		t.Errorf("the keys changed after a failed rotation:\n%s", after)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		// credentials.lock is the empty file rotations lock; it stays.
		if e.Name() != "credentials" && e.Name() != "filler" && e.Name() != "credentials.lock" {
			t.Errorf("the failed rotation left %s", e.Name())
		}
	}
}
