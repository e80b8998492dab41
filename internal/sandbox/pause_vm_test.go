package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
)

// A paused environment keeps its VMM but gives back most of its host RAM,
// and continues where it stopped: the counter in the guest's memory goes
// on. It logs the figures the paused tier is chosen by: QEMU's RSS warm
// and paused, and unpause plus a first call against warm and resume.
func TestPauseUnpauseCounter(t *testing.T) {
	f := newFixture(t, nil, "./examples/counter", nil)
	fn := sandbox.Function{Name: "counter", MemoryMB: 128, Timeout: 10 * time.Second}
	env := f.boot(t, fn)
	first := decode[counterResp](t, invoke(t, env, `{}`))
	var warm time.Duration
	for range 3 {
		start := time.Now()
		decode[counterResp](t, invoke(t, env, `{}`))
		warm = time.Since(start)
	}
	pid := env.PID()
	warmRSS := vmm.ProcessVmRSSKiB(pid)
	guestKiB, err := vmm.CachedBytes(env.Dir() + "/memory")
	if err != nil {
		t.Fatal(err)
	}
	guestKiB >>= 10
	mappedWarm := mappedKiB(t, pid, env.Dir()+"/memory")
	info, err := env.Pause(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if env.State() != sandbox.StatePaused || env.PID() != pid {
		t.Fatalf("state %s pid %d, want paused with the same VMM %d", env.State(), env.PID(), pid)
	}
	pausedRSS := vmm.ProcessVmRSSKiB(pid)
	mappedPaused := mappedKiB(t, pid, env.Dir()+"/memory")
	cached, _ := vmm.CachedBytes(env.Dir() + "/memory")
	t.Logf("QEMU VmRSS warm %d KiB (guest RAM mapped in it %d KiB, cached %d KiB), paused %d KiB (guest RAM mapped %d KiB); memory file page cache after %d KiB; working set %d KiB",
		warmRSS, mappedWarm, guestKiB, pausedRSS, mappedPaused, cached>>10, info.WorkingSetBytes>>10)
	// The guest's RAM must go, from QEMU's page tables and from the page
	// cache. What stays of QEMU is its own: its translation cache (kept on
	// purpose), heap and binary. QEMU's whole RSS is not the measure: its
	// translation cache may grow by huge pages (2 MiB each) between the
	// two readings, as the guest runs on (seen: +12 MiB in one run).
	if !info.PagedOut || mappedWarm < guestKiB/4 || mappedPaused > mappedWarm/10 || cached > 1<<20 {
		t.Errorf("guest RAM mapped in QEMU %d KiB warm, %d KiB paused; %d bytes cached after (paged out %v): want the guest's RAM gone",
			mappedWarm, mappedPaused, cached, info.PagedOut)
	}
	if info.WorkingSetBytes <= 0 || info.WorkingSetBytes > guestKiB<<10 {
		t.Errorf("working set %d bytes, want some of the %d KiB of guest RAM", info.WorkingSetBytes, guestKiB)
	}
	// The unpause reads the working set back ahead, before the guest
	// faults on it: the first call's faults find it in the page cache
	// (minor faults) instead of each waiting for a read from the disk
	// (measured: 9–12 major faults without, 3–5 with).
	majBefore := majorFaults(t, pid)
	start := time.Now()
	if err := env.Unpause(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := invoke(t, env, `{}`)
	unpaused, unpause := time.Since(start), res.Restore
	got := decode[counterResp](t, res)
	if got.Count != 5 || got.InitedAt != first.InitedAt {
		t.Fatalf("after unpause: %+v, want count 5 and the same init", got)
	}
	if maj := majorFaults(t, pid) - majBefore; maj > 7 {
		t.Errorf("%d major faults in QEMU for unpause and a call, want the working set read back ahead (at most 7)", maj)
	} else {
		t.Logf("%d major faults for unpause and a call", maj)
	}
	if res.StartType != sandbox.StartPaused || res.Restore <= 0 {
		t.Errorf("start %s unpause %v, want paused with a time", res.StartType, res.Restore)
	}
	if r := invoke(t, env, `{}`); r.StartType != sandbox.StartWarm {
		t.Errorf("call after an unpaused one: %s, want warm", r.StartType)
	}
	// A paused environment suspends as a ready one does.
	if _, err := env.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Suspend(context.Background()); err != nil {
		t.Fatalf("suspend a paused env: %v", err)
	}
	start = time.Now()
	res = invoke(t, env, `{}`)
	resumed := time.Since(start)
	if got := decode[counterResp](t, res); got.Count != 7 || res.StartType != sandbox.StartResume {
		t.Fatalf("after pause and suspend: count %d start %s, want 7 resume", got.Count, res.StartType)
	}
	t.Logf("warm call %v; unpause + first call %v (unpause %v); resume + first call %v (restore %v)",
		warm, unpaused, unpause, resumed, res.Restore)
}

// majorFaults is a process's count of major page faults (/proc/<pid>/stat).
// mappedKiB is how much of the file at path process pid has in its page
// tables.
func mappedKiB(t *testing.T, pid int, path string) int64 {
	t.Helper()
	runs, err := vmm.MappedRuns(pid, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range runs {
		n += r.Len
	}
	return n >> 10
}

func majorFaults(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, err := strconv.ParseInt(fields[9], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
