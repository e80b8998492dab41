package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/testdisk"
)

// A code package that does not fit on the disk is refused whole: nothing
// half-written is left in the code folder, under its name or beside it.
func TestPutCodeFullDisk(t *testing.T) {
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	if err := os.Mkdir(code, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := testdisk.Mount(t, 256<<10)
	if err := os.Remove(code); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(disk, code); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if _, _, err := s.PutCode(bytes.Repeat([]byte("z"), 512<<10)); err == nil {
		t.Fatal("a zip larger than the disk was stored")
	}
	if entries, _ := os.ReadDir(code); len(entries) != 0 {
		t.Errorf("the failed write left %v in the code folder", entries)
	}
	_, sum, err := s.PutCode([]byte("small zip"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(s.CodePath(sum)); err != nil || string(b) != "small zip" {
		t.Errorf("stored code %q, %v", b, err)
	}
	if entries, _ := os.ReadDir(code); len(entries) != 1 {
		t.Errorf("code folder holds %v, want only the zip", entries)
	}
}
