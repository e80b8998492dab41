package vmm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PageOutFile pushes the pages of a process's mappings of the file at path
// out of host RAM: process_madvise(MADV_PAGEOUT) on each mapping, found in
// /proc/<pid>/maps by the file's device and inode (a path may be reached
// through /proc/self/fd). Dirty pages of a shared mapping are written back
// to the file first, so nothing of the guest is lost; the next touch faults
// them in again. Then the file's page cache is dropped, which a shared
// mapping no longer pins. It needs ptrace rights over the process (root, or
// CAP_SYS_NICE and the same user). It returns the bytes of mapping advised.
func PageOutFile(pid int, path string, also ...string) (int64, error) {
	var ranges [][2]uint64
	for i, p := range append([]string{path}, also...) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if i > 0 {
				continue
			}
			return 0, fmt.Errorf("page out: %w", err)
		}
		r, err := fileMappings(pid, st)
		if err != nil {
			return 0, err
		}
		if i == 0 && len(r) == 0 {
			return 0, fmt.Errorf("page out: process %d does not map %s", pid, path)
		}
		ranges = append(ranges, r...)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("page out: pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// Reclaim does not write dirty file pages back from here: they are
	// kept resident. Measured on QEMU's guest RAM, a page-out before the
	// write-back drops nothing, one after it nearly all. So: write back,
	// then page out.
	if err := syncFile(path); err != nil {
		return 0, fmt.Errorf("page out: %w", err)
	}
	var advised int64
	prev := ProcessVmRSSKiB(pid)
	for pass := 1; pass <= pageOutPasses; pass++ {
		n, err := pageOutRanges(pidfd, ranges)
		advised = max(advised, n)
		if err != nil {
			return advised, fmt.Errorf("page out: process_madvise on %d: %w", pid, err)
		}
		rss := ProcessVmRSSKiB(pid)
		if pass > 1 && prev-rss < 1024 {
			break
		}
		prev = rss
	}
	if err := ReleaseCache(path); err != nil {
		return advised, fmt.Errorf("page out: %w", err)
	}
	return advised, nil
}

// syncFile writes a file's dirty pages back to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fdatasync(int(f.Fd()))
}

// pageOutPasses bounds the passes of MADV_PAGEOUT over the mappings.
const pageOutPasses = 4

// pageOutRanges advises MADV_PAGEOUT on each range of the process pidfd.
func pageOutRanges(pidfd int, ranges [][2]uint64) (int64, error) {
	var advised int64
	for _, r := range ranges {
		for start := r[0]; start < r[1]; {
			// The kernel may advise less than asked (it caps one call at
			// MAX_RW_COUNT): go on from where it stopped. The addresses
			// are the other process's: never dereferenced here.
			iov := remoteIovec{base: uintptr(start), len: r[1] - start}
			n, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd),
				uintptr(unsafe.Pointer(&iov)), 1, unix.MADV_PAGEOUT, 0, 0)
			if errno != 0 {
				return advised, errno
			}
			if n == 0 {
				break
			}
			start += uint64(n)
			advised += int64(n)
		}
	}
	return advised, nil
}

// remoteIovec is a struct iovec whose base is an address in another
// process (unix.Iovec's *byte would claim it is one in this process).
type remoteIovec struct {
	base uintptr
	len  uint64
}

// fileMappings lists the [start, end) of a process's mappings of the file st.
func fileMappings(pid int, st unix.Stat_t) ([][2]uint64, error) {
	maps, err := fileMappingsAt(pid, st)
	if err != nil {
		return nil, fmt.Errorf("page out: %w", err)
	}
	out := make([][2]uint64, 0, len(maps))
	for _, m := range maps {
		out = append(out, [2]uint64{m.start, m.end})
	}
	return out, nil
}

// ProcessVmRSSKiB is a process's VmRSS from /proc/<pid>/status, 0 if it
// does not exist: resident anonymous, file and shared memory together.
func ProcessVmRSSKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
