package server

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/cluster"
)

// What placement knows of a host besides its environments: what it has
// ready for a cold start (the code images it built, the roots in its
// cache) and how busy its CPU is. The heartbeats carry both (hostLoad);
// the router reads this host's own directly.

// readySet is this host's record of what it has ready; nil standalone
// (which records nothing).
func (s *Server) readySet() *cluster.ReadySet {
	if s.load == nil {
		return nil
	}
	return s.load.ready
}

// cpuEvery is the shortest time over which the CPU's share busy is
// measured: asked more often, the meter answers its last measure.
const cpuEvery = time.Second

// cpuMeter measures the share of the host's CPU time busy, from the
// kernel's counters (/proc/stat), smoothed over the last few measures:
// a cold start boots for seconds, so a host busy for one second only is
// not "saturated". Safe for concurrent use; a nil *cpuMeter knows
// nothing (0).
type cpuMeter struct {
	// read gives the counters; nil is procStat.
	read func() (busy, total uint64, err error)

	mu          sync.Mutex
	busy, total uint64
	at          time.Time
	share       float64
	known       bool
}

// Share is the share of the CPU busy lately, 0 to 1.
func (c *cpuMeter) Share() float64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < cpuEvery {
		return c.share
	}
	read := c.read
	if read == nil {
		read = procStat
	}
	busy, total, err := read()
	if err != nil {
		// Placement then goes by the other measures.
		return c.share
	}
	prevBusy, prevTotal, first := c.busy, c.total, c.at.IsZero()
	c.busy, c.total, c.at = busy, total, time.Now()
	if first || total <= prevTotal || busy < prevBusy {
		return c.share
	}
	cur := min(1, float64(busy-prevBusy)/float64(total-prevTotal))
	if !c.known {
		c.share, c.known = cur, true
	} else {
		c.share = (c.share + cur) / 2
	}
	return c.share
}

// procStat reads the kernel's CPU time counters, all cores together:
// busy is all but idle and waiting for I/O.
func procStat() (busy, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return parseCPULine(line)
}

// parseCPULine reads /proc/stat's first line: "cpu  user nice system
// idle iowait irq softirq steal guest guest_nice" (guest time is counted
// in user already).
func parseCPULine(line string) (busy, total uint64, err error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var idle uint64
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - idle, total, nil
}
