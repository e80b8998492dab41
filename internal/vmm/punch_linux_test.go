package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Zero pages are given back and the file reads the same; pages with data
// and the file's size stay.
func TestPunchZeroPages(t *testing.T) {
	const page = 4096
	tests := []struct {
		name string
		// pages: 'd' data, 'z' written zeros, 'h' never written (a hole).
		pages      string
		wantFreed  int64
		wantBlocks int64 // at most, in pages
	}{
		{"all data", "dddd", 0, 4},
		{"zeros between data", "dzzdzd", 3 * page, 3},
		{"zeros around holes", "zhhzdz", 3 * page, 1},
		{"only zeros", "zzzzzzzz", 8 * page, 0},
		{"nothing written", "hhhh", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, len(tt.pages)*page)
			for i, c := range tt.pages {
				var b []byte
				switch c {
				case 'd':
					b = bytes.Repeat([]byte{byte(i + 1)}, page)
				case 'z':
					b = make([]byte, page)
				default:
					continue
				}
				copy(want[i*page:], b)
				if _, err := f.WriteAt(b, int64(i*page)); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Truncate(int64(len(want))); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			freed, err := PunchZeroPages(path)
			if err != nil {
				t.Fatal(err)
			}
			if freed != tt.wantFreed {
				t.Errorf("freed %d bytes, want %d", freed, tt.wantFreed)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("the file reads differently after the punch")
			}
			if b := DiskBytes(path); b > tt.wantBlocks*page {
				t.Errorf("%d bytes on disk, want at most %d", b, tt.wantBlocks*page)
			}
		})
	}
}
