package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/guestimage"
	"github.com/hearthdev/hearth/internal/sandbox"
	"github.com/hearthdev/hearth/internal/vmm"
)

type benchDensityFlags struct {
	host      hostFlags
	zip       string
	warm      int
	paused    int
	suspended int
	resumes   int
	minFreeGB int
	json      bool
}

func (c *CLI) benchDensityCmd() *cobra.Command {
	var f benchDensityFlags
	cmd := &cobra.Command{
		Use:   "density",
		Short: "Hold N warm, N paused and N suspended environments and measure what each costs the host",
		Long: `Clones a function's template (hello by default) into N warm, N paused and N
suspended environments, each invoked once, and measures per environment:
the host RSS and PSS of its VMM and the host's available memory it took, its
VMM processes, the disk a suspended one takes (allocated blocks, as du counts
them, not apparent sizes), and the time to resume a few of the suspended ones
with an invocation. A run with 1,000 suspended:

  hearth bench density --warm 10 --paused 10 --suspended 1000 --json

Suspends stop early, with what was reached reported, when the disk's free
space falls under --min-free-gb.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.benchDensity(cmd, f) },
	}
	f.host.register(cmd)
	cmd.Flags().StringVar(&f.zip, "zip", "examples/hello/hello.zip", "the function")
	cmd.Flags().IntVar(&f.warm, "warm", 2, "warm environments (running, idle)")
	cmd.Flags().IntVar(&f.paused, "paused", 2, "paused environments (vCPUs stopped, memory paged out)")
	cmd.Flags().IntVar(&f.suspended, "suspended", 4, "suspended environments (no process)")
	cmd.Flags().IntVar(&f.resumes, "resumes", 3, "suspended environments resumed, spread over them, for the resume time")
	cmd.Flags().IntVar(&f.minFreeGB, "min-free-gb", 10, "stop suspending when the disk has less free space than this")
	cmd.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	return cmd
}

// tierCost is what N environments in one state cost the host.
type tierCost struct {
	Count int `json:"count"`
	// Per environment: the VMM's resident memory (RSS counts what it
	// shares with others, the QEMU binary and a clone's template pages,
	// in full; PSS divides it among the sharers), and the host's
	// available memory that went down while they were made (the page
	// cache they hold included; other work on the host moves it too).
	RSSKiB       int64   `json:"rss_kib_per_env"`
	PSSKiB       int64   `json:"pss_kib_per_env"`
	HostUsedKiB  int64   `json:"host_mem_used_kib_per_env"`
	Processes    float64 `json:"processes_per_env"`
	DiskKiB      int64   `json:"disk_kib_per_env,omitempty"`
	StateKiB     int64   `json:"state_kib_per_env,omitempty"`
	MakeMsPerEnv float64 `json:"make_ms_per_env"`
}

// densityResult is one run's report.
type densityResult struct {
	Function    string   `json:"function"`
	Accel       string   `json:"accel"`
	MemoryMB    int      `json:"memory_mb"`
	Warm        tierCost `json:"warm"`
	Paused      tierCost `json:"paused"`
	Suspended   tierCost `json:"suspended"`
	TemplateKiB int64    `json:"template_disk_kib"`
	// The resumes of a few of the suspended environments, each with an
	// invocation: the whole, and the restore's part of it.
	ResumeMs        []float64 `json:"resume_ms"`
	ResumeMsP50     float64   `json:"resume_ms_p50"`
	ResumeHostMsP50 float64   `json:"resume_host_ms_p50"`
	// StoppedEarly says why fewer environments were suspended than asked.
	StoppedEarly string `json:"stopped_early,omitempty"`
}

func (c *CLI) benchDensity(cmd *cobra.Command, f benchDensityFlags) error {
	ctx := cmd.Context()
	if f.warm < 0 || f.paused < 0 || f.suspended < 0 {
		return fmt.Errorf("--warm, --paused and --suspended must not be negative")
	}
	h, err := c.openHost(f.host, c.logger(cmd))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "hearth-density-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	code, err := guestimage.ReadZipFile(f.zip)
	if err != nil {
		return err
	}
	img, err := h.Image(work, code)
	if err != nil {
		return err
	}
	if err := h.ResolveAccel(ctx, img); err != nil {
		return err
	}
	cfg := h.SandboxConfig(filepath.Join(work, "envs"), nil)
	cfg.InitTimeout = 2 * time.Minute
	fn := sandbox.Function{Name: "hello", MemoryMB: 128, Timeout: time.Minute}
	tcfg := cfg
	tcfg.Dir = filepath.Join(work, "templates")
	fmt.Fprintln(c.Stderr, "making the template…")
	tpl, err := sandbox.NewTemplate(ctx, tcfg, fn, img)
	if err != nil {
		return err
	}
	res := densityResult{Function: filepath.Base(f.zip), Accel: string(h.Accel), MemoryMB: fn.MemoryMB, TemplateKiB: duKiB(tpl.Dir)}
	var all []*sandbox.Env
	defer func() {
		for _, e := range all {
			_ = e.Close(context.Background())
		}
	}()
	// fill clones n environments, invokes each once and leaves it in its
	// tier with then; stop, if set, ends the making early.
	var lastCall *sandbox.Result
	call := func(e *sandbox.Env) error {
		r, err := e.Invoke(ctx, sandbox.Request{Payload: []byte(`{"name":"density"}`)})
		if err != nil {
			return err
		}
		if r.Error != nil {
			return fmt.Errorf("function error %s: %s", r.Error.ErrorType, r.Error.ErrorMessage)
		}
		lastCall = r
		return nil
	}
	fill := func(tier string, n int, then func(*sandbox.Env) error, stop func() string) ([]*sandbox.Env, tierCost, error) {
		cost := tierCost{}
		avail0 := memAvailableKiB()
		t0 := time.Now()
		var envs []*sandbox.Env
		for i := 0; i < n; i++ {
			if stop != nil {
				if why := stop(); why != "" {
					res.StoppedEarly = why
					break
				}
			}
			e, err := sandbox.Clone(ctx, cfg, tpl.Dir)
			if err != nil {
				return envs, cost, fmt.Errorf("%s %d: %w", tier, i+1, err)
			}
			all = append(all, e)
			envs = append(envs, e)
			if err := call(e); err != nil {
				return envs, cost, fmt.Errorf("%s %d: %w", tier, i+1, err)
			}
			if then != nil {
				if err := then(e); err != nil {
					return envs, cost, fmt.Errorf("%s %d: %w", tier, i+1, err)
				}
			}
			if (i+1)%100 == 0 {
				fmt.Fprintf(c.Stderr, "  %s: %d of %d\n", tier, i+1, n)
			}
		}
		cost.Count = len(envs)
		if cost.Count == 0 {
			return envs, cost, nil
		}
		cost.MakeMsPerEnv = msf(time.Since(t0)) / float64(cost.Count)
		// Let the page-outs and exits settle before looking.
		time.Sleep(500 * time.Millisecond)
		cost.HostUsedKiB = (avail0 - memAvailableKiB()) / int64(cost.Count)
		var rss, pss int64
		procs := 0
		for _, e := range envs {
			pid := e.PID()
			if pid <= 0 || !processAlive(pid) || zombie(pid) {
				continue
			}
			procs++
			rss += vmm.ProcessRSSKiB(pid)
			pss += pssKiB(pid)
		}
		cost.RSSKiB, cost.PSSKiB = rss/int64(cost.Count), pss/int64(cost.Count)
		cost.Processes = float64(procs) / float64(cost.Count)
		return envs, cost, nil
	}

	fmt.Fprintf(c.Stderr, "%d warm…\n", f.warm)
	if _, res.Warm, err = fill("warm", f.warm, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stderr, "%d paused…\n", f.paused)
	pause := func(e *sandbox.Env) error { _, err := e.Pause(ctx); return err }
	if _, res.Paused, err = fill("paused", f.paused, pause, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stderr, "%d suspended…\n", f.suspended)
	var stateBytes int64
	suspend := func(e *sandbox.Env) error {
		info, err := e.Suspend(ctx)
		stateBytes += info.StateBytes
		return err
	}
	lowDisk := func() string {
		free := freeBytes(work)
		if free < int64(f.minFreeGB)<<30 {
			return fmt.Sprintf("%d MiB free on the disk, under --min-free-gb %d", free>>20, f.minFreeGB)
		}
		return ""
	}
	susp, cost, err := fill("suspended", f.suspended, suspend, lowDisk)
	res.Suspended = cost
	if err != nil {
		return err
	}
	if n := len(susp); n > 0 {
		var disk int64
		for _, e := range susp {
			disk += duKiB(e.Dir())
		}
		res.Suspended.DiskKiB = disk / int64(n)
		res.Suspended.StateKiB = stateBytes / 1024 / int64(n)
		// Resume a few, spread over the whole set.
		var host []float64
		k := min(max(f.resumes, 0), n)
		for i := 0; i < k; i++ {
			e := susp[i*(n-1)/max(k-1, 1)]
			t0 := time.Now()
			if err := call(e); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			res.ResumeMs = append(res.ResumeMs, msf(time.Since(t0)))
			host = append(host, msf(lastCall.Restore))
		}
		res.ResumeMsP50, res.ResumeHostMsP50 = percentile(res.ResumeMs, 50), percentile(host, 50)
	}

	if f.json {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(c.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(c.Stdout, "density: %s clones of one template, %d MB each, accel %s\n", res.Function, res.MemoryMB, res.Accel)
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tcount\tRSS KiB/env\tPSS KiB/env\thost mem KiB/env\tprocesses/env\tdisk KiB/env\tmake ms/env\t")
	for _, r := range []struct {
		name string
		c    tierCost
	}{{"warm", res.Warm}, {"paused", res.Paused}, {"suspended", res.Suspended}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%d\t%.0f\t\n", r.name, r.c.Count, r.c.RSSKiB, r.c.PSSKiB, r.c.HostUsedKiB, r.c.Processes, r.c.DiskKiB, r.c.MakeMsPerEnv)
	}
	_ = tw.Flush()
	fmt.Fprintf(c.Stdout, "template on disk: %d KiB (shared by every clone)\n", res.TemplateKiB)
	if len(res.ResumeMs) > 0 {
		fmt.Fprintf(c.Stdout, "resume one of %d suspended, with an invocation: p50 %.1f ms (restore %.1f ms); each %v\n",
			res.Suspended.Count, res.ResumeMsP50, res.ResumeHostMsP50, res.ResumeMs)
	}
	if res.StoppedEarly != "" {
		fmt.Fprintf(c.Stdout, "suspends stopped early: %s\n", res.StoppedEarly)
	}
	return nil
}

// duKiB is the disk that the files under dir take: their allocated
// blocks, as du counts them (a sparse file's holes take none).
func duKiB(dir string) int64 {
	var blocks int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				blocks += st.Blocks
			}
		}
		return nil
	})
	return blocks * 512 / 1024
}

// pssKiB is a process's proportional set size: its resident memory with
// each page shared by k processes counted 1/k.
func pssKiB(pid int) int64 {
	return procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
}

// memAvailableKiB is the host's available memory.
func memAvailableKiB() int64 { return procKiB("/proc/meminfo", "MemAvailable:") }

// procKiB reads a "Key: N kB" line of a /proc file.
func procKiB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				n, _ := strconv.ParseInt(fields[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// freeBytes is the space left for an unprivileged user on dir's disk.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}
