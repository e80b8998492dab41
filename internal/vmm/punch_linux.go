package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// PunchZeroPages gives back the disk blocks of a memory file's all-zero
// pages (a hole reads as zeros, so the guest sees the same memory) and
// returns how many bytes it freed. Guest RAM a guest never used again is
// zero; under emulation about a third of a suspended hello's memory file.
// Only data ranges are read (SEEK_DATA/SEEK_HOLE), and neighbouring zero
// pages are punched in one call. The file must not be mapped by a running
// VMM.
func PunchZeroPages(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	fd, size := int(f.Fd()), fi.Size()
	const page = 4096
	buf := make([]byte, 1<<20)
	zero := make([]byte, page)
	var freed int64
	// run is the zero pages found and not yet punched.
	runStart, runLen := int64(0), int64(0)
	punch := func() error {
		if runLen == 0 {
			return nil
		}
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, runStart, runLen); err != nil {
			return fmt.Errorf("punching %s at %d: %w", path, runStart, err)
		}
		freed += runLen
		runLen = 0
		return nil
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return freed, fmt.Errorf("seeking data in %s: %w", path, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return freed, fmt.Errorf("seeking a hole in %s: %w", path, err)
		}
		data -= data % page
		for pos := data; pos < hole; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return freed, fmt.Errorf("reading %s: %w", path, err)
			}
			if n == 0 {
				break
			}
			for i := 0; i+page <= n; i += page {
				at := pos + int64(i)
				if bytes.Equal(buf[i:i+page], zero) {
					if runLen == 0 {
						runStart = at
					}
					runLen += page
					continue
				}
				if err := punch(); err != nil {
					return freed, err
				}
			}
			pos += int64(n - n%page)
			if n%page != 0 {
				break
			}
		}
		if err := punch(); err != nil {
			return freed, err
		}
		off = hole
	}
	return freed, punch()
}
