package guestimage

import (
	"os"
	"path/filepath"
	"testing"
)

// A managed runtime's code has no bootstrap: ReadPackageFile and
// ValidatePackageZip take it, and still refuse what any code may not be.
func TestPackageWithoutBootstrap(t *testing.T) {
	tests := []struct {
		name string
		zip  []byte
		ok   bool
	}{
		{"sources", makeZip(t, entry{name: "app.py", body: "x = 1\n"}, entry{name: "vendored/__init__.py", body: ""}), true},
		{"escapes the root", makeZip(t, entry{name: "../evil.py", body: "x"}), false},
		{"not a zip", []byte("PK nope"), false},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "code.zip")
		if err := os.WriteFile(p, tc.zip, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := ReadPackageFile(p)
		if (err == nil) != tc.ok || (tc.ok && c.Digest() == "") {
			t.Errorf("%s: ReadPackageFile: %v", tc.name, err)
		}
		if err := ValidatePackageZip(tc.zip); (err == nil) != tc.ok {
			t.Errorf("%s: ValidatePackageZip: %v", tc.name, err)
		}
		if tc.ok {
			if _, err := ReadZip(tc.zip); err == nil {
				t.Errorf("%s: ReadZip took code without a bootstrap", tc.name)
			}
		}
	}
}
