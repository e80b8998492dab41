package scheduler

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of HostLimits that do not depend on the host's size.
const (
	// DefaultMaxEnvironments bounds the environments of a host: enough for
	// many functions each with warm and suspended environments, few enough
	// that folders, records and timers stay cheap.
	DefaultMaxEnvironments = 1000
	// hostMemoryShare of the host's RAM, less hostMemoryReserve for the
	// host itself (the daemon, each QEMU's own memory, the page cache),
	// may be committed to guests.
	hostMemoryShare   = 0.8
	hostMemoryReserve = 1024 // MB
	// snapshotDiskShare of the data folder's free space may hold snapshots.
	snapshotDiskShare = 0.5
	// DefaultBootQueueTimeout is how long a boot waits for its turn: long
	// enough for a burst of cold starts on a small host to be served, short
	// enough that a caller hears of an overload.
	DefaultBootQueueTimeout = 30 * time.Second
	// DefaultBootRetries is how many more machines a cold boot gets when
	// its machine fails.
	DefaultBootRetries = 2
)

// HostLimits are the default limits for this host: guest memory 80% of its
// RAM less 1 GiB, snapshots half the free space of the file system of
// dataDir, DefaultMaxEnvironments environments, as many boots in flight as
// CPUs.
func HostLimits(dataDir string) (Limits, error) {
	memMB, err := memTotalMB()
	if err != nil {
		return Limits{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dataDir, &st); err != nil {
		return Limits{}, fmt.Errorf("free space of %s: %w", dataDir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	return Limits{
		MaxEnvironments:  DefaultMaxEnvironments,
		MaxMemoryMB:      max(int(float64(memMB)*hostMemoryShare)-hostMemoryReserve, 128),
		MaxSnapshotBytes: int64(float64(free) * snapshotDiskShare),
		MaxBootsInFlight: runtime.NumCPU(),
		BootQueueTimeout: DefaultBootQueueTimeout,
		BootRetries:      DefaultBootRetries,
	}, nil
}

// Or fills l's zero fields from def; a negative field (no bound) stays.
func (l Limits) Or(def Limits) Limits {
	if l.MaxEnvironments == 0 {
		l.MaxEnvironments = def.MaxEnvironments
	}
	if l.MaxMemoryMB == 0 {
		l.MaxMemoryMB = def.MaxMemoryMB
	}
	if l.MaxSnapshotBytes == 0 {
		l.MaxSnapshotBytes = def.MaxSnapshotBytes
	}
	if l.MaxBootsInFlight == 0 {
		l.MaxBootsInFlight = def.MaxBootsInFlight
	}
	if l.BootQueueTimeout == 0 {
		l.BootQueueTimeout = def.BootQueueTimeout
	}
	if l.BootRetries == 0 {
		l.BootRetries = def.BootRetries
	}
	return l
}

// memTotalMB is the host's RAM, from /proc/meminfo.
func memTotalMB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %w", err)
			}
			return int(kb / 1024), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
}
