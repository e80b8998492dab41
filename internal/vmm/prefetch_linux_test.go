package vmm

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The runs are the pages this process touched through its mapping of the
// file, at their offsets in the file (the mapping starts past the file's
// start), joined across gaps up to the merge distance.
func TestMappedRuns(t *testing.T) {
	page := int64(os.Getpagesize())
	tests := []struct {
		name    string
		touch   []int64 // pages of the mapping touched
		gap     int64
		wantRun []FileRun // in pages of the file
	}{
		{"nothing", nil, 0, nil},
		{"separate", []int64{0, 1, 5, 40}, 0, []FileRun{{2, 2}, {7, 1}, {42, 1}}},
		{"gap joined", []int64{0, 1, 5, 40}, 3 * page, []FileRun{{2, 6}, {42, 1}}},
		{"gap too wide", []int64{0, 5}, 3 * page, []FileRun{{2, 1}, {7, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memory")
			if err := os.WriteFile(path, make([]byte, 64*page), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := ReleaseCache(path); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Mapped from page 2 of the file, with read-around off so that
			// only the touched pages are present.
			m, err := unix.Mmap(int(f.Fd()), 2*page, int(60*page), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(m)
			if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.touch {
				m[p*page] = 1 // a write: no fault-around maps neighbours
			}
			runs, err := MappedRuns(os.Getpid(), path, tt.gap)
			if err != nil {
				t.Fatal(err)
			}
			var want []FileRun
			for _, r := range tt.wantRun {
				want = append(want, FileRun{Off: r.Off * page, Len: r.Len * page})
			}
			if !reflect.DeepEqual(runs, want) {
				t.Errorf("runs %v, want %v", runs, want)
			}
		})
	}
}

// A prefetch brings the runs, and not the rest, into the page cache.
func TestPrefetch(t *testing.T) {
	page := int64(os.Getpagesize())
	path := filepath.Join(t.TempDir(), "memory")
	data := make([]byte, 256*page)
	for i := range data {
		data[i] = byte(i / int(page))
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseCache(path); err != nil {
		t.Fatal(err)
	}
	if n, _ := CachedBytes(path); n != 0 {
		t.Fatalf("the page cache keeps %d bytes of a released file", n)
	}
	runs := []FileRun{{Off: 8 * page, Len: 4 * page}, {Off: 100 * page, Len: page}}
	n, err := Prefetch(path, runs)
	if err != nil || n != 5*page {
		t.Fatalf("prefetch: %d bytes, %v; want %d", n, err, 5*page)
	}
	// WILLNEED queues the reads: wait for them.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cached := residentPages(t, path)
		ok := true
		for _, r := range runs {
			for p := r.Off / page; p < (r.Off+r.Len)/page; p++ {
				ok = ok && cached[p]
			}
		}
		if ok {
			var extra int
			for p, in := range cached {
				if in && !(p >= 8 && p < 12) && p != 100 {
					extra++
				}
			}
			if extra > 0 {
				t.Errorf("%d pages outside the runs were read", extra)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs not in the page cache after 5 s: %v", cached)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// residentPages is mincore over the whole file.
func residentPages(t *testing.T, path string) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}
