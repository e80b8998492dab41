package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// Disk per suspended environment counts allocated blocks: a sparse file's
// holes take nothing, as du says.
func TestDuKiBCountsBlocks(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 8192), 1<<20); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	for i := range buf {
		buf[i] = 1
	}
	if _, err := f.WriteAt(buf, 32<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "small"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := duKiB(dir); got < 8 || got > 1024 {
		t.Errorf("duKiB = %d for 64 MiB apparent with about 16 KiB written, want the blocks only", got)
	}
}

func TestProcKiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meminfo")
	body := "MemTotal:       24684368 kB\nMemFree:        20315392 kB\nMemAvailable:   24147728 kB\nPss:  123 kB\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want int64
	}{{"MemAvailable:", 24147728}, {"MemTotal:", 24684368}, {"Pss:", 123}, {"Missing:", 0}}
	for _, tt := range tests {
		if got := procKiB(path, tt.key); got != tt.want {
			t.Errorf("procKiB(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if got := procKiB(filepath.Join(t.TempDir(), "none"), "Pss:"); got != 0 {
		t.Errorf("a missing file gives %d, want 0", got)
	}
}
