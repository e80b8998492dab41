package server

import (
	"os"
	"testing"
	"time"
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
