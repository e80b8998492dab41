package vmm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FileRun is a byte range of a file: [Off, Off+Len).
type FileRun struct{ Off, Len int64 }

// pagemapPresent is a /proc/<pid>/pagemap entry's "page present" bit.
const pagemapPresent = 1 << 63

// MappedRuns lists the parts of the file at path that a process has in its
// page tables now (/proc/<pid>/pagemap's present bit over each of its
// mappings of the file), as sorted byte ranges of the file; ranges less than
// mergeGap apart are joined, so that a prefetch of them is a few large reads.
// Taken just before a page-out, it is what the guest touched since the last
// one: the set the next unpause needs back. It needs ptrace rights over the
// process, as PageOutFile does.
func MappedRuns(pid int, path string, mergeGap int64) ([]FileRun, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("mapped runs: %w", err)
	}
	maps, err := fileMappingsAt(pid, st)
	if err != nil {
		return nil, err
	}
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil, fmt.Errorf("mapped runs: %w", err)
	}
	defer pm.Close()
	page := int64(os.Getpagesize())
	var pages []int64 // file page indexes, in mapping order
	buf := make([]byte, 8*4096)
	for _, mp := range maps {
		n := int64(mp.end-mp.start) / page
		for i := int64(0); i < n; {
			chunk := min(n-i, int64(len(buf)/8))
			b := buf[:chunk*8]
			if _, err := pm.ReadAt(b, int64(mp.start)/page*8+i*8); err != nil {
				return nil, fmt.Errorf("mapped runs: pagemap of %d: %w", pid, err)
			}
			for j := int64(0); j < chunk; j++ {
				if binary.LittleEndian.Uint64(b[j*8:])&pagemapPresent != 0 {
					pages = append(pages, int64(mp.offset)/page+i+j)
				}
			}
			i += chunk
		}
	}
	return pageRuns(pages, page, mergeGap), nil
}

// pageRuns turns page indexes into sorted byte runs, joining runs whose gap
// is at most mergeGap bytes.
func pageRuns(pages []int64, page, mergeGap int64) []FileRun {
	slices.Sort(pages)
	var runs []FileRun
	for _, p := range pages {
		off := p * page
		if n := len(runs); n > 0 {
			end := runs[n-1].Off + runs[n-1].Len
			if off < end {
				continue // the same page, mapped twice
			}
			if off-end <= mergeGap {
				runs[n-1].Len = off + page - runs[n-1].Off
				continue
			}
		}
		runs = append(runs, FileRun{Off: off, Len: page})
	}
	return runs
}

// Prefetch asks the kernel to read runs of the file at path into the page
// cache (fadvise WILLNEED: the reads are queued and this returns), so that
// the faults of whoever maps the file find the pages there instead of each
// waiting for the disk. It returns the bytes asked for.
func Prefetch(path string, runs []FileRun) (int64, error) {
	if len(runs) == 0 {
		return 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("prefetch: %w", err)
	}
	defer f.Close()
	var n int64
	for _, r := range runs {
		if err := unix.Fadvise(int(f.Fd()), r.Off, r.Len, unix.FADV_WILLNEED); err != nil {
			return n, fmt.Errorf("prefetch %s: %w", path, err)
		}
		n += r.Len
	}
	return n, nil
}

// fileMapping is one mapping of a file in a process: its addresses and the
// file offset it starts at.
type fileMapping struct{ start, end, offset uint64 }

// fileMappingsAt lists a process's mappings of the file st, from
// /proc/<pid>/maps, matched by device and inode.
func fileMappingsAt(pid int, st unix.Stat_t) ([]fileMapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("maps: %w", err)
	}
	defer f.Close()
	var out []fileMapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseMapsLine(sc.Text(), st); ok {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// parseMapsLine reads "start-end perms offset major:minor inode path" and
// says whether it maps the file st.
func parseMapsLine(line string, st unix.Stat_t) (fileMapping, bool) {
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return fileMapping{}, false
	}
	inode, err := strconv.ParseUint(fields[4], 10, 64)
	if err != nil || inode != st.Ino {
		return fileMapping{}, false
	}
	maj, mnr, ok := strings.Cut(fields[3], ":")
	if !ok {
		return fileMapping{}, false
	}
	ma, err1 := strconv.ParseUint(maj, 16, 32)
	mi, err2 := strconv.ParseUint(mnr, 16, 32)
	if err1 != nil || err2 != nil || unix.Mkdev(uint32(ma), uint32(mi)) != st.Dev {
		return fileMapping{}, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return fileMapping{}, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	off, err3 := strconv.ParseUint(fields[2], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || e <= s {
		return fileMapping{}, false
	}
	return fileMapping{start: s, end: e, offset: off}, true
}
