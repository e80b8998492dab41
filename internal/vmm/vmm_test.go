package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestReadTail(t *testing.T) {
	content := []byte("0123456789")
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int64
		want string
	}{
		{0, ""}, {-1, ""}, {3, "789"}, {10, "0123456789"}, {100, "0123456789"},
	}
	for _, tt := range tests {
		got, err := ReadTail(path, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(tt.want)) {
			t.Errorf("ReadTail(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if _, err := ReadTail(filepath.Join(t.TempDir(), "none"), 10); !os.IsNotExist(err) {
		t.Errorf("a missing file: %v, want not-exist", err)
	}
}
